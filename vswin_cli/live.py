"""Live streams and remote files: one sequential PyAV decode, segments planned as the frames arrive.

The hand-off is the one decode workers use (`segments.SegmentViews` per segment, then one
`VideoDecoded` or `VideoFailed`), so `inference.Engine` scores a stream as it scores a file. Stages:

    FrameClock      decoded frame -> exact seconds                     (live_planner.py)
    OnlinePlanner   timestamps as they arrive -> final `Segment`s      (live_planner.py)
    live_items      frames -> resized uint8 frames (the file path's resize) -> `SegmentViews`

Decoding runs in one thread beside the model (a stream cannot be shared between workers). It hands
segments over through a queue of `StreamInput.queue_segments`: when the model falls behind, policy
"keep" waits (the stream backs up; the lag grows and is reported), "skip" drops the segment (reported on
stderr and counted in `LiveStats.skipped`; kept segments are numbered consecutively). Frames are kept
only while a segment still to be planned can use them, so memory stays flat however long the stream.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import IterableDataset

from vswin_cli.aggregate import VideoError
from vswin_cli.errors import VswinError
from vswin_cli.live_planner import FrameClock, OnlinePlanner
from vswin_cli.protocol import ClipSpec, resized_size
from vswin_cli.sampling import Segment, plan_views, segment_lengths
from vswin_cli.segments import SegmentViews, VideoDecoded, VideoFailed, segment_views
from vswin_cli.sources import StreamInput, url_scheme
from vswin_cli.transforms import gather_views, resize_frame_into

if TYPE_CHECKING:
    from vswin_cli.segments import DecodeOptions

log = logging.getLogger("vswin.live")

RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # then 30 s between tries
RECONNECT_GIVE_UP_S = float(os.environ.get("VSWIN_RECONNECT_GIVE_UP_S", "300"))  # failing this long in a row ends it
OPEN_TIMEOUT_S = 10.0  # FFmpeg's network timeout (rw_timeout / timeout) for live streams


# ---------------------------------------------------------------------------------------------------------------
# reading


@dataclass
class LiveStats:
    """What a live input's progress shows (read by `progress.TagProgress`)."""

    key: str
    stream_s: float = 0.0  # stream time of the last frame in
    lag_s: float = 0.0  # how long the last segment waited between its last frame and the model
    skipped_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of segments dropped to stay live
    reconnects: int = 0
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (from, to) stream seconds missing

    @property
    def skipped(self) -> int:
        """Segments dropped to stay live (policy "skip")."""
        return len(self.skipped_spans)


LIVE_STATS: dict[str, LiveStats] = {}  # key -> stats of the streams being read in this process


class StreamEnded(Exception):
    """The stream stopped with an error (not a clean end of stream)."""


def _open(source: StreamInput):
    import av

    options = {}
    network = url_scheme(source.url) is not None
    if source.url.startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = "tcp"
    if source.url.startswith(("http://", "https://")):
        # One connection for the demuxer's seeks (an MP4 whose index is at the end reads it, then goes
        # back): new connections per seek lost the first packet against tests/http_server.py. A dropped
        # download resumes where it stopped (a Range request), so the bytes are the file's.
        options.update(multiple_requests="1", reconnect="1")
    # A silent network stream is an error (or a reconnect), not a hang; a pipe or a camera may pause.
    container = av.open(source.url, format=source.format, options=options,
                        timeout=OPEN_TIMEOUT_S if network else None, metadata_errors="ignore")
    stream = container.streams.best("video")
    if stream is None:
        container.close()
        raise VswinError(f"{source.url}: no video stream in it")
    stream.thread_type = "SLICE"  # frame threads would hold frames back: latency
    return container, stream


