"""Timestamps and segment planning for inputs read once, front to back (live streams, remote files).

    FrameClock      decoded frame -> exact seconds (33-bit MPEG-TS wrap-around, jumps, reconnects)
    StepMedian      `sampling.frame_step` over all frames seen, without keeping them
    OnlinePlanner   timestamps as they arrive -> the `Segment`s `sampling.plan_segments` would give
                    for the whole recording, each as soon as no later frame can change it

`live.py` drives them: one `FrameClock.seconds` per decoded frame, then `OnlinePlanner.push` with it,
and `OnlinePlanner.finish` at the end of the stream.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import replace

import numpy as np

from vswin_cli.sampling import Segment

log = logging.getLogger("vswin.live")

EPS = 1e-9  # the tolerance `sampling.plan_segments` compares times with
JUMP_S = 10.0  # a timestamp step larger than this (or backwards) is a discontinuity, not a slow frame
_MPEGTS_WRAP = 1 << 33  # MPEG-TS pts are 33-bit counters of a 90 kHz clock (wrap after 26.5 h)


# ---------------------------------------------------------------------------------------------------------------
# timestamps


class FrameClock:
    """Seconds of each decoded frame from its pts, kept increasing for days.

    Remote files keep their own clock (pts * time_base, as `decode.VideoReader.timestamps`); live
    streams count from their first frame. A 33-bit wrap-around is undone exactly; any other jump back,
    or forward by more than `JUMP_S`, is a discontinuity: the next frame then follows the last one
    after one frame step. After a reconnect, `resume_after(gap_s)` puts the next frame `gap_s` later.
    """

    def __init__(self, time_base: float, from_zero: bool, wraps: bool):
        """`from_zero`: a live stream (count from its first frame, repair jumps); else a file's own clock."""
        self.time_base, self.from_zero, self.wraps = time_base, from_zero, wraps
        self.offset = None  # pts units added to the unwrapped pts (set by the first frame)
        self.last_raw = None  # the last frame's pts as the stream gave it
        self.unwrap = 0  # multiples of 2**33 added so far
        self.last_pts = None  # the last frame's position on our clock, in pts units
        self.last_s = None
        self.step_pts = 1  # the last sane step between frames, in pts units
        self.discontinuities = 0
        self._gap_s: float | None = None

    def resume_after(self, gap_s: float) -> None:
        """The stream was reopened: the next frame comes `gap_s` seconds after the last one's end."""
        self._gap_s = gap_s
        self.last_raw = None

    def seconds(self, pts: int | None) -> float:
        """The frame's time in seconds on this clock (pts None: one step after the last frame)."""
        if pts is None:
            pts = (self.last_raw if self.last_raw is not None else 0) + self.step_pts
        if self.offset is None:
            self.offset = -pts if self.from_zero else 0
        elif self.last_raw is None:  # reopened: the new connection's clock starts anywhere
            gap_pts = int(round((self._gap_s or 0.0) / self.time_base))
            self.offset = self.last_pts + self.step_pts + gap_pts - pts
            self.unwrap = 0
        else:
            raw = pts + self.unwrap
            delta = raw - (self.last_raw + self.unwrap)
            if self.wraps and delta < -_MPEGTS_WRAP // 2:
                self.unwrap += _MPEGTS_WRAP
                delta += _MPEGTS_WRAP
            if self.from_zero and (delta <= 0 or delta * self.time_base > JUMP_S):
                self.discontinuities += 1
                log.info("timestamp discontinuity (%+d pts); the stream's time goes on from the last frame", delta)
                self.offset = self.last_pts + self.step_pts - (pts + self.unwrap)
            else:
                self.step_pts = delta
        self.last_raw = pts
        self.last_pts = pts + self.unwrap + self.offset
        self.last_s = float(self.last_pts) * self.time_base  # as `decode.VideoReader.timestamps` computes it
        return self.last_s


