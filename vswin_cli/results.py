"""Reading `vswin tag` output back: the one reader of tag records, into the types the writers take.

Records become `vswin_cli.records` types here and nowhere else (`segment_from_record`,
`summary_from_record`, `error_from_record`), for every caller:

- The report (`vswin report`) and the labelled videos (`vswin annotate`) start from a results file
  that `vswin tag` wrote (`vswin_cli.writers`). `read_results` streams it: it yields one `VideoResult`
  per video and keeps only that video's records in memory, so a run over a million videos reads in
  constant memory. The format is recognised from the content (not the extension), so `tags.txt`
  holding JSON Lines works; anything else is refused with a `ConfigError` naming the file and line.
  Records of one video are written together by the writers (`ResultWriter.write_video`), so a video
  ends where the next key starts. A JSON document (`{"videos": [...]}`) is decoded element by element
  from a sliding buffer, so it also streams. Event records are not read back (they are derived from
  the segments); CSV/TSV carry no frame rate or segment count, so there a summary's `fps` is 0.0
  (unknown) and its `num_segments` the number of segment records.
- `--resume` (`vswin_cli.resume`) and the merge of torchrun shard files (`read_results_jsonl`) read a
  JSON Lines output that a killed run may have left with a torn last line: `read_jsonl` drops it.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from vswin_cli.errors import ConfigError
from vswin_cli.records import Event, LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary
from vswin_cli.writers import CSV_COLUMNS

_HINT = "give a file that `vswin tag` wrote (--format jsonl, json, csv or tsv)"
_CHUNK = 1 << 16


def label_scores(top: list[dict]) -> tuple[LabelScore, ...]:
    """A record's `top` list (`{"label", "index", "score"}`, best first) as `LabelScore`s."""
    return tuple(LabelScore(str(t["label"]), None if t.get("index") is None else int(t["index"]), float(t["score"]))
                 for t in top)


def segment_from_record(record: dict, video: str | None = None) -> SegmentResult:
    """A segment record (`record: "segment"`, or an element of a JSON document's `segments`, then with
    `video` given) as the `SegmentResult` it was written from. Raises KeyError/TypeError/ValueError."""
    features = record.get("features")
    return SegmentResult(
        video=record["video"] if video is None else video, segment=int(record["segment"]),
        start=float(record["start"]), end=float(record["end"]),
        start_frame=int(record["start_frame"]), end_frame=int(record["end_frame"]),
        top=label_scores(record["top"]), views=int(record["views"]), model=str(record["model"]),
        features=None if features is None else tuple(features),
    )


def summary_from_record(record: dict, video: str | None = None) -> VideoSummary:
    """A video record (`record: "video"`, or a JSON document's `summary`) as its `VideoSummary`."""
    return VideoSummary(
        video=record["video"] if video is None else video, num_segments=int(record["num_segments"]),
        duration=float(record["duration"]), num_frames=int(record["num_frames"]), fps=float(record["fps"]),
        top=label_scores(record["top"]), views=int(record["views"]), model=str(record["model"]),
        skipped=tuple((float(a), float(b)) for a, b in record.get("skipped", ())),
        gaps=tuple((float(a), float(b)) for a, b in record.get("gaps", ())),
    )


def error_from_record(record: dict, video: str | None = None) -> VideoError:
    """An error record (`record: "error"`, `{"error": {"type", "message"}}`) as its `VideoError`."""
    key = record["video"] if video is None else video
    return VideoError(key, str(record["error"]["type"]), str(record["error"]["message"]))


@dataclass
class _Video:
    """One video's records while a results file is read; `result()` freezes them."""

    key: str
    segments: list[SegmentResult] = field(default_factory=list)
    summary: VideoSummary | None = None
    error: VideoError | None = None

    def result(self) -> VideoResult:
        return VideoResult(self.key, tuple(self.segments), self.summary, (), self.error)


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
        if record.get("record") != "run":  # what produced the file, not a video
            records.setdefault(record["video"], []).append(record)
    results = {}
    for key, items in records.items():
        errors = [r for r in items if r["record"] == "error"]
        if errors:
            results[key] = VideoResult(video=key, error=error_from_record(errors[-1]))
            continue
        summaries = [r for r in items if r["record"] == "video"]
        if not summaries:
            continue
        results[key] = VideoResult(
            video=key,
            segments=tuple(segment_from_record(r) for r in items if r["record"] == "segment"),
            events=tuple(Event(**{k: v for k, v in r.items() if k != "record"}) for r in items if r["record"] == "event"),
            summary=summary_from_record(summaries[-1]),
        )
    return results


def video_roots(results_path: str | os.PathLike, video_root: str | os.PathLike | None = None) -> list[Path]:
    """The folders a results file's video keys are looked up in: `video_root` if given, else the working
    directory and then the results file's folder (once if they are the same)."""
    if video_root is not None:
        return [Path(video_root)]
    roots = [Path("."), Path(results_path).parent]
    return roots[:1] if roots[0].resolve() == roots[1].resolve() else roots


