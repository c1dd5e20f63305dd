"""Finding the videos to tag: files, folders (recursive), list files and stdin, with output keys.

A key is how a video is named in the output. With a single folder given, keys are paths relative to
it (`vswin tag clips` gives `cat/000.mp4`, `dog/000.mp4`); otherwise they are the paths as given, so
two folders' `000.mp4` stay apart (`a/000.mp4`, `b/000.mp4`). Keys use `/` on every platform.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, TextIO

from vswin_cli.errors import ConfigError

# Lower case; matched case-insensitively. Anything else is ignored inside folders unless --glob says.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".gif", ".mxf", ".vob",
})


@dataclass(frozen=True)
class VideoInput:
    """One video to tag: where to read it and the key it gets in the output."""

    path: Path
    key: str


def read_path_list(stream: TextIO) -> list[str]:
    """Paths from a list (one per line; blank lines skipped; spaces and quotes kept as they are)."""
    return [line.rstrip("\r\n") for line in stream if line.strip()]


def find_videos(sources: Iterable[str], glob: str | None = None,
                on_skip: Callable[[str, str], None] | None = None) -> list[VideoInput]:
    """Expand files and folders into the videos to tag, in a stable order.

    Args:
        sources: file or folder paths. Folders are searched recursively for video extensions
            (case-insensitive; hidden files and folders skipped), or for names matching `glob`.
            A path that does not exist is kept: it becomes an error record when tagged.
        glob: pattern matched against the path relative to the folder (`*.mp4`, `cats/*`);
            replaces the extension filter. Explicitly named files are always kept.
        on_skip: called with (path, reason) for what a folder scan could not look into or leaves
            out on purpose (an unreadable folder, a link loop, a FIFO or device, a path too long).

    Returns:
        One `VideoInput` per distinct file, keys unique.

    Raises:
        ConfigError: no sources, no video found at all, or two different files that would get the same key.
    """
    sources = [str(s) for s in sources]
    if not sources:
        raise ConfigError("no inputs given", hint="name files or folders, use --from-list FILE, or `-` to read paths from stdin")
    single_folder = len(sources) == 1 and Path(sources[0]).is_dir()
    found: list[VideoInput] = []
    for source in sources:
        root = Path(source)
        if not root.is_dir():
            found.append(VideoInput(root, _as_key(source)))
            continue
        for rel in _walk(root, glob, on_skip or (lambda path, reason: None)):
            key = rel if single_folder else _as_key(os.path.join(source, rel))
            found.append(VideoInput(root / rel, key))
    if not found:
        what = f"matching {glob!r}" if glob else f"with a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))})"
        raise ConfigError(f"no video files {what} in {', '.join(sources)}",
                          hint="check the folder, or use --glob PATTERN for other file names")
    return _unique(found)


def _walk(root: Path, glob: str | None, on_skip: Callable[[str, str], None]) -> list[str]:
    """Relative posix paths of the matching files under root, sorted; symlinked folders are followed
    (each real folder once, so a link loop ends), and everything left out is reported to `on_skip`."""
    matches = []
    seen = {os.path.realpath(root)}

    def unreadable(err: OSError) -> None:
        on_skip(str(err.filename or root), f"cannot be read ({err.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            real = os.path.realpath(os.path.join(dirpath, d))
            if real in seen:
                on_skip(os.path.join(dirpath, d), "a link back to a folder already searched")
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith("."):
                continue
            rel = PurePosixPath(Path(dirpath, name).relative_to(root).as_posix())
            wanted = rel.match(glob) if glob is not None else rel.suffix.lower() in VIDEO_EXTENSIONS
            if not wanted:
                continue
            path = os.path.join(dirpath, name)
            try:
                mode = os.stat(path).st_mode
            except OSError as err:
                on_skip(path, f"cannot be read ({err.strerror})")
                continue
            if not stat.S_ISREG(mode):
                on_skip(path, "not a regular file (a FIFO, socket or device)")
                continue
            matches.append(str(rel))
    return sorted(matches)


def _as_key(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def _unique(found: list[VideoInput]) -> list[VideoInput]:
    """Drop repeats of the same file; refuse two different files under one key."""
    by_file: dict[str, VideoInput] = {}
    by_key: dict[str, VideoInput] = {}
    unique = []
    for item in found:
        ident = os.path.realpath(item.path)
        if ident in by_file:
            continue
        if item.key in by_key:
            raise ConfigError(
                f"{item.path} and {by_key[item.key].path} would both be written as {item.key!r}",
                hint="name the folders themselves (their paths become part of the keys), not files with equal paths",
            )
        by_file[ident] = by_key[item.key] = item
        unique.append(item)
    return unique
