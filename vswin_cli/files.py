"""Writing small files so that readers only ever see the old or the new whole file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, fsync'd, then `os.replace`d.

    A crash or Ctrl-C at any point leaves either the previous file or the complete new one, never a
    half-written file; the temporary file is removed on failure. Creates the parent folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vswin-", suffix=".tmp")  # short: any valid name fits
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
