"""Where results go: stdout or an atomic output file owned by one run, and the tag run that fills it.

`OutputFile` makes `-o PATH` atomic: records go to `PATH.part` and it is renamed to PATH when the run
ends (also after Ctrl-C). A run killed harder leaves `PATH.part`, which `--resume` continues from (see
`vswin_cli.resume`). A lock beside the output refuses a second run on it at once. `run_tag` streams a
`Tagger` into an output; under torchrun each rank writes its own shard file and rank 0 merges them in
input order. Temporary names are unique per run and short, so any valid `-o` name works.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

from vswin_cli.aggregate import SegmentResult, VideoResult
from vswin_cli.distributed import Shard, barrier as process_group_barrier
from vswin_cli.errors import ConfigError, UsageError
from vswin_cli.files import atomic_file, sibling, write_text_atomic
from vswin_cli.scoring import ResumedVideo, ScoredSegment
from vswin_cli.inputs import VideoInput
from vswin_cli.results import read_results_jsonl, segment_from_record
from vswin_cli.resume import Kept, ResumeLog, read_completed_jsonl
from vswin_cli.writers import get_writer


def write_output(target: str, text: str) -> None:
    """A small result document to stdout (`-`) or atomically to a file (`files.write_text_atomic`)."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    write_text_atomic(target, text)


class OutputFile:
    """Where results go: stdout (`-`), or PATH written through `PATH.part` and renamed when done.

    Args:
        path: "-" for stdout, else the output file.
        resume: continue from an earlier, interrupted run (JSON Lines only): its complete videos are
            copied into the new output and reported by `done`.
        read_done: reads an earlier output into a `Kept`: `read_completed_jsonl` for `tag`,
            `engine.read_predictions` for `eval`.
        lock: hold the output's lock (a second run on the same output is refused at once).
    """

    def __init__(self, path: str, resume: bool = False, read_done: Callable[[Path], Kept] | None = None,
                 lock: bool = True):
        self.to_stdout = path == "-"
        self.path = None if self.to_stdout else Path(path)
        self.kept = Kept([], set(), {})
        self._lock = None
        if lock and not self.to_stdout:
            self._lock = _lock_output(self.path)
        if resume:
            if self.to_stdout:
                raise ConfigError("--resume needs an output file", hint="add -o PATH.jsonl")
            for candidate in (self.part_path, self.path):
                if candidate.is_file():
                    self.kept = (read_done or read_completed_jsonl)(candidate)
                    break
        self.stream: TextIO | None = None
        self.resume_log = ResumeLog(sibling(self.path, ".probs", hidden=True)) if not self.to_stdout else None

    @property
    def done(self) -> set[str]:
        """Keys of the videos complete in the output being resumed."""
        return self.kept.done

    @property
    def kept_lines(self) -> list[str]:
        return self.kept.lines

    @property
    def part_path(self) -> Path:
        return sibling(self.path, ".part")

    def open(self, run: dict | None = None) -> TextIO:
        """Open the stream to write into: stdout, or `PATH.part` holding the resumed videos' lines.

        Args:
            run: the run record of this run; a resumed output made by a different run (another model,
                precision, runtime, views...) is refused rather than mixed.
        """
        if run is not None and self.kept.run is not None and self.kept.run != run:
            differ = sorted(k for k in set(run) | set(self.kept.run) if run.get(k) != self.kept.run.get(k))
            raise UsageError(f"-o {self.path}: cannot resume: the output was made with other settings "
                             f"({', '.join(f'{k} {self.kept.run.get(k)} -> {run.get(k)}' for k in differ)})",
                             hint="resume with the same options (--model, --views, --precision, --runtime, ...), "
                                  "or write to a new file")
        if self.to_stdout:
            self.stream = sys.stdout
            return self.stream
        if not self.path.parent.is_dir():
            raise ConfigError(f"{self.path}: the output folder does not exist", hint="create it first")
        # Build the new .part beside the old one, then swap it in, so a crash here loses nothing.
        with atomic_file(self.part_path) as tmp:  # unique per run; the open handle then writes into PATH.part
            self.stream = open(tmp, "w", encoding="utf-8", newline="")
            self.stream.write("".join(self.kept_lines))
            self.stream.flush()
        return self.stream

    def commit(self, final: bool = True, order: Sequence[str] | None = None) -> None:
        """Close the stream; publish `PATH.part` as PATH (final), or leave it to resume from later.

        Args:
            final: publish PATH; else keep `PATH.part` for `--resume`.
            order: video keys in input order. A resumed JSON Lines run wrote its kept videos first and
                the rest after; with `order` the published file lists every video in input order, the
                same bytes as an uninterrupted run.
        """
        if self.to_stdout or self.stream is None:
            self.release()
            return
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        self.stream = None
        if final:
            if order is not None and self.kept_lines:
                self._reorder(order)
            os.replace(self.part_path, self.path)
        self.release()

    def _reorder(self, order: Sequence[str]) -> None:
        """Rewrite `PATH.part` with each video's lines at its input position (through a temporary file)."""
        by_video: dict[str, list[bytes]] = {}
        header: list[bytes] = []  # the run record
        with open(self.part_path, "rb") as f:
            for line in f:
                record = json.loads(line)
                if record.get("record") == "run":
                    header.append(line)
                else:
                    by_video.setdefault(record["video"], []).append(line)
        with atomic_file(self.part_path) as tmp, open(tmp, "wb") as out:
            out.writelines(header[:1])
            for key in dict.fromkeys(order):
                out.writelines(by_video.pop(key, ()))
            for lines in by_video.values():  # videos no longer in the inputs stay, after the others
                out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())

    def release(self) -> None:
        """Let another run write this output (the lock file stays: see `download.file_lock`)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _lock_output(path: Path):
    """An exclusive, non-blocking lock beside `path` holding this process's id; refuses a second run at once."""
    lock_path = sibling(path, ".lock", hidden=True)
    try:
        handle = open(lock_path, "a+")
    except OSError as err:
        raise ConfigError(f"-o {path}: cannot create {lock_path.name} beside it ({err.strerror})",
                          hint="choose a writable folder for the output") from None
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"-o {path}: another vswin run (process {other}) is writing this output",
                          hint="wait for it to finish, or write to another file") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@dataclass(frozen=True)
