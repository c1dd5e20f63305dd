"""What `--resume` takes from an earlier run: its complete videos, where a video was cut, and the
segments' probabilities for continuing inside a video.

Built on the one reader of tag output, `vswin_cli.results` (`read_jsonl` discards a torn last line: a
killed run, a full disk, possibly cut inside a multi-byte character).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from vswin_cli.errors import ConfigError
from vswin_cli.results import read_jsonl


@dataclass
class Kept:
    """What `--resume` keeps of an earlier output.

    Attributes:
        lines: the lines of the complete videos, in file order, each ending in a newline.
        done: the keys of those videos.
        partial: video key -> the records of its first segments (0, 1, ...) where the run stopped
            inside the video (`--resume` continues after them).
        run: the output's `run` record (what produced it), if it has one.
    """

    lines: list[str]
    done: set[str]
    partial: dict[str, list[dict]] = field(default_factory=dict)
    run: dict | None = None


def read_completed_jsonl(path: Path) -> Kept:
    """What a JSON Lines output holds of each video, for `--resume`.

    A video is complete when its summary record (`record: "video"`, written last) is present. A video
    with segment records only was cut inside: its leading segments are kept as `partial`. Error
    records, and the other records of a failed video, are dropped, so that video runs again; a torn
    last line (a killed run) is discarded.

    Args:
        path: an earlier run's JSON Lines output (or its `.part` file).
    """
    by_video: dict[str, list[dict]] = {}
    complete, failed = set(), set()
    run = None
    for record in read_jsonl(path):
        key, kind = record.get("video"), record.get("record")
        if kind == "run" and run is None:
            run = record
            continue
        if not isinstance(key, str) or kind not in ("segment", "event", "video", "error"):
            raise ConfigError(f"{path}: cannot resume, a record is not a vswin tag record: {str(record)[:80]}",
                              hint="resume only from a file that `vswin tag --format jsonl` wrote, or drop --resume")
        if kind == "error":
            failed.add(key)
            continue
        by_video.setdefault(key, []).append(record)
        if kind == "video":
            complete.add(key)
    kept = Kept([], set(), {}, run)
    for key, records in by_video.items():
        if key in complete:
            kept.lines.extend(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            kept.done.add(key)
        elif key not in failed:
            prefix = []  # segments 0, 1, 2, ... up to the first gap
            for record in (r for r in records if r["record"] == "segment"):
                if record.get("segment") != len(prefix):
                    break
                prefix.append(record)
            if prefix:
                kept.partial[key] = prefix
    return kept


class ResumeLog:
    """Each streamed segment's probabilities, beside a JSON Lines output, so `--resume` can continue a
    video inside it and still write the same summary (which needs every segment's probabilities).

    One JSON line per segment (`{"video", "segment", "probs": base64 float32}`), written before the
    segment's record; deleted when the run completes.
    """

    def __init__(self, path: Path):
        self.path = path
        self.stream: TextIO | None = None

    def read(self, partial: dict[str, list[dict]]) -> dict[str, list[torch.Tensor]]:
        """The probabilities of the `partial` videos' kept segments, cut where one is missing."""
        found: dict[tuple[str, int], torch.Tensor] = {}
        if self.path.is_file():
            for record in read_jsonl(self.path):
                if record.get("video") in partial:
                    data = base64.b64decode(record["probs"])
                    found[(record["video"], record["segment"])] = torch.frombuffer(bytearray(data), dtype=torch.float32)
        probs = {}
        for key, records in partial.items():
            rows = []
            for record in records:
                if (key, record["segment"]) not in found:
                    break
                rows.append(found[(key, record["segment"])])
            probs[key] = rows
        return probs

    def open(self) -> None:
        self.stream = open(self.path, "w", encoding="utf-8")

    def write(self, video: str, segment: int, probs: torch.Tensor) -> None:
        data = base64.b64encode(probs.float().contiguous().numpy().tobytes()).decode()
        self.stream.write(json.dumps({"video": video, "segment": segment, "probs": data}) + "\n")
        self.stream.flush()

    def close(self, delete: bool) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if delete:
            self.path.unlink(missing_ok=True)
