"""Label files: the one reader of a class-name file (`read_label_file`), line i = class i.

`vswin_cli.cache.load_labels` turns a label-map or zoo-entry name into a cached file and reads it here;
the cache also uses this reader to check a downloaded label map before recording it.
"""

from __future__ import annotations

from pathlib import Path

from vswin_cli.errors import ChecksumError, ConfigError


def read_label_file(path: Path, expected_count: int | None) -> list[str]:
    """Class names from a label file: line i is the name of class i (UTF-8; trailing blank lines allowed).

    Args:
        path: the text file.
        expected_count: the number of classes the file must name (a zoo label map), or None for any.

    Returns:
        The names, stripped. Raises `ConfigError` (unreadable, a blank line) or `ChecksumError` (a wrong count).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the label file ({err})", "it must be UTF-8 text, one name per line") from None
    names = text.splitlines()
    while names and not names[-1].strip():  # tolerate trailing blank lines only
        names.pop()
    for i, label in enumerate(names):
        if not label.strip():
            raise ConfigError(f"{path}: line {i + 1} is empty (line i is the name of class i-1)", "remove the blank line")
    if expected_count is not None and len(names) != expected_count:
        raise ChecksumError(
            f"{path}: {len(names)} class names, expected {expected_count}",
            "the file is not the expected label map; fetch it again or check the mirror",
        )
    return [label.strip() for label in names]