class TagReport:
    """What a run did (on this rank)."""

    num_tagged: int
    num_failed: int
    num_skipped: int  # already complete in the output being resumed
    num_segments: int  # segment records written (also those of a video cut by Ctrl-C)
    interrupted: bool


def run_tag(
    tagger,
    videos: Sequence[VideoInput],
    output: str,
    output_format: str = "jsonl",
    resume: bool = False,
    shard: Shard = Shard(),
    on_result: Callable[[VideoResult], None] | None = None,
    barrier: Callable[[], None] | None = None,
    on_segment: Callable[[SegmentResult], None] | None = None,
    run: dict | None = None,
) -> TagReport:
    """Tag `videos` into `output`, skipping those already complete there with `resume`.

    Under torchrun each rank tags its shard into `<output>.shards/rank<r>-of-<w>.jsonl` (resumable on
    its own); after a barrier rank 0 merges all shards, in input order, into one output.

    Args:
        tagger: the model runner.
        videos: inputs, in output order.
        output: "-" for stdout, else a file path (written atomically).
        output_format: one of `writers.FORMATS`.
        resume: continue an interrupted JSON Lines output.
        shard: this process's rank and the world size.
        on_result: called after each video is written (progress, logging).
        on_segment: called after each segment is written (progress in video time).
        barrier: waits for every rank (default: a gloo process group); used only when sharded.
        run: the run record written first (`api.Tagger.run_record`: what produced the output).

    Returns:
        A `TagReport`. Ctrl-C ends the run early with `interrupted=True`; what was written is kept (the
        video cut in the middle continues there with `resume`).
    """
    final = OutputFile(output, resume=resume, lock=shard.rank == 0)
    if shard.world_size == 1:
        todo = [v for v in videos if v.key not in final.done]
        report = _tag_into(tagger, todo, final, output_format, on_result, on_segment, order=[v.key for v in videos],
                           run=run)
        return TagReport(report.num_tagged, report.num_failed, len(videos) - len(todo), report.num_segments,
                         report.interrupted)

    shard_file = _shard_dir(output) / f"rank{shard.rank}-of-{shard.world_size}.jsonl"
    shard_file.parent.mkdir(parents=True, exist_ok=True)
    mine = OutputFile(str(shard_file), resume=resume)
    assigned = shard.take(videos)  # shard before filtering: the same split every run
    todo = [v for v in assigned if v.key not in final.done | mine.done]
    report = _tag_into(tagger, todo, mine, "jsonl", on_result, on_segment)
    skipped = len(assigned) - len(todo)
    if report.interrupted:
        return TagReport(report.num_tagged, report.num_failed, skipped, report.num_segments, True)
    (barrier or process_group_barrier)()
    if shard.rank == 0:
        merge_shards(videos, sorted(shard_file.parent.glob(f"rank*-of-{shard.world_size}.jsonl")), final,
                     output_format, run)
    return TagReport(report.num_tagged, report.num_failed, skipped, report.num_segments, False)


