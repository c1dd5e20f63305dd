"""Result writers (JSON Lines, JSON, CSV, TSV) and the output file they write into.

One small class per format behind one interface, after openai/whisper's `ResultWriter` (MIT):
`write_video(result)` writes every record of one video at once and flushes, `close()` finishes the
document. JSON Lines and CSV/TSV stream; JSON collects and writes at `close()`.

`OutputFile` makes `-o PATH` atomic: records go to `PATH.part` and it is renamed to PATH when the
run ends (also after Ctrl-C, since every video in it is complete). A run killed harder leaves
`PATH.part`, which `--resume` continues from.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from vswin_cli.aggregate import Event, LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary
from vswin_cli.errors import ConfigError

FORMATS = ("jsonl", "json", "csv", "tsv")

CSV_COLUMNS = (
    "record", "video", "segment", "start", "end", "start_frame", "end_frame",
    "rank", "label", "index", "score", "views", "model", "error_type", "error_message",
)


def segment_record(seg: SegmentResult) -> dict:
    """The JSON object of one segment (`record: "segment"`)."""
    record = {
        "record": "segment", "video": seg.video, "segment": seg.segment,
        "start": seg.start, "end": seg.end, "start_frame": seg.start_frame, "end_frame": seg.end_frame,
        "top": [asdict(t) for t in seg.top], "views": seg.views, "model": seg.model,
    }
    if seg.features is not None:
        record["features"] = list(seg.features)
    return record


def event_record(event: Event) -> dict:
    """The JSON object of one merged event (`record: "event"`, with --merge)."""
    return {"record": "event", **asdict(event)}


def summary_record(summary: VideoSummary) -> dict:
    """The JSON object of a whole video (`record: "video"`); it is written last, marking the video complete."""
    record = {"record": "video", **asdict(summary)}
    record["top"] = [asdict(t) for t in summary.top]
    return record


def video_records(result: VideoResult) -> list[dict]:
    """All JSON objects of one video in write order: segments, events, summary; or one error record."""
    if result.error is not None:
        error = {"type": result.error.type, "message": result.error.message}
        return [{"record": "error", "video": result.video, "error": error}]
    records = [segment_record(s) for s in result.segments]
    records += [event_record(e) for e in result.events]
    if result.summary is not None:
        records.append(summary_record(result.summary))
    return records


class ResultWriter:
    """Writes results of one run to a text stream in one format.

    Args:
        stream: where to write (a file opened for text, or stdout).
    """

    extension: str = ""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write_video(self, result: VideoResult) -> None:
        """Write every record of one video, then flush, so a reader never sees half a video."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the document (JSON writes everything here) and flush."""
        self.stream.flush()


class JsonlWriter(ResultWriter):
    """One JSON object per line: segments, events, a per-video summary, or an error record."""

    extension = "jsonl"

    def write_video(self, result: VideoResult) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in video_records(result)]
        self.stream.write("".join(lines))
        self.stream.flush()


class JsonWriter(ResultWriter):
    """One JSON document `{"videos": [{video, segments, events, summary} | {video, error}]}`."""

    extension = "json"

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self.videos: list[dict] = []

    def write_video(self, result: VideoResult) -> None:
        records = video_records(result)
        if result.error is not None:
            self.videos.append({"video": result.video, "error": records[0]["error"]})
            return
        self.videos.append({
            "video": result.video,
            "summary": _without_record(records[-1]) if result.summary is not None else None,
            "segments": [_without_record(r) for r in records if r["record"] == "segment"],
            "events": [_without_record(r) for r in records if r["record"] == "event"],
        })

    def close(self) -> None:
        json.dump({"videos": self.videos}, self.stream, ensure_ascii=False, indent=1)
        self.stream.write("\n")
        self.stream.flush()


class CsvWriter(ResultWriter):
    """One row per segment and rank (plus event, video summary and error rows), with a header."""

    extension = "csv"
    delimiter = ","

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self.csv = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, delimiter=self.delimiter, lineterminator="\n")
        self.csv.writeheader()

    def write_video(self, result: VideoResult) -> None:
        rows = []
        for record in video_records(result):
            rows.extend(_csv_rows(record))
        self.csv.writerows(rows)
        self.stream.flush()


class TsvWriter(CsvWriter):
    """CSV with tabs (quoted only where a field holds a tab, quote or newline)."""

    extension = "tsv"
    delimiter = "\t"


def get_writer(output_format: str, stream: TextIO) -> ResultWriter:
    """The writer for `output_format` (one of FORMATS) writing into `stream`."""
    writers = {"jsonl": JsonlWriter, "json": JsonWriter, "csv": CsvWriter, "tsv": TsvWriter}
    if output_format not in writers:
        raise ConfigError(f"unknown output format {output_format!r}", hint=f"use one of {', '.join(FORMATS)}")
    return writers[output_format](stream)


def _without_record(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("record", "video")}


