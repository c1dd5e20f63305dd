"""Result writers: JSON Lines, JSON, CSV, TSV, Parquet, one small class per format behind one interface.

After openai/whisper's `ResultWriter` (MIT): `write_video(result)` writes every record of one video at
once and flushes, `close()` finishes the document. JSON Lines and CSV/TSV stream; JSON collects and
writes at `close()`. Where the stream goes (stdout, an atomic file, resume) is `vswin_cli.outputs`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from typing import TextIO

from vswin_cli.records import Event, SegmentResult, VideoResult, VideoSummary
from vswin_cli.errors import ConfigError

CSV_COLUMNS = (
    "record", "video", "segment", "start", "end", "start_frame", "end_frame",
    "rank", "label", "index", "score", "views", "model", "error_type", "error_message", "run",
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
    """The JSON object of a whole video (`record: "video"`); it is written last, marking the video complete.

    `skipped` and `gaps` (lists of [start, end] seconds) are there only when a live stream had some."""
    record = {"record": "video", **asdict(summary)}
    record["top"] = [asdict(t) for t in summary.top]
    for key in ("skipped", "gaps"):
        if record[key]:
            record[key] = [list(span) for span in record[key]]
        else:
            del record[key]
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

    `write_segment` is called for each segment as soon as it is scored (streaming formats write it at
    once), `write_video` when the video is done: it writes what is not written yet (events and the
    summary, or the error record; all segments for a writer that got none streamed).

    Args:
        stream: where to write (a file opened for text, or stdout).
    """

    streams_segments = True  # each segment is in the stream as soon as `write_segment` returns

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._streamed: tuple[str, int] = ("", 0)  # (video, segments already written by write_segment)

    def write_run(self, run: dict) -> None:
        """Write the run record (what produced the output: `api.Tagger.run_record`), before any video."""
        self._write_records([run])

    def write_segment(self, segment: SegmentResult) -> None:
        """Write one segment record now (JSON Lines, CSV, TSV); the JSON document waits for `write_video`."""
        video, count = self._streamed
        self._streamed = (segment.video, count + 1 if video == segment.video else 1)
        self._write_records([segment_record(segment)])

    def write_video(self, result: VideoResult) -> None:
        """Finish one video: its records not written yet, then flush, so a reader never sees half a video."""
        video, count = self._streamed
        skip = count if video == result.video else 0
        self._streamed = ("", 0)
        records = video_records(result)
        if result.error is None:
            records = records[skip:]  # segments come first in `video_records`
        self._write_records(records)

    def _write_records(self, records: list[dict]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the document (JSON writes everything here) and flush."""
        self.stream.flush()


class JsonlWriter(ResultWriter):
    """One JSON object per line: segments, events, a per-video summary, or an error record."""

    def _write_records(self, records: list[dict]) -> None:
        self.stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.stream.flush()


class JsonWriter(ResultWriter):
    """One JSON document `{"videos": [{video, segments, events, summary} | {video, error}], "run": {...}}`."""

    streams_segments = False

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self.run: dict | None = None
        self.videos: list[dict] = []

    def write_run(self, run: dict) -> None:
        self.run = {k: v for k, v in run.items() if k != "record"}

    def write_segment(self, segment: SegmentResult) -> None:
        pass  # one document: the whole video is written from `write_video`

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
        document = {"videos": self.videos, "run": self.run} if self.run is not None else {"videos": self.videos}
        json.dump(document, self.stream, ensure_ascii=False, indent=1)
        self.stream.write("\n")
        self.stream.flush()


class CsvWriter(ResultWriter):
    """One row per segment and rank (plus event, video summary and error rows), with a header.

    The run record is the first row: `record` = run, `model` = the model's name, and the whole record as
    compact JSON in the `run` column (empty in every other row).
    """

    delimiter = ","

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        self.csv = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, delimiter=self.delimiter, lineterminator="\n")
        self.csv.writeheader()

    def _write_records(self, records: list[dict]) -> None:
        self.csv.writerows([row for record in records for row in _csv_rows(record)])
        self.stream.flush()


class TsvWriter(CsvWriter):
    """CSV with tabs (quoted only where a field holds a tab, quote or newline)."""

    delimiter = "\t"


# One Parquet row per JSON Lines record; a column a record does not have is null (see `ParquetWriter`).
PARQUET_COLUMNS = (
    ("record", "string"), ("video", "string"), ("segment", "int64"), ("first_segment", "int64"),
    ("last_segment", "int64"), ("start", "float64"), ("end", "float64"), ("start_frame", "int64"),
    ("end_frame", "int64"), ("labels", "list<string>"), ("indices", "list<int64>"), ("scores", "list<float64>"),
    ("views", "int64"), ("model", "string"), ("num_segments", "int64"), ("duration", "float64"),
    ("num_frames", "int64"), ("fps", "float64"), ("features", "list<float64>"), ("error_type", "string"),
    ("error_message", "string"), ("run", "string"), ("skipped", "list<list<float64>>"), ("gaps", "list<list<float64>>"),
)
PARQUET_ROW_GROUP = 8192  # rows held before a row group is written (memory stays bounded on long runs)


class ParquetWriter(ResultWriter):
    """A Parquet file (needs pyarrow, which `vswin[ray]` brings): one row per JSON Lines record, in the
    same order, with the columns of `PARQUET_COLUMNS`.

    A segment or video record's tags are three lists, best first: `labels`, `indices`, `scores`; an event
    has its one label in them. A video record has `start` 0, `end` its duration and `end_frame` its
    frame count, as in CSV. The run record keeps the whole record as compact JSON in `run`. Rows are
    written in row groups of `PARQUET_ROW_GROUP` as they come, so a long run holds little in memory.
    """

    def __init__(self, stream: TextIO):
        super().__init__(stream)
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("--format parquet needs pyarrow, which is not installed here",
                              hint="pip install pyarrow (or pip install 'vswin[ray]'), or use --format jsonl") from None
        types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
                 "list<string>": pa.list_(pa.string()), "list<int64>": pa.list_(pa.int64()),
                 "list<float64>": pa.list_(pa.float64()), "list<list<float64>>": pa.list_(pa.list_(pa.float64()))}
        self.schema = pa.schema([(name, types[kind]) for name, kind in PARQUET_COLUMNS])
        self._pa = pa
        self.stream.flush()
        self.parquet = pq.ParquetWriter(stream.buffer, self.schema)
        self.rows: list[dict] = []

    def _write_records(self, records: list[dict]) -> None:
        self.rows.extend(_parquet_row(r) for r in records)
        if len(self.rows) >= PARQUET_ROW_GROUP:
            self._flush_rows()

    def _flush_rows(self) -> None:
        if self.rows:
            self.parquet.write_table(self._pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush_rows()
        self.parquet.close()
        self.stream.buffer.flush()


FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
WRITERS = dict(zip(FORMATS, (JsonlWriter, JsonWriter, CsvWriter, TsvWriter, ParquetWriter)))


def get_writer(output_format: str, stream: TextIO) -> ResultWriter:
    """The writer for `output_format` (one of `WRITERS`) writing into `stream`."""
    if output_format not in WRITERS:
        raise ConfigError(f"unknown output format {output_format!r}", hint=f"use one of {', '.join(WRITERS)}")
    return WRITERS[output_format](stream)


def _without_record(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("record", "video")}


def _csv_rows(record: dict) -> list[dict]:
    kind = record["record"]
    if kind == "run":
        return [{"record": "run", "model": record["model"], "run": json.dumps(record, ensure_ascii=False, separators=(",", ":"))}]
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


def _parquet_row(record: dict) -> dict:
    """The Parquet row of one JSON Lines record (`ParquetWriter`)."""
    kind = record["record"]
    if kind == "run":
        return {"record": "run", "model": record["model"], "run": json.dumps(record, ensure_ascii=False, separators=(",", ":"))}
    row = {"record": kind, "video": record["video"]}
    if kind == "error":
        return {**row, "error_type": record["error"]["type"], "error_message": record["error"]["message"]}
    if kind == "event":
        tags = [{"label": record["label"], "index": record["index"], "score": record["score"]}]
        row.update((k, record[k]) for k in ("first_segment", "last_segment", "start", "end", "start_frame", "end_frame"))
    else:
        tags = record["top"]
        row["views"] = record["views"]
        if kind == "segment":
            row.update((k, record[k]) for k in ("segment", "start", "end", "start_frame", "end_frame"))
            row["features"] = record.get("features")
        else:  # the whole-video summary
            row.update((k, record[k]) for k in ("num_segments", "duration", "num_frames", "fps"))
            row.update((k, record[k]) for k in ("skipped", "gaps") if k in record)
            row.update(start=0.0, end=record["duration"], start_frame=0, end_frame=record["num_frames"])
    row.update(labels=[t["label"] for t in tags], indices=[t["index"] for t in tags], scores=[t["score"] for t in tags],
               model=record["model"])
    return row
