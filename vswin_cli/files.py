"""Writing small files so that readers only ever see the old or the new whole file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` as `write_bytes_atomic` does."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync'd, then `os.replace`d.

    A crash or Ctrl-C at any point leaves either the previous file or the complete new one, never a
    half-written file; the temporary file is removed on failure. Creates the parent folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_file(folder: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, uniquely named file in `folder`, to be renamed over a result: (open descriptor, path).

    The name is short (any valid result name fits beside it) and hidden; the mode follows the umask
    like any new file (mkstemp alone makes 0600, and the rename would keep that).
    """
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".vswin-", suffix=suffix)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, Path(tmp)


def umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