def _csv_rows(record: dict) -> list[dict]:
    kind = record["record"]
    base = {"record": kind, "video": record["video"]}
    if kind == "error":
        return [{**base, "error_type": record["error"]["type"], "error_message": record["error"]["message"]}]
    if kind == "event":
        return [{
            **base, "segment": f"{record['first_segment']}-{record['last_segment']}",
            "start": record["start"], "end": record["end"], "start_frame": record["start_frame"],
            "end_frame": record["end_frame"], "rank": 1, "label": record["label"], "index": record["index"],
            "score": record["score"], "model": record["model"],
        }]
    if kind == "segment":
        base.update(segment=record["segment"], start=record["start"], end=record["end"],
                    start_frame=record["start_frame"], end_frame=record["end_frame"])
    else:  # the whole-video summary
        base.update(start=0.0, end=record["duration"], start_frame=0, end_frame=record["num_frames"])
    base.update(views=record["views"], model=record["model"])
    if not record["top"]:  # every score under --threshold: keep one row so the segment is not lost
        return [base]
    return [{**base, "rank": rank, **tag} for rank, tag in enumerate(record["top"], start=1)]


def read_completed_jsonl(path: Path) -> tuple[list[str], set[str]]:
    """Lines of the videos that a JSON Lines output holds completely, for `--resume`.

    A video is complete when its summary record (`record: "video"`, written last) is present. Error
    records, partial videos and a torn last line (a killed run) are dropped, so those videos run again.

    Args:
        path: an earlier run's JSON Lines output (or its `.part` file).

    Returns:
        (lines to keep, in file order, each ending in a newline; keys of the complete videos).
    """
    by_video: dict[str, list[str]] = {}
    complete: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn last line of a killed run
            try:
                record = json.loads(line)
                key, kind = record["video"], record["record"]
            except (ValueError, KeyError, TypeError):
                raise ConfigError(
                    f"{path}: cannot resume, a line is not a vswin JSON Lines record: {line[:80]!r}",
                    hint="resume only from a file that `vswin tag --format jsonl` wrote, or drop --resume",
                ) from None
            if kind == "error":
                continue
            by_video.setdefault(key, []).append(line)
            if kind == "video":
                complete.add(key)
    kept = [line for key, lines in by_video.items() if key in complete for line in lines]
    return kept, complete


def read_results_jsonl(path: Path) -> dict[str, VideoResult]:
    """The complete videos (and error records) of a JSON Lines output, as `VideoResult`s by key.

    Used to merge the per-rank outputs of a sharded (torchrun) run into one output.

    Args:
        path: a JSON Lines file written by `JsonlWriter`.

    Returns:
        {video key: VideoResult}; videos without their summary record are left out.
    """
    records: dict[str, list[dict]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                record = json.loads(line)
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
            segments=tuple(_segment_from_record(r) for r in items if r["record"] == "segment"),
            events=tuple(Event(**_fields(r)) for r in items if r["record"] == "event"),
            summary=VideoSummary(**{**_fields(summaries[-1]), "top": _tags(summaries[-1]["top"])}),
        )
    return results


def _fields(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "record"}


def _tags(top: list[dict]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(**t) for t in top)


def _segment_from_record(record: dict) -> SegmentResult:
    fields = _fields(record)
    fields["top"] = _tags(fields["top"])
    if "features" in fields:
        fields["features"] = tuple(fields["features"])
    return SegmentResult(**fields)


class OutputFile:
    """Where results go: stdout (`-`), or PATH written through `PATH.part` and renamed when done.

    Args:
        path: "-" for stdout, else the output file.
        resume: continue from an earlier, interrupted run (JSON Lines only): its complete videos are
            copied into the new output and reported by `done`.
    """

    def __init__(self, path: str, resume: bool = False):
        self.to_stdout = path == "-"
        self.path = None if self.to_stdout else Path(path)
        self.done: set[str] = set()
        self._kept_lines: list[str] = []
        if resume:
            if self.to_stdout:
                raise ConfigError("--resume needs an output file", hint="add -o PATH.jsonl")
            for candidate in (self.part_path, self.path):
                if candidate.is_file():
                    self._kept_lines, self.done = read_completed_jsonl(candidate)
                    break
        self.stream: TextIO | None = None

    @property
    def part_path(self) -> Path:
        return self.path.with_name(self.path.name + ".part")

    def open(self) -> TextIO:
        """Open the stream to write into: stdout, or `PATH.part` holding the resumed videos' lines."""
        if self.to_stdout:
            self.stream = sys.stdout
            return self.stream
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.path}: the output folder does not exist", hint="create it first")
        # Build the new .part beside the old one, then swap it in, so a crash here loses nothing.
        tmp = self.part_path.with_name(self.part_path.name + ".tmp")
        self.stream = open(tmp, "w", encoding="utf-8", newline="")
        self.stream.write("".join(self._kept_lines))
        self.stream.flush()
        os.replace(tmp, self.part_path)  # the open handle now writes into PATH.part
        return self.stream

    def commit(self, final: bool = True) -> None:
        """Close the stream; publish `PATH.part` as PATH (final), or leave it to resume from later."""
        if self.to_stdout or self.stream is None:
            return
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        self.stream = None
        if final:
            os.replace(self.part_path, self.path)
