"""Progress on stderr (`tag`'s videos and segments, `train`'s steps, `fetch`'s downloads): a Rich bar when
stderr is a terminal, else a plain line every few seconds (tqdm for training in a notebook).

Never wraps messages (a `failed:` line must stay one line for `grep`), never writes to stdout.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
)

from vswin_cli.errors import ConfigError

PLAIN_EVERY_S = 10.0


class TagProgress:
    """Counts videos, segments and video time of a `vswin tag` run; one warning line per failed video.

    Args:
        num_videos: videos this process tags.
        quiet: print nothing (`-q`).
    """

    def __init__(self, num_videos: int, quiet: bool):
        self.quiet, self.num_videos = quiet, num_videos
        self.videos = self.segments = 0
        self.done_seconds = 0.0  # finished videos: their durations
        self.reached: dict[str, float] = {}  # videos in progress: the furthest segment end so far
        self.current: str | None = None  # the video of the last segment written
        self.start = self.last_plain = time.monotonic()
        self.console = Console(stderr=True, soft_wrap=True)
        self.live = not quiet and sys.stderr.isatty()
        self.bar = Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
                            TextColumn("{task.fields[segments]} segments, {task.fields[rate]}"),
                            TimeRemainingColumn(), console=self.console, disable=not self.live, transient=True)
        self.task = self.bar.add_task("tag", total=num_videos, segments=0, rate="")

    @property
    def video_seconds(self) -> float:
        """Seconds of video tagged so far: whole finished videos plus how far the others have got."""
        return self.done_seconds + sum(self.reached.values())

    def __enter__(self) -> TagProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def on_segment(self, segment) -> None:
        """A segment is written (a `SegmentResult`): it advances the video time done."""
        self.current = segment.video
        self.segments += 1
        # the furthest end, not the sum of lengths: overlapping segments (--stride) cover a second once
        self.reached[segment.video] = max(self.reached.get(segment.video, 0.0), segment.end)
        self._update()

    def on_result(self, result) -> None:
        """A video is written (or failed)."""
        self.videos += 1
        reached = self.reached.pop(result.video, 0.0)
        # the video's own duration: the last window may reach past the end of the file
        self.done_seconds += min(reached, result.summary.duration) if result.summary is not None else reached
        if result.error is not None and not self.quiet:
            self.console.print(f"failed: {result.error.message}", markup=False, highlight=False, soft_wrap=True)
        self._update(advance=1)

    def _update(self, advance: int = 0) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = f"{self.video_seconds:.1f} s of video, {self.video_seconds / elapsed:.2f} video-s/s"
        live = sys.modules.get("vswin_cli.live")  # loaded only when a stream is read
        stats = live.LIVE_STATS.get(self.current) if live is not None else None
        if stats is not None:  # a stream has no end to count towards: how far in, how far behind
            rate = (f"stream {stats.stream_s:.1f} s, lag {stats.lag_s:.2f} s, {stats.skipped} dropped"
                    + (f", {stats.reconnects} reconnect(s)" if stats.reconnects else ""))
        if self.live:
            self.bar.update(self.task, advance=advance, segments=self.segments, rate=rate)
        elif not self.quiet and time.monotonic() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            sys.stderr.write(f"tagging: {self.videos}/{self.num_videos} videos, {self.segments} segments, {rate}\n")
            sys.stderr.flush()


class StepProgress:
    """Steps within the epoch, with the epoch's mean loss so far, clips/s and the epoch's ETA, on stderr.

    Args:
        epochs: the run's last epoch number (for "epoch 3/30").
        style: "rich" (a live bar; for a terminal), "plain" (a line every `every_s` seconds; for logs),
            "tqdm" (a tqdm bar; notebooks and the Python API), "none", or "auto": tqdm in a Jupyter kernel,
            rich when stderr is a terminal, else plain.
        every_s: seconds between plain lines.
    """

    def __init__(self, epochs: int, style: str = "auto", every_s: float = 10.0):
        if style == "auto":
            style = "tqdm" if "ipykernel" in sys.modules else ("rich" if sys.stderr.isatty() else "plain")
        if style not in ("rich", "plain", "tqdm", "none"):
            raise ConfigError(f"unknown progress style {style!r}", hint="use auto, rich, plain, tqdm or none")
        self.epochs, self.style, self.every_s = epochs, style, every_s
        self.bar = None

    def start_epoch(self, epoch: int, num_steps: int) -> None:
        """Epoch `epoch` (1-based) of `num_steps` batches begins."""
        self.epoch, self.num_steps = epoch, num_steps
        self.loss_sum, self.clips = 0.0, 0
        self.start = self.last_line = time.monotonic()
        label = f"epoch {epoch}/{self.epochs}"
        if self.style == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("steps {task.fields[info]}"),
                                TimeRemainingColumn(), console=Console(stderr=True, soft_wrap=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=num_steps, info="")
        elif self.style == "tqdm":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=num_steps, desc=label, unit="step", file=sys.stderr, leave=False)

    def on_step(self, step: int, num_steps: int, loss, num_clips: int) -> None:
        """`train_one_epoch`'s `on_step`: batch `step` of `num_steps` is done."""
        if self.style == "none":
            return
        self.loss_sum += float(loss) * num_clips  # one sync per batch: negligible next to a video model's step
        self.clips += num_clips
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate, mean_loss = self.clips / elapsed, self.loss_sum / max(self.clips, 1)
        if self.style == "rich":
            self.bar.update(self.task, completed=step, info=f"loss {mean_loss:.4f}, {rate:.2f} clips/s")
        elif self.style == "tqdm":
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", clips_s=f"{rate:.2f}", refresh=False)
        elif time.monotonic() - self.last_line >= self.every_s or step == num_steps:
            self.last_line = time.monotonic()
            eta = elapsed / step * (num_steps - step)
            sys.stderr.write(f"epoch {self.epoch}/{self.epochs}: step {step}/{num_steps}, loss {mean_loss:.4f}, "
                             f"{rate:.2f} clips/s, ETA {_clock(eta)}\n")
            sys.stderr.flush()

    def end_epoch(self) -> None:
        if self.style == "tqdm":
            self.bar.close()
        elif self.style == "rich":
            self.bar.stop()
        self.bar = None


class _NoBar:
    """`download_progress` with the bar switched off."""

    def start(self, total, completed):
        pass

    def advance(self, n):
        pass


class _RichBar:
    """One Rich progress bar on stderr for one file (restarted at the right offset on a resume)."""

    def __init__(self, progress, label):
        self.progress, self.label, self.task = progress, label, None

    def start(self, total, completed):
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=total, completed=completed)
        else:
            self.progress.update(self.task, total=total, completed=completed)

    def advance(self, n):
        self.progress.advance(self.task, n)


@contextmanager
def download_progress(label: str, enabled: bool):
    """One file's download bar on stderr (bytes, speed, time left): yields an object with
    `start(total, completed)` (called again from the resume offset on a retry) and `advance(n)`."""
    if not enabled:
        yield _NoBar()
        return

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield _RichBar(progress, label)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