def _frames(source: StreamInput, stop: threading.Event, stats: LiveStats) -> Iterator[tuple[float, object]]:
    """(seconds, av.VideoFrame) of the stream, reopening it after a drop with `--reconnect`; `stop` set
    ends it as the end of the stream would."""
    import av

    container, stream = _open_first(source, stop)
    clock = FrameClock(float(stream.time_base), from_zero=source.is_live, wraps="mpegts" in container.format.name)
    yield 0.0, stream  # the first item tells the caller the stream (its frame rate)
    failing_since = None
    lost_at = None
    try:
        while not stop.is_set():
            error = None
            try:
                for packet in container.demux(stream):
                    if stop.is_set():
                        return
                    try:
                        frames = packet.decode()
                    except av.InvalidDataError:
                        continue  # a damaged packet of a live stream: the next keyframe repairs it
                    for frame in frames:
                        failing_since = None
                        yield clock.seconds(frame.pts), frame
            except (av.FFmpegError, OSError) as err:
                error = err
            if not source.reconnect or stop.is_set():
                if error is not None:
                    raise StreamEnded(f"{source.url}: the stream broke off ({type(error).__name__}: {error})")
                return  # a clean end of stream
            lost_at = lost_at or time.monotonic()
            failing_since = failing_since or time.monotonic()
            container.close()
            container = None
            for attempt in itertools.count():
                if time.monotonic() - failing_since > RECONNECT_GIVE_UP_S or stop.is_set():
                    if error is None:  # it ended cleanly and never came back: the end of the stream
                        sys.stderr.write(f"warning: {source.key}: no stream for {RECONNECT_GIVE_UP_S:.0f} s "
                                         f"after it ended; taking that as its end\n")
                        return
                    raise StreamEnded(f"{source.url}: the stream dropped ({error}) and could not be reopened "
                                      f"for {RECONNECT_GIVE_UP_S:.0f} s")
                delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
                sys.stderr.write(f"warning: {source.key}: the stream dropped"
                                 f"{f' ({error})' if error else ''}; reconnecting in {delay:g} s\n")
                stop.wait(delay)
                try:
                    container, stream = _open(source)
                    break
                except (av.FFmpegError, OSError, VswinError):
                    continue
            gap = time.monotonic() - lost_at
            gap_from = clock.last_s if clock.last_s is not None else 0.0
            clock.resume_after(gap)
            stats.reconnects += 1
            stats.gaps.append((round(gap_from, 3), round(gap_from + gap, 3)))
            sys.stderr.write(f"warning: {source.key}: reconnected after {gap:.1f} s; "
                             f"stream time {gap_from:.1f}-{gap_from + gap:.1f} s is missing\n")
            lost_at = None
    finally:
        if container is not None:
            container.close()


def _open_first(source: StreamInput, stop: threading.Event):
    """`_open`; with `--reconnect`, a stream that is not up yet is tried again with backoff."""
    import av

    since = time.monotonic()
    for attempt in itertools.count():
        try:
            return _open(source)
        except (av.FFmpegError, OSError) as err:
            if not source.reconnect or time.monotonic() - since > RECONNECT_GIVE_UP_S or stop.is_set():
                raise
            delay = RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)]
            sys.stderr.write(f"warning: {source.key}: cannot open it yet ({err}); trying again in {delay:g} s\n")
            stop.wait(delay)


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 0.0


_END = object()


