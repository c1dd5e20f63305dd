"""Result writers: JSON Lines, JSON, CSV, TSV, one small class per format behind one interface.

After openai/whisper's `ResultWriter` (MIT): `write_video(result)` writes every record of one video at
once and flushes, `close()` finishes the document. JSON Lines and CSV/TSV stream; JSON collects and
writes at `close()`. Where the stream goes (stdout, an atomic file, resume) is `vswin_cli.outputs`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from typing import TextIO

from vswin_cli.aggregate import Event, SegmentResult, VideoResult, VideoSummary
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
