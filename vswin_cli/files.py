"""Writing files so that readers only ever see the old or the new whole file: `atomic_file` is the one
temporary-file-then-rename of vswin_cli (reports, labelled videos, ONNX exports, cache files, outputs).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, temp: str | os.PathLike | None = None, suffix: str = ".tmp") -> Iterator[Path]:
    """Write `path` through a temporary file: yields the temporary path, then renames it onto `path`.

    When the block ends normally the temporary file replaces `path` (`os.replace`); when it raises, the
    temporary file is deleted and `path` is left as it was.

    Args:
        path: the file to write.
        temp: the temporary file's name (e.g. `PATH.part`, which a user may see); None = a new, unique,
            hidden file beside `path` (`temp_file`, with `suffix`), already created with the umask's mode.
    """
    path = Path(path)
    if temp is None:
        fd, tmp = temp_file(path.parent, suffix)
        os.close(fd)
    else:
        tmp = Path(temp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the original error matters, not a failed clean-up
            tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, fsync'd, then `os.replace`d.

    A crash or Ctrl-C at any point leaves either the previous file or the complete new one, never a
    half-written file; the temporary file is removed on failure. Creates the parent folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


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