def live_items(video_pos: int, source: StreamInput, spec: ClipSpec, options: DecodeOptions,
               first_segment: int = 0, on_queue=None) -> Iterator:
    """Read `source` front to back; yield its `SegmentViews` as each segment's last frame arrives, then a
    `VideoDecoded` (or a `VideoFailed` after the segments so far). Decoding runs in a thread.

    Args:
        on_queue: called with the hand-off queue (`LiveStream.idle` looks whether anything waits in it).
    """
    stats = LIVE_STATS.setdefault(source.key, LiveStats(source.key))
    handoff: queue.Queue = queue.Queue(maxsize=source.queue_segments)
    if on_queue is not None:
        on_queue(handoff)
    stop = threading.Event()  # the consumer is gone: stop at once
    end = threading.Event()  # end the stream here, as if it had ended (Ctrl-C, SIGTERM)
    restore = _end_on_signals(end, source) if source.is_live else {}

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for item in _decode_segments(video_pos, source, spec, options, first_segment, end, stats, handoff):
                if not put(item):
                    return
        except BaseException as err:  # everything reaches the consumer; nothing dies silently in a thread
            put(_failure(video_pos, source, err))
        put(_END)

    thread = threading.Thread(target=decode, name=f"vswin-live-{video_pos}", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, tuple):  # (arrival time of the last frame, SegmentViews)
                arrived, item = item
                stats.lag_s = time.monotonic() - arrived
            yield item
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
        stop.set()
        end.set()
        deadline = time.monotonic() + 2.0  # a decoder stuck in a network read is a daemon: left behind
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                handoff.get_nowait()  # unblock a decoder waiting to put
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _end_on_signals(end: threading.Event, source: StreamInput) -> dict:
    """Ctrl-C or SIGTERM ends a live stream where it is: its last segment and its summary are still
    scored and written (exit 0). A second one stops at once. Returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if end.is_set():
            raise KeyboardInterrupt
        end.set()
        sys.stderr.write(f"stopping: ending {source.key} here (its last segment and summary are still written);"
                         f" press Ctrl-C again to stop at once\n")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)
    return previous


def _failure(video_pos: int, source: StreamInput, err: BaseException) -> VideoFailed:
    if os.environ.get("VSWIN_DEBUG") == "1" and not isinstance(err, (VswinError, StreamEnded)):
        log.exception("live decoding failed")
    if isinstance(err, (VswinError, StreamEnded)):
        message = str(err)
    else:
        message = f"{source.url}: {type(err).__name__}: {err}"
    return VideoFailed(video_pos, VideoError(source.key, type(err).__name__, message))


def _decode_segments(video_pos: int, source: StreamInput, spec: ClipSpec, options: DecodeOptions, first_segment: int,
                     stop: threading.Event, stats: LiveStats, handoff: queue.Queue) -> Iterator:
    """The decode thread's work: frames -> resized frames -> final segments -> (arrival, SegmentViews)."""
    import av

    frames_in = _frames(source, stop, stats)
    try:
        _, stream = next(frames_in)
    except (av.FFmpegError, OSError) as err:
        raise VswinError(f"{source.url}: cannot open it (FFmpeg: {err})") from None
    fps = _stream_fps(stream)
    planner: OnlinePlanner | None = None
    early: list[float] = []  # timestamps before the frame rate is known (a stream without one in its header)
    buffer: deque[np.ndarray] = deque()  # resized frames planner.base .. ; global index = base + position
    base = 0
    to_frame = None
    kept = 0
    last_s = None

    def emit(segments: list[Segment], arrived: float) -> Iterator:
        nonlocal kept
        for segment in segments:
            if segment.index < first_segment:
                continue
            if source.policy == "skip" and handoff.full():
                stats.skipped_spans.append((round(segment.t_start, 3), round(segment.t_end, 3)))
                sys.stderr.write(f"warning: {source.key}: the model is behind; skipped the segment "
                                 f"{segment.t_start:.2f}-{segment.t_end:.2f} s ({stats.skipped} so far)\n")
                continue
            segment = replace(segment, index=kept) if source.policy == "skip" else segment
            kept += 1
            yield arrived, _views(video_pos, segment, spec, buffer, base)

    for t, frame in frames_in:
        arrived = time.monotonic()
        if to_frame is None:
            to_frame = _frame_converter(frame, spec, options)
        buffer.append(to_frame(frame))
        stats.stream_s = t
        if planner is None:
            early.append(t)
            if fps <= 0 and len(early) < 8:
                continue
            if fps <= 0:
                fps = 1.0 / float(np.median(np.diff(early)))
            window_s, stride_s = segment_lengths(options.window_s, options.stride_s, spec.span_frames, fps, 0.0)
            planner = OnlinePlanner(window_s, stride_s)
            for value in early:
                done = planner.push(value)
            early = []
        else:
            done = planner.push(t)
        yield from emit(done, arrived)
        while base < planner.keep_from() and len(buffer) > 1:
            buffer.popleft()
            base += 1
        last_s = t
    if planner is None and early:  # fewer frames than it takes to guess a frame rate
        fps = 1.0 / float(np.median(np.diff(early))) if len(early) > 1 else 1.0
        window_s, stride_s = segment_lengths(options.window_s, options.stride_s, spec.span_frames, fps, 0.0)
        planner = OnlinePlanner(window_s, stride_s)
        for value in early:
            planner.push(value)
    if planner is None or planner.count == 0:
        raise VswinError(f"{source.url}: the stream ended before its first frame")
    yield from emit(planner.finish(), time.monotonic())
    duration = float(last_s - planner.t0) + planner.steps.median(fps)
    yield VideoDecoded(video_pos, kept if source.policy == "skip" else planner.next_index, planner.count,
                       float(fps), duration, skipped=tuple(stats.skipped_spans), gaps=tuple(stats.gaps))


