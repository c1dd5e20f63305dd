"""Reading `vswin tag` results back, one video at a time: JSON Lines, JSON and CSV/TSV.

The report (`vswin report`) and the labelled videos (`vswin annotate`) both start from a results file
that `vswin tag` wrote (`vswin_cli.writers`). `read_results` streams it: it yields one `TaggedVideo`
per video and keeps only that video's records in memory, so a run over a million videos reads in
constant memory. The format is recognised from the content (not the extension), so `tags.txt` holding
JSON Lines works; anything else is refused with a `ConfigError` naming the file and line.

Records of one video are written together by the writers (`ResultWriter.write_video`), so a video ends
where the next key starts. A JSON document (`{"videos": [...]}`) is decoded element by element from a
sliding buffer, so it also streams.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from vswin_cli.errors import ConfigError
from vswin_cli.writers import CSV_COLUMNS

_HINT = "give a file that `vswin tag` wrote (--format jsonl, json, csv or tsv)"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Tag:
    """One label of a segment or video, best first; `index` is the class number in the model (None if unknown)."""

    label: str
    score: float
    index: int | None = None


@dataclass(frozen=True)
class Segment:
    """One time segment of a video: [start, end) seconds, [start_frame, end_frame) frames, tags best first."""

    segment: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    top: tuple[Tag, ...]


@dataclass
class TaggedVideo:
    """Everything a results file holds about one video.

    Attributes:
        key: the video's key as `vswin tag` wrote it (a path relative to the tagged folder, or as given).
        segments: its segments in file order.
        summary: the whole-video record (`duration`, `num_frames`, `fps`, `top`, `model`...), or None.
        error: {"type", "message"} when the video could not be tagged, else None.
        line: the line of the file where this video's records start (1-based).
    """

    key: str
    segments: list[Segment] = field(default_factory=list)
    summary: dict | None = None
    error: dict | None = None
    line: int = 1

    @property
    def duration(self) -> float:
        """Seconds covered: the summary's duration, else the last segment end (0 without either)."""
        if self.summary and self.summary.get("duration"):
            return float(self.summary["duration"])
        return max((s.end for s in self.segments), default=0.0)


def video_roots(results_path: str | os.PathLike, video_root: str | os.PathLike | None = None) -> list[Path]:
    """The folders a results file's video keys are looked up in: `video_root` if given, else the working
    directory and then the results file's folder (once if they are the same)."""
    if video_root is not None:
        return [Path(video_root)]
    roots = [Path("."), Path(results_path).parent]
    return roots[:1] if roots[0].resolve() == roots[1].resolve() else roots


def read_results(path: str | os.PathLike) -> Iterator[TaggedVideo]:
    """Stream the videos of a `vswin tag` results file, in file order.

    Args:
        path: a JSON Lines, JSON, CSV or TSV file written by `vswin tag` (format sniffed from content).

    Yields:
        one `TaggedVideo` per video.

    Raises:
        ConfigError: the file is missing, unreadable, or not in one of those formats (naming the line).
    """
    path = Path(path)
    try:
        stream = open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the results file ({err.strerror})", hint=_HINT) from None
    with stream:
        try:
            head = stream.read(_CHUNK)
        except UnicodeDecodeError:
            raise ConfigError(f"{path}:1: not a text file", hint=_HINT) from None
        first_line = head.split("\n", 1)[0].rstrip("\r")
        stripped = head.lstrip()
        if not stripped:
            raise ConfigError(f"{path}: the results file is empty", hint="the tag run wrote nothing; check its log")
        if first_line.split(",")[0] == "record" or first_line.split("\t")[0] == "record":
            yield from _read_csv(path, head, stream, "\t" if "\t" in first_line else ",")
        elif stripped.startswith("{") and _is_record_line(first_line):
            yield from _read_jsonl(path, head, stream)
        elif stripped.startswith("{"):
            yield from _read_json(path, head, stream)
        else:
            raise ConfigError(f"{path}:1: not a vswin results file (starts with {first_line[:40]!r})", hint=_HINT)