class StepMedian:
    """`sampling.frame_step` over all frames seen, without keeping them: the median of the steps,
    counted by exact value (a stream has few distinct steps)."""

    def __init__(self):
        self.counts: Counter[float] = Counter()
        self.n = 0

    def add(self, step: float) -> None:
        self.counts[step] += 1
        self.n += 1

    def median(self, fps: float = 0.0) -> float:
        if self.n == 0:
            return 1.0 / fps if fps else 0.0
        wanted = [(self.n - 1) // 2, self.n // 2]
        values, seen = [], 0
        for value in sorted(self.counts):
            count = self.counts[value]
            while wanted and wanted[0] < seen + count:
                values.append(value)
                wanted.pop(0)
            seen += count
        return float(np.mean(values))


# ---------------------------------------------------------------------------------------------------------------
# planning


class OnlinePlanner:
    """`sampling.plan_segments(all timestamps, window_s, stride_s)`, computed as the frames arrive.

    Window k starts at t0 + k*stride unless the video ends within a window of it; once a frame later
    than t0 + k*stride + window has arrived, the end of the video is known to be later, so window k's
    start and frames are final. A window that starts on the frame its predecessor starts on replaces
    it (`sampling._segments`), so a segment is handed out once no later window can start on its first
    frame. `finish()` plans the rest with the end known, exactly as the whole-file planner does.

    Frame numbers are global (0 = the stream's first frame); timestamps older than the frames the
    open windows can still use are dropped (`keep_from`).
    """

    def __init__(self, window_s: float, stride_s: float):
        if window_s <= 0 or stride_s <= 0:
            raise ValueError(f"window and stride must be positive, got window={window_s} stride={stride_s}")
        self.window, self.stride = float(window_s), float(stride_s)
        self.ts: deque[float] = deque()  # timestamps of frames base .. count-1
        self.base = 0
        self.count = 0
        self.t0: float | None = None
        self.k = 0  # the next window to plan
        self.pending: Segment | None = None  # planned, but a later window may still replace it
        self.last_end_frame = 0  # end_frame of the last segment handed out or pending
        self.next_index = 0
        self.steps = StepMedian()

    def push(self, t: float) -> list[Segment]:
        """Add the next frame's timestamp; returns the segments that became final (in order)."""
        if self.count and t < self.ts[-1]:
            raise ValueError("timestamps must be in ascending order")
        if self.count:
            self.steps.add(t - self.ts[-1])
        else:
            self.t0 = t
        self.ts.append(t)
        self.count += 1
        done: list[Segment] = []
        while True:
            start = self.t0 + self.k * self.stride
            if not t >= start + self.window + EPS:
                break  # window k may still be the last, moved back to the end: wait
            first = self._search(start - EPS)
            stop = max(self._search(start + self.window - EPS), first + 1)
            if stop >= self.count:
                break  # its end time is the next frame's: wait for it
            self.k += 1
            done += self._add(first, stop, self._at(stop))
        if self.pending is not None and self._at(self.pending.start_frame) < self.t0 + self.k * self.stride - EPS \
                and self._at(self.pending.start_frame) + self.window + EPS < t:
            done.append(self._take_pending())  # no later window (nor the last, moved back) can start on its frame
        self._trim()
        return done

    def finish(self, end_time: float | None = None) -> list[Segment]:
        """The end of the stream: the remaining segments (the last one moved back to end with it)."""
        if self.count == 0:
            return []
        end = float(self.ts[-1]) + self.steps.median() if end_time is None else float(end_time)
        done: list[Segment] = []
        last = self.t0 + (self.k - 1) * self.stride if self.k else None  # the last window planned
        while last is None or last + self.window < end - EPS:
            last = self.t0 if last is None else min(self.t0 + self.k * self.stride, end - self.window)
            self.k += 1
            first = min(self._search(last - EPS), self.count - 1)
            stop = max(self._search(last + self.window - EPS), first + 1)
            done += self._add(first, stop, self._at(stop) if stop < self.count else end)
        if self.pending is not None:
            done.append(self._take_pending())
        return done

    def keep_from(self) -> int:
        """The first frame a segment still to come may use (earlier frames can be dropped)."""
        if self.count == 0:
            return 0
        if self.pending is not None:
            return self.pending.start_frame
        previous = self.t0 + max(self.k - 1, 0) * self.stride  # the last window at the end starts after it
        return min(self._search(previous - EPS), self.count - 1)

    def _add(self, first: int, stop: int, t_end: float) -> list[Segment]:
        """`sampling._segments`' rules for one more window; returns the segment it makes final, if any."""
        if self.last_end_frame and stop <= self.last_end_frame:
            return []  # adds no frame the previous segment does not have
        done = []
        segment = Segment(self.next_index, first, stop, float(self._at(first)), float(t_end))
        if self.pending is not None and first == self.pending.start_frame:
            segment = replace(segment, index=self.pending.index)  # the longer of two windows starting together
        elif self.pending is not None:
            done.append(self._take_pending())
            segment = replace(segment, index=self.next_index)
        self.pending, self.last_end_frame = segment, stop
        return done

    def _take_pending(self) -> Segment:
        segment, self.pending = self.pending, None
        self.next_index = segment.index + 1
        return segment

    def _at(self, frame: int) -> float:
        return self.ts[frame - self.base]

    def _search(self, t: float) -> int:
        """Global index of the first frame at or after `t` (`np.searchsorted(..., side="left")`)."""
        lo, hi = 0, len(self.ts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ts[mid] < t:
                lo = mid + 1
            else:
                hi = mid
        return self.base + lo

    def _trim(self) -> None:
        keep = self.keep_from()
        while self.base < keep and len(self.ts) > 1:
            self.ts.popleft()
            self.base += 1