def _frame_converter(first_frame, spec: ClipSpec, options: DecodeOptions):
    """frame -> uint8 (h, w, 3) RGB, rotated and resized as `decode.VideoReader.read(..., resize_short)` does."""
    rotation = int(getattr(first_frame, "rotation", 0) or 0) % 360
    k = rotation // 90
    raw_h, raw_w = first_frame.height, first_frame.width
    if options.fast_decode:  # FFmpeg scales before rotation, as `open_video(short_side=...)`
        small_h, small_w = resized_size(raw_h, raw_w, spec.resize_short)

        def convert(frame):
            rgb = frame.to_ndarray(format="rgb24", width=small_w, height=small_h, interpolation="BILINEAR")
            return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb
        return convert
    shown_h, shown_w = (raw_w, raw_h) if k % 2 else (raw_h, raw_w)
    out_h, out_w = resized_size(shown_h, shown_w, spec.resize_short)

    def convert(frame):
        rgb = frame.to_ndarray(format="rgb24")
        if k:
            rgb = np.rot90(rgb, k)
        out = np.empty((out_h, out_w, 3), np.uint8)
        resize_frame_into(np.ascontiguousarray(rgb), out)
        return out
    return convert


def _views(video_pos: int, segment: Segment, spec: ClipSpec, buffer: deque, base: int) -> SegmentViews:
    """The segment's views from the kept frames, as `segments.segment_views` builds them."""
    plan = plan_views(segment, spec)
    wanted = np.unique(plan.clips)
    frames = torch.from_numpy(np.stack([buffer[i - base] for i in wanted]))  # (F, h, w, 3) uint8
    rows = torch.from_numpy(np.searchsorted(wanted, plan.clips))  # (U, T) rows of `frames`
    weights = torch.from_numpy(np.tile(plan.weights, spec.num_crops))
    return SegmentViews(video_pos, plan, gather_views(frames, rows, spec.crop_size, spec.num_crops), weights)


# ---------------------------------------------------------------------------------------------------------------
# the engine's seam


class LiveStream(IterableDataset):
    """`segments.VideoStream` for inputs that include streams: every input in order, in this process
    (files through `segments.segment_views`, streams through `live_items`)."""

    def __init__(self, videos: Sequence, positions: Sequence[int], spec: ClipSpec, options: DecodeOptions,
                 first_segment: dict[int, int]):
        self.videos, self.positions, self.spec, self.options = videos, list(positions), spec, options
        self.first_segment = first_segment
        self._handoff: queue.Queue | None = None  # the stream being read now

    def __iter__(self):
        for pos in self.positions:
            video, first = self.videos[pos], self.first_segment.get(pos, 0)
            if isinstance(video, StreamInput):
                yield from live_items(pos, video, self.spec, self.options, first if not video.is_live else 0,
                                      on_queue=self._watch)
                self._handoff = None
            else:
                yield from segment_views(pos, video, self.spec, self.options, first)

    def _watch(self, handoff: queue.Queue) -> None:
        self._handoff = handoff

    def idle(self) -> bool:
        """Whether the stream being read has nothing more ready: the engine scores what it holds now
        instead of waiting for a full batch (a segment's latency is then one forward pass)."""
        return self._handoff is not None and self._handoff.empty()


def has_streams(videos: Sequence, positions: Sequence[int]) -> bool:
    """Whether any of these inputs is a URL, pipe or device (decoded by `LiveStream`, in this process)."""
    return any(isinstance(videos[pos], StreamInput) for pos in positions)
