"""Reading back what an earlier run wrote: `--resume` (complete videos, and where a video was cut), the
segments' probabilities for continuing inside a video, and torchrun shard files.

Every reader goes through `read_jsonl`, which discards a torn last line (a killed run, a full disk:
possibly cut inside a multi-byte character) and never parses it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from vswin_cli.records import Event, LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary
from vswin_cli.errors import ConfigError


def read_jsonl(path: Path) -> Iterator[dict]:
    """The complete records of a JSON Lines file written by a run that may have been killed.

    A torn last line (no newline: the line being written when the run died, possibly cut inside a
    multi-byte character) is discarded, never parsed. Any other line that is not a JSON object is an error.

    Raises:
        ConfigError: naming the file and line.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return  # the torn tail of a killed run
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                record = None
            if not isinstance(record, dict):
                raise ConfigError(
                    f"{path}: cannot resume: line {number} is not a vswin JSON Lines record: {raw[:80]!r}",
                    hint="resume only from a file that vswin wrote, or drop --resume",
                )
            yield record


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


def read_results_jsonl(path: Path) -> dict[str, VideoResult]:
    """The complete videos (and error records) of a JSON Lines output, as `VideoResult`s by key.

    Used to merge the per-rank outputs of a sharded (torchrun) run into one output.

    Args:
        path: a JSON Lines file written by `JsonlWriter`.

    Returns:
        {video key: VideoResult}; videos without their summary record are left out.
    """
    records: dict[str, list[dict]] = {}
    for record in read_jsonl(path):
        if record.get("record") != "run":
            records.setdefault(record["video"], []).append(record)
    results = {}
    for key, items in records.items():
        errors = [r for r in items if r["record"] == "error"]
        if errors:
            error = errors[-1]["error"]
            results[key] = VideoResult(video=key, error=VideoError(key, error["type"], error["message"]))
            continue
        summaries = [r for r in items if r["record"] == "video"]
        if not summaries:
            continue
        results[key] = VideoResult(
            video=key,
            segments=tuple(segment_from_record(r) for r in items if r["record"] == "segment"),
            events=tuple(Event(**_fields(r)) for r in items if r["record"] == "event"),
            summary=VideoSummary(**{**_fields(summaries[-1]), "top": _tags(summaries[-1]["top"])}),
        )
    return results


def _fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "record"}


def _tags(top: list[dict]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(**t) for t in top)


def segment_from_record(record: dict) -> SegmentResult:
    fields = _fields(record)
    fields["top"] = _tags(fields["top"])
    if "features" in fields:
        fields["features"] = tuple(fields["features"])
    return SegmentResult(**fields)