def _is_record_line(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "record" in record


def _lines(head: str, stream: TextIO) -> Iterator[str]:
    """The lines of the file, the already-read head first (newlines kept)."""
    rest = ""
    while True:
        buffer = rest + head
        parts = buffer.split("\n")
        rest = parts.pop()
        for part in parts:
            yield part + "\n"
        head = stream.read(_CHUNK)
        if not head:
            break
    if rest:
        yield rest


def _bad(path: Path, line: int, why: str) -> ConfigError:
    return ConfigError(f"{path}:{line}: {why}", hint=_HINT)


def _read_jsonl(path: Path, head: str, stream: TextIO) -> Iterator[TaggedVideo]:
    current: TaggedVideo | None = None
    for number, line in enumerate(_lines(head, stream), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record["record"] == "run":  # what produced the file, not a video
                continue
            kind, key = record["record"], record["video"]
        except (ValueError, KeyError, TypeError):
            raise _bad(path, number, f"not a vswin JSON Lines record: {line.strip()[:80]!r}") from None
        if current is None or key != current.key:
            if current is not None:
                yield current
            current = TaggedVideo(key=key, line=number)
        _add_record(current, kind, record, path, number)
    if current is not None:
        yield current


def _add_record(video: TaggedVideo, kind: str, record: dict, path: Path, number: int) -> None:
    try:
        if kind == "segment":
            video.segments.append(_segment(record))
        elif kind == "video":
            video.summary = {k: v for k, v in record.items() if k not in ("record", "video")}
            video.summary["top"] = [_tag(t) for t in record["top"]]
        elif kind == "error":
            video.error = {"type": str(record["error"]["type"]), "message": str(record["error"]["message"])}
        elif kind != "event":  # events are derived from the segments; the report draws those
            raise _bad(path, number, f"unknown record type {kind!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise _bad(path, number, f"a {kind!r} record without a valid {err} field") from None


def _segment(record: dict) -> Segment:
    return Segment(
        segment=int(record["segment"]), start=float(record["start"]), end=float(record["end"]),
        start_frame=int(record["start_frame"]), end_frame=int(record["end_frame"]),
        top=tuple(_tag(t) for t in record["top"]),
    )


def _tag(t: dict) -> Tag:
    index = t.get("index")
    return Tag(t["label"], float(t["score"]), int(index) if index is not None else None)


def _read_json(path: Path, head: str, stream: TextIO) -> Iterator[TaggedVideo]:
    """`{"videos": [...]}` decoded one element at a time from a sliding buffer."""
    decoder = json.JSONDecoder()
    buffer, consumed_lines = head, 1
    opening = re.match(r'\s*\{\s*"videos"\s*:\s*\[', buffer)
    if opening is None:
        raise _bad(path, 1, 'not a vswin JSON document (expected {"videos": [...]})')
    pos = opening.end()
    eof = False
    while True:
        while pos < len(buffer) and buffer[pos] in " \t\r\n,":
            pos += 1
        if pos < len(buffer) and buffer[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError as err:
            if eof:
                raise _bad(path, consumed_lines + buffer.count("\n", 0, err.pos), f"invalid JSON ({err.msg})") from None
            more = stream.read(_CHUNK)
            eof = not more
            consumed_lines += buffer.count("\n", 0, pos)
            buffer, pos = buffer[pos:] + more, 0
            continue
        number = consumed_lines + buffer.count("\n", 0, pos)
        if not isinstance(item, dict) or "video" not in item:
            raise _bad(path, number, "a `videos` element without a `video` key")
        video = TaggedVideo(key=item["video"], line=number)
        if "error" in item:
            _add_record(video, "error", item, path, number)
        for segment in item.get("segments") or ():
            _add_record(video, "segment", segment, path, number)
        if item.get("summary") is not None:
            _add_record(video, "video", item["summary"], path, number)
        yield video
        pos = end


def _read_csv(path: Path, head: str, stream: TextIO, delimiter: str) -> Iterator[TaggedVideo]:
    rows = csv.reader(_lines(head, stream), delimiter=delimiter)
    header = next(rows)
    if tuple(header) != CSV_COLUMNS:
        raise _bad(path, 1, f"unexpected columns {header[:6]}... (expected those `vswin tag -f csv` writes)")
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    current: TaggedVideo | None = None
    open_segment: dict | None = None

    def close_segment():
        nonlocal open_segment
        if open_segment is not None:
            tags = open_segment.pop("tags")
            current.segments.append(Segment(**open_segment, top=tuple(tags)))
            open_segment = None

    for row in rows:
        number = rows.line_num
        if not row:
            continue
        if len(row) != len(CSV_COLUMNS):
            raise _bad(path, number, f"{len(row)} fields, expected {len(CSV_COLUMNS)}")
        kind, key = row[col["record"]], row[col["video"]]
        if kind == "run":  # what produced the file, not a video
            continue
        if current is None or key != current.key:
            if current is not None:
                close_segment()
                yield current
            current = TaggedVideo(key=key, line=number)
        try:
            index = int(row[col["index"]]) if row[col["index"]] else None
            tag = [Tag(row[col["label"]], float(row[col["score"]]), index)] if row[col["label"]] else []
            if kind == "segment":
                index = int(row[col["segment"]])
                if open_segment is None or open_segment["segment"] != index:
                    close_segment()
                    open_segment = dict(
                        segment=index, start=float(row[col["start"]]), end=float(row[col["end"]]),
                        start_frame=int(row[col["start_frame"]]), end_frame=int(row[col["end_frame"]]), tags=[])
                open_segment["tags"] += tag
            elif kind == "video":
                close_segment()
                if current.summary is None:
                    current.summary = {"duration": float(row[col["end"]]), "num_frames": int(row[col["end_frame"]]),
                                       "model": row[col["model"]], "views": row[col["views"]], "top": []}
                current.summary["top"] += tag
            elif kind == "error":
                current.error = {"type": row[col["error_type"]], "message": row[col["error_message"]]}
            elif kind != "event":
                raise _bad(path, number, f"unknown record type {kind!r}")
        except ValueError as err:
            raise _bad(path, number, f"a {kind!r} row with a bad number ({err})") from None
    if current is not None:
        close_segment()
        yield current