def merge_shards(videos: Sequence[VideoInput], shard_files: Sequence[Path], final: OutputFile,
                 output_format: str, run: dict | None = None) -> None:
    """Write the shards' results into `final` in input order (after what it keeps from a resumed run)."""
    results: dict[str, VideoResult] = {}
    for path in shard_files:
        results.update(read_results_jsonl(path))
    writer = get_writer(output_format, final.open(run))
    if run is not None:
        writer.write_run(run)
    for video in videos:
        if video.key in results and video.key not in final.done:
            writer.write_video(results[video.key])
    writer.close()
    final.commit()
    for path in shard_files:
        path.unlink()
        sibling(path, ".lock", hidden=True).unlink(missing_ok=True)  # the shard's run is over
    with suppress(OSError):
        shard_files[0].parent.rmdir()


def _tag_into(tagger, videos: Sequence[VideoInput], out: OutputFile, output_format: str,
              on_result: Callable[[VideoResult], None] | None, on_segment: Callable[[SegmentResult], None] | None,
              order: Sequence[str] | None = None, run: dict | None = None) -> TagReport:
    """Stream `tagger.stream` into `out`: the run record, each segment as it is scored, each video's summary when done."""
    resumed = _resumed_videos(videos, out)
    log = out.resume_log if output_format == "jsonl" and not out.to_stdout else None
    writer = get_writer(output_format, out.open(run))
    if run is not None:  # a resumed output's run line is moved back to the top by `OutputFile.commit`
        writer.write_run(run)
    if log is not None:
        log.open()
    tagged = failed = segments = 0
    interrupted = False
    try:
        for item in tagger.stream(videos, resumed):
            if isinstance(item, ScoredSegment):
                if log is not None:  # before the record: a kept record always has its probabilities
                    log.write(item.result.video, item.result.segment, item.probs)
                writer.write_segment(item.result)
                segments += writer.streams_segments
                if on_segment is not None:
                    on_segment(item.result)
                continue
            writer.write_video(item)
            tagged += 1
            failed += item.error is not None
            segments += 0 if writer.streams_segments else len(item.segments)
            if on_result is not None:
                on_result(item)
    except KeyboardInterrupt:
        interrupted = True
    writer.close()
    # Also after Ctrl-C: the finished videos are in it, and --resume continues the one cut inside.
    out.commit(order=order)
    if log is not None:
        log.close(delete=not interrupted)
    return TagReport(tagged, failed, 0, segments, interrupted)


def _resumed_videos(videos: Sequence[VideoInput], out: OutputFile) -> dict[int, ResumedVideo]:
    """The videos an interrupted run stopped inside, with their kept segments and probabilities."""
    if not out.kept.partial:
        return {}
    probs = out.resume_log.read(out.kept.partial)
    resumed = {}
    for pos, video in enumerate(videos):
        rows = probs.get(video.key, [])
        if rows:
            records = out.kept.partial[video.key][:len(rows)]
            resumed[pos] = ResumedVideo([segment_from_record(r) for r in records], rows)
    return resumed


def _shard_dir(output: str) -> Path:
    if output != "-":
        return Path(output + ".shards")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "local")
    return Path(tempfile.gettempdir()) / f"vswin-tag-shards-{run_id}"
