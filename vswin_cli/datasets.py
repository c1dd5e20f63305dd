"""Video list files (`vswin eval`, `vswin train`) and the training clips Dataset.

List formats (spec/zoo.md "List files"; mmaction2's `VideoDataset`, Apache-2.0):

- official: `relative/path.mp4 LABEL` per line, split on whitespace, 0-based labels, paths joined to
  `--data-root`. More than one label on a line is a multi-label line.
- CSV/TSV with a header whose first column is `path` and second `label` (or `labels`); paths may contain
  spaces there; several labels in one field are separated by spaces or `;`.

Blank lines and lines starting with `#` are skipped. Every problem (bad label, missing file, duplicate)
is collected and reported together with its line number.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vswin_cli.decode import open_video
from vswin_cli.errors import ConfigError, VideoDecodeError, VswinError
from vswin_cli.protocol import ClipSpec

MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class ListEntry:
    """One video of a list file: `path` joined to the data root, `labels` 0-based, `line` 1-based."""

    path: Path
    rel_path: str
    labels: tuple[int, ...]
    line: int

    @property
    def label(self) -> int:
        return self.labels[0]


def parse_list(
    list_path: str | Path,
    data_root: str | Path | None = None,
    class_names: list[str] | None = None,
    multi_label: bool = False,
    check_files: bool = True,
) -> list[ListEntry]:
    """Read a video list file (official whitespace format, or CSV/TSV with a `path,label` header).

    Args:
        list_path: the list file.
        data_root: folder the relative paths are joined to (default: the list file's folder).
        class_names: the label map; labels must be in [0, len(class_names)); class names are accepted
            in place of numbers.
        multi_label: accept several labels per line (for a multi-label head); else such lines are errors.
        check_files: report paths that are not existing files.

    Returns:
        entries in file order.

    Raises:
        ConfigError: listing every bad line with its line number.
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise ConfigError(f"{list_path}: list file not found", hint="pass an existing file to --dataset/--train-list")
    root = Path(data_root) if data_root is not None else list_path.parent
    if data_root is not None and not root.is_dir():
        raise ConfigError(f"{root}: --data-root is not a folder")
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{list_path}: not a UTF-8 text file ({err.reason})") from None
    rows = _split_rows(text)

    name_to_index = {name: i for i, name in enumerate(class_names)} if class_names else {}
    entries: list[ListEntry] = []
    problems: list[str] = []
    first_line_of: dict[str, int] = {}
    for line_no, rel_path, label_fields in rows:
        if not label_fields:
            problems.append(f"line {line_no}: {rel_path!r} has no label")
            continue
        if len(label_fields) > 1 and not multi_label:
            problems.append(
                f"line {line_no}: {len(label_fields)} labels ({' '.join(label_fields)}): multi-label lines need a "
                "multi-label head (rawframe lists 'frame_dir total_frames label' are not supported either)"
            )
            continue
        labels, bad = [], None
        for field in label_fields:
            label = _parse_label(field, name_to_index)
            if label is None:
                bad = f"label {field!r} is not a 0-based class number" + (" or class name" if name_to_index else "")
            elif label < 0 or (class_names and label >= len(class_names)):
                bad = f"label {label} is outside the label map (0..{len(class_names) - 1})" if class_names else f"label {label} is negative"
            labels.append(label)
        if bad:
            problems.append(f"line {line_no}: {bad}")
            continue
        if rel_path in first_line_of:
            problems.append(f"line {line_no}: {rel_path!r} duplicates line {first_line_of[rel_path]}")
            continue
        first_line_of[rel_path] = line_no
        path = root / rel_path
        if check_files and not path.is_file():
            problems.append(f"line {line_no}: {path} does not exist")
            continue
        entries.append(ListEntry(path=path, rel_path=rel_path, labels=tuple(labels), line=line_no))

    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise ConfigError(
            f"{list_path}: {len(problems)} bad line(s):\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else ""),
            hint="fix these lines; paths are joined to --data-root, labels are 0-based line numbers of the label map",
        )
    if not entries:
        raise ConfigError(f"{list_path}: no videos listed", hint="one 'relative/path.mp4 LABEL' per line")
    return entries


def _split_rows(text: str) -> list[tuple[int, str, list[str]]]:
    """(line number, path, label fields) for each non-blank, non-comment line."""
    lines = text.splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        return []
    header_no, header = numbered[0]
    delimiter = "\t" if "\t" in header else ","
    header_fields = [f.strip().lower() for f in header.split(delimiter)]
    if len(header_fields) >= 2 and header_fields[0] == "path" and header_fields[1] in ("label", "labels"):
        rows = []
        for line_no, line in numbered[1:]:
            fields = next(csv.reader([line], delimiter=delimiter))
            path = fields[0].strip() if fields else ""
            label_text = fields[1] if len(fields) > 1 else ""
            rows.append((line_no, path, label_text.replace(";", " ").split()))
        return rows
    return [(line_no, line.split()[0], line.split()[1:]) for line_no, line in numbered]


def _parse_label(field: str, name_to_index: dict[str, int]) -> int | None:
    try:
        return int(field)
    except ValueError:
        return name_to_index.get(field)


def read_frames(path: Path, indices_for) -> np.ndarray:
    """Open a video, choose frame indices from its frame count, and decode them.

    Args:
        path: the video.
        indices_for: function num_frames -> int array of any shape.

    Returns:
        (M, H, W, 3) uint8 RGB for the M indices, flattened in order.

    Raises:
        VideoDecodeError (a VswinError) naming the file and the reason.
    """
    with open_video(path) as reader:
        if reader.num_frames < 1:
            raise VideoDecodeError(path, "no frames")
        indices = np.asarray(indices_for(reader.num_frames)).reshape(-1)
        return np.asarray(reader.read(indices))


class TrainClips(Dataset):
    """One augmented training clip per listed video: `(clip (3, L, S, S) float32, label, error)`.

    `error` is "" for a good clip; a video that cannot be decoded gives a zero clip and its error text,
    so that the training loop (in the main process, not a loader worker) stops with a clear message.
    The random draws depend only on (seed, epoch, index) so that resumed and multi-worker runs see the
    same clips; call `set_epoch` before each epoch.
    """

    def __init__(self, entries: list[ListEntry], spec: ClipSpec, flip: bool, seed: int, min_crop_area: float = 0.08):
        self.entries = entries
        self.min_crop_area = min_crop_area
        self.spec = spec
        self.flip = flip
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        from vswin_cli.train_augment import kinetics_train_indices, train_clip, uniform_train_indices

        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        spec = self.spec
        try:
            if spec.sampling == "uniform":
                frames = read_frames(entry.path, lambda n: uniform_train_indices(n, spec.clip_len, rng))
            else:
                frames = read_frames(entry.path, lambda n: kinetics_train_indices(n, spec.clip_len, spec.frame_interval, rng))
        except VswinError as err:
            empty = torch.zeros(3, spec.clip_len, spec.crop_size, spec.crop_size)
            return empty, entry.label, f"line {entry.line}: {err}"
        return train_clip(frames, spec.crop_size, self.flip, rng, self.min_crop_area), entry.label, ""