def read_results(path: str | os.PathLike) -> Iterator[VideoResult]:
    """Stream the videos of a `vswin tag` results file, in file order.

    Args:
        path: a JSON Lines, JSON, CSV or TSV file written by `vswin tag` (format sniffed from content).

    Yields:
        one `VideoResult` per video (its segments, summary or error; no events).

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


def _read_jsonl(path: Path, head: str, stream: TextIO) -> Iterator[VideoResult]:
    current: _Video | None = None
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
                yield current.result()
            current = _Video(key)
        _add_record(current, kind, record, path, number)
    if current is not None:
        yield current.result()


def _add_record(video: _Video, kind: str, record: dict, path: Path, number: int) -> None:
    try:
        if kind == "segment":
            video.segments.append(segment_from_record(record, video.key))
        elif kind == "video":
            video.summary = summary_from_record(record, video.key)
        elif kind == "error":
            video.error = error_from_record(record, video.key)
        elif kind != "event":  # events are derived from the segments; the report draws those
            raise _bad(path, number, f"unknown record type {kind!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise _bad(path, number, f"a {kind!r} record without a valid {err} field") from None


def _read_json(path: Path, head: str, stream: TextIO) -> Iterator[VideoResult]:
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
        video = _Video(item["video"])
        if "error" in item:
            _add_record(video, "error", item, path, number)
        for segment in item.get("segments") or ():
            _add_record(video, "segment", segment, path, number)
        if item.get("summary") is not None:
            _add_record(video, "video", item["summary"], path, number)
        yield video.result()
        pos = end


def _read_csv(path: Path, head: str, stream: TextIO, delimiter: str) -> Iterator[VideoResult]:
    rows = csv.reader(_lines(head, stream), delimiter=delimiter)
    header = next(rows)
    if tuple(header) != CSV_COLUMNS:
        raise _bad(path, 1, f"unexpected columns {header[:6]}... (expected those `vswin tag -f csv` writes)")
    col = {name: i for i, name in enumerate(CSV_COLUMNS)}
    current: _Video | None = None
    summary: dict | None = None  # the video rows of `current` so far (one per tag)
    open_segment: dict | None = None

    def close_segment():
        nonlocal open_segment
        if open_segment is not None:
            tags = open_segment.pop("tags")
            current.segments.append(SegmentResult(**open_segment, top=tuple(tags)))
            open_segment = None

    def finish() -> VideoResult:
        close_segment()
        if summary is not None:
            current.summary = VideoSummary(current.key, len(current.segments), fps=0.0, **summary)
        return current.result()

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
                yield finish()
            current, summary = _Video(key), None
        try:
            index = int(row[col["index"]]) if row[col["index"]] else None
            tag = [LabelScore(row[col["label"]], index, float(row[col["score"]]))] if row[col["label"]] else []
            if kind == "segment":
                index = int(row[col["segment"]])
                if open_segment is None or open_segment["segment"] != index:
                    close_segment()
                    open_segment = dict(
                        video=key, segment=index, start=float(row[col["start"]]), end=float(row[col["end"]]),
                        start_frame=int(row[col["start_frame"]]), end_frame=int(row[col["end_frame"]]),
                        views=int(row[col["views"]]), model=row[col["model"]], tags=[])
                open_segment["tags"] += tag
            elif kind == "video":
                close_segment()
                if summary is None:
                    summary = {"duration": float(row[col["end"]]), "num_frames": int(row[col["end_frame"]]),
                               "model": row[col["model"]], "views": int(row[col["views"]]), "top": ()}
                summary["top"] += tuple(tag)
            elif kind == "error":
                current.error = VideoError(key, row[col["error_type"]], row[col["error_message"]])
            elif kind != "event":
                raise _bad(path, number, f"unknown record type {kind!r}")
        except ValueError as err:
            raise _bad(path, number, f"a {kind!r} row with a bad number ({err})") from None
    if current is not None:
        yield finish()


def read_run(path: str | os.PathLike) -> dict | None:
    """The run record of a `vswin tag` output (what produced it), or None for an output without one.

    JSON Lines: the first record; CSV/TSV: the `run` row's last column; JSON: the `run` key at the end.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(_CHUNK)
            f.seek(max(0, f.seek(0, os.SEEK_END) - _CHUNK))
            tail = f.read()
    except OSError:
        return None
    text = head.decode("utf-8", "replace")
    first, _, rest = text.partition("\n")
    try:
        if first.startswith("{") and '"record": "run"' in first:
            return json.loads(first)
        if first.startswith("record"):
            row = next(csv.reader([rest.partition("\n")[0]], delimiter="\t" if "\t" in first else ","))
            return json.loads(row[-1]) if row and row[0] == "run" else None
        at = tail.decode("utf-8", "replace").rfind('"run": {')
        if at >= 0:
            return {"record": "run", **json.JSONDecoder().raw_decode(tail.decode("utf-8", "replace"), at + len('"run": '))[0]}
    except (ValueError, IndexError, StopIteration):
        return None
    return None

