"""Which frames to feed the network: the official test-time samplers and sliding-window segments.

Pure functions on frame counts and timestamps (no I/O). The two samplers reproduce `SampleFrames`
in test mode from SwinTransformer/Video-Swin-Transformer @ db018fb (mmaction 0.15.0,
`mmaction/datasets/pipelines/loading.py`, Apache-2.0); formulas and examples in
`../shared/spec/pipeline.md` sections 2 and 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vswin_cli.protocol import ClipSpec, get_protocol


def kinetics_test_indices(num_frames: int, clip_len: int = 32, frame_interval: int = 2,
                          num_clips: int = 4) -> np.ndarray:
    """Kinetics-style test sampling: `num_clips` evenly spaced clips of `clip_len` frames.

    Clip k starts at floor(k*avg + avg/2) with avg = (N - clip_len*frame_interval + 1) / num_clips, or
    at 0 for every clip when the video is shorter than one clip's span; indices past the end wrap
    (mod N).

    Args:
        num_frames: N, frames in the video (or segment), at least 1.
        clip_len: frames per clip (L).
        frame_interval: step between sampled frames (s).
        num_clips: clips per video (K).

    Returns:
        int64 (num_clips, clip_len) frame indices in 0..N-1.
    """
    _check_positive(num_frames=num_frames, clip_len=clip_len, frame_interval=frame_interval, num_clips=num_clips)
    span = clip_len * frame_interval
    if num_frames >= span:
        avg = (num_frames - span + 1) / num_clips
        # numpy float64 arithmetic then truncation, as the official code does (values are >= 0)
        starts = (np.arange(num_clips) * avg + avg / 2.0).astype(np.int64)
    else:
        starts = np.zeros(num_clips, dtype=np.int64)
    offsets = np.arange(clip_len, dtype=np.int64) * frame_interval
    indices = starts[:, None] + offsets[None, :]  # (K, L)
    return indices % num_frames


def uniform_test_indices(num_frames: int, clip_len: int = 32) -> np.ndarray:
    """Something-Something v2 test sampling: one clip of `clip_len` frames spread over the video.

    seg = (N - 1) / L; frame i is (round(seg*i) + round(seg*(i+1))) // 2 with numpy's
    round-half-to-even. Short videos repeat frames; nothing wraps.

    Args:
        num_frames: N, at least 1.
        clip_len: frames in the clip (L).

    Returns:
        int64 (1, clip_len) frame indices in 0..N-1, non-decreasing.
    """
    _check_positive(num_frames=num_frames, clip_len=clip_len)
    seg = (num_frames - 1) / clip_len
    bounds = np.round(seg * np.arange(clip_len + 1)).astype(np.int64)  # np.round: half to even
    return ((bounds[:-1] + bounds[1:]) // 2)[None, :]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Segment:
    """A stretch of a video sampled as if it were its own video.

    Attributes:
        index: position in the plan, 0-based.
        start_frame: first frame (inclusive).
        end_frame: one past the last frame (exclusive).
        t_start: presentation time of `start_frame` in seconds (the file's clock).
        t_end: time at which the segment ends: the start of `end_frame`, or the end of the video.
    """

    index: int
    start_frame: int
    end_frame: int
    t_start: float
    t_end: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    def to_video(self, indices: np.ndarray) -> np.ndarray:
        """Map indices sampled within the segment (0..num_frames-1) to indices in the whole video."""
        return np.asarray(indices) + self.start_frame


def frame_step(timestamps: np.ndarray, fps: float = 0.0) -> float:
    """How long one frame lasts: the median step between timestamps; for a single frame 1/fps (0 if unknown)."""
    if len(timestamps) > 1:
        return float(np.median(np.diff(timestamps)))
    return 1.0 / fps if fps else 0.0


def video_end_time(timestamps: np.ndarray) -> float:
    """End of the last frame: its timestamp plus the median frame duration (0 for one frame)."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    return float(timestamps[-1]) + frame_step(timestamps)


def plan_segments(timestamps, window_s: float, stride_s: float, end_time: float | None = None) -> list[Segment]:
    """Sliding windows in seconds over a video, from its frame timestamps.

    Window k covers the frames whose timestamps lie in [t0 + k*stride_s, t0 + k*stride_s + window_s),
    t0 being the first frame's time (so non-zero starts and variable frame rates are right). The last
    window is moved back to end with the video, so that every window lasts `window_s`; a window that
    adds no frame to the previous one is dropped. With `stride_s > window_s` frames between windows
    are skipped on purpose. A video shorter than `window_s` is one segment.

    Args:
        timestamps: float (N,) presentation time of each frame in seconds, ascending.
        window_s: window length in seconds (> 0).
        stride_s: distance between window starts in seconds (> 0).
        end_time: end of the video in seconds; default: last timestamp plus the median frame step.

    Returns:
        list of `Segment`, in time order (covering every frame when stride_s <= window_s).
    """
    if window_s <= 0 or stride_s <= 0:
        raise ValueError(f"window and stride must be positive, got window={window_s} stride={stride_s}")
    ts = _check_timestamps(timestamps)
    end = video_end_time(ts) if end_time is None else float(end_time)
    t0 = float(ts[0])
    starts_s = [t0]
    while starts_s[-1] + window_s < end - 1e-9:  # this window does not reach the end: add the next one
        starts_s.append(min(t0 + len(starts_s) * stride_s, end - window_s))
    ranges = []
    for start_s in starts_s:
        first = min(int(np.searchsorted(ts, start_s - 1e-9, side="left")), len(ts) - 1)
        stop = int(np.searchsorted(ts, start_s + window_s - 1e-9, side="left"))
        ranges.append((first, max(stop, first + 1)))  # a window shorter than a frame still holds one
    return _segments(ts, ranges, end)


def plan_segments_by_frames(timestamps, window_frames: int, stride_frames: int,
                            end_time: float | None = None) -> list[Segment]:
    """Sliding windows counted in frames: window k is frames [k*stride, k*stride + window).

    Same rules as `plan_segments`: the last window is moved back to end with the video, a window that
    adds no frame is dropped, and a video shorter than the window is one segment.

    Args:
        timestamps: float (N,) frame times in seconds (used for `t_start`/`t_end`).
        window_frames: frames per window (>= 1).
        stride_frames: frames between window starts (>= 1).
        end_time: end of the video in seconds; default as in `plan_segments`.

    Returns:
        list of `Segment`.
    """
    _check_positive(window_frames=window_frames, stride_frames=stride_frames)
    ts = _check_timestamps(timestamps)
    end = video_end_time(ts) if end_time is None else float(end_time)
    num_frames = len(ts)
    starts = [0]
    while starts[-1] + window_frames < num_frames:
        starts.append(min(len(starts) * stride_frames, num_frames - window_frames))
    ranges = [(s, min(s + window_frames, num_frames)) for s in starts]
    return _segments(ts, ranges, end)


def _check_timestamps(timestamps) -> np.ndarray:
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if ts.size == 0:
        raise ValueError("a video with no frames has no segments")
    if np.any(np.diff(ts) < 0):
        raise ValueError("timestamps must be in ascending order")
    return ts


def _segments(ts: np.ndarray, ranges: list[tuple[int, int]], end: float) -> list[Segment]:
    segments: list[Segment] = []
    for first, stop in ranges:
        if segments and stop <= segments[-1].end_frame:
            continue  # adds no frame the previous segment does not have
        if segments and first == segments[-1].start_frame:
            segments.pop()  # a stride shorter than a frame: keep the longer of two windows starting together
        t_end = float(ts[stop]) if stop < len(ts) else end
        segments.append(Segment(len(segments), first, stop, float(ts[first]), t_end))
    return segments


def clip_indices(num_frames: int, protocol: str | ClipSpec) -> np.ndarray:
    """Sampled frame indices of a video (or a segment) of `num_frames` frames, by the protocol's sampler.

    Returns:
        int64 (num_clips, clip_len).
    """
    spec = get_protocol(protocol)
    if spec.sampling == "kinetics":
        return kinetics_test_indices(num_frames, spec.clip_len, spec.frame_interval, spec.num_clips)
    return uniform_test_indices(num_frames, spec.clip_len)  # "uniform": ClipSpec admits no other


def whole_video(timestamps) -> list[Segment]:
    """The whole video as one segment (the published test protocol: `vswin eval`, `sample_test_views`)."""
    ts = _check_timestamps(timestamps)
    return [Segment(0, 0, len(ts), float(ts[0]), video_end_time(ts))]


def segment_lengths(window_s: float | None, stride_s: float | None, span_frames: int, fps: float,
                    duration: float) -> tuple[float, float]:
    """Window and stride in seconds for one video: the given ones, else the clip span at the video's fps.

    Args:
        window_s, stride_s: `--window`/`--stride` (None: the default).
        span_frames: frames one clip spans (`ClipSpec.span_frames`): the default window.
        fps, duration: the video's.
    """
    window = window_s
    if window is None:
        window = span_frames / fps if fps > 0 else max(duration, 1.0)
    return window, stride_s if stride_s is not None else window


@dataclass(frozen=True)
class SegmentPlan:
    """One segment and its distinct clips.

    Attributes:
        segment: the segment (from `plan_segments` or `whole_video`).
        clips: int64 (U, clip_len) absolute frame indices of the U distinct clips.
        weights: float32 (U,) how many of the protocol's clips each distinct clip stands for.
    """

    segment: Segment
    clips: np.ndarray
    weights: np.ndarray


def plan_views(segment: Segment, spec: ClipSpec) -> SegmentPlan:
    """Frame indices of a segment's clips, identical clips merged into one with a weight.

    Indices are sampled relative to the segment and wrap inside it, as the official sampler wraps
    inside a video, then shifted to absolute frame numbers. (The Kinetics formula puts all 4 clips of
    a 64-frame segment at the same start: those are computed once and weighted 4.)
    """
    clips = np.asarray(clip_indices(segment.num_frames, spec), dtype=np.int64)  # (num_clips, clip_len)
    unique, counts = np.unique(clips, axis=0, return_counts=True)
    return SegmentPlan(segment, segment.to_video(unique), counts.astype(np.float32))
