"""Progress on stderr: a Rich bar when stderr is a terminal, else a plain line every few seconds.

Never wraps messages (a `failed:` line must stay one line for `grep`), never writes to stdout.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
        self.video_seconds = 0.0
        self.start = self.last_plain = time.monotonic()
        self.console = Console(stderr=True, soft_wrap=True)
        self.live = not quiet and sys.stderr.isatty()
        self.bar = Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TextColumn("videos"),
                            TextColumn("{task.fields[segments]} segments, {task.fields[rate]}"),
                            TimeRemainingColumn(), console=self.console, disable=not self.live, transient=True)
        self.task = self.bar.add_task("tag", total=num_videos, segments=0, rate="")

    def __enter__(self) -> TagProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def on_segment(self, segment) -> None:
        """A segment is written (a `SegmentResult`): it advances the video time done."""
        self.segments += 1
        self.video_seconds += max(segment.end - segment.start, 0.0)
        self._update()

    def on_result(self, result) -> None:
        """A video is written (or failed)."""
        self.videos += 1
        if result.error is not None and not self.quiet:
            self.console.print(f"failed: {result.error.message}", markup=False, highlight=False, soft_wrap=True)
        self._update(advance=1)

    def _update(self, advance: int = 0) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = f"{self.video_seconds:.0f} s of video, {self.video_seconds / elapsed:.2f} video-s/s"
        if self.live:
            self.bar.update(self.task, advance=advance, segments=self.segments, rate=rate)
        elif not self.quiet and time.monotonic() - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = time.monotonic()
            sys.stderr.write(f"tagging: {self.videos}/{self.num_videos} videos, {self.segments} segments, {rate}\n")
            sys.stderr.flush()
