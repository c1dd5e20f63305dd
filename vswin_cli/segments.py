"""Decode workers: from a video file to its segments' uint8 views (decode -> plan -> resize -> crop).

The hand-off to the model process (`inference.Engine`) is `SegmentViews` per segment, then one
`VideoDecoded` (or a `VideoFailed`) per video. Where the time goes, and what is done about it:
- Decoding runs in worker processes (a torch DataLoader); the main process only batches and runs the model.
- Each needed frame is decoded once, for all its clips, crops and overlapping segments (frames are
  read in chunks of segments; the previous chunk's frames are reused), and resized in uint8 before
  anything is converted to float (on the device).
- Identical clips (the Kinetics formula puts all 4 clips of a 64-frame segment at the same start) are
  computed once and weighted by how often the formula produced them (`sampling.plan_views`).
- With fewer videos than workers, the workers share each video's chunks, so one long video keeps every
  worker busy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vswin_cli.aggregate import VideoError
from vswin_cli.decode import open_video
from vswin_cli.errors import VswinError
from vswin_cli.frames import Frames
from vswin_cli.inputs import VideoInput
from vswin_cli.protocol import ClipSpec
from vswin_cli.sampling import SegmentPlan, plan_segments, plan_views, segment_lengths
from vswin_cli.transforms import gather_views

MAX_FRAMES_PER_READ = 256  # frames decoded and resized at once per video (also bounded by decode.DECODE_MEMORY_BUDGET)


@dataclass(frozen=True)
class DecodeOptions:
    """What a decode worker needs to know: how to cut a video into segments and how to read it.

    Attributes:
        window_s, stride_s: segment length and step in seconds; None = the clip span
            (clip_len * frame_interval frames at the video's own frame rate), stride = window;
            `math.inf` = the whole video as one segment (the published test protocol: eval).
        backend: the decoder of `decode.open_video` ("auto", "pyav", "decord").
        fast_decode: decode at reduced resolution (faster; pixels differ slightly from the official).
        resize_on_device: send full-size frames; the resize and crops run on the model's device (same
            integer arithmetic, same pixels); on a GPU this takes the costliest CPU step off the workers.
        lower_priority: worker processes run at `decode_nice()` (the model shares their CPU cores).
    """

    window_s: float | None = None
    stride_s: float | None = None
    backend: str = "auto"
    fast_decode: bool = False
    resize_on_device: bool = False
    lower_priority: bool = True


@dataclass(frozen=True)
class SegmentViews:
    """A segment's distinct views, ready for the model.

    Attributes:
        video_pos: position of the video in the input list.
        plan: the segment and its clips.
        frames: uint8 (V, T, S, S, 3) the views' frames, crop-major (view = crop * U + clip); or, when
            `cropped` is False (resize on the device), the U distinct clips at full size (U, T, H, W, 3).
        weights: float32 (V,) the weight of each view.
        cropped: whether `frames` are the final views.
    """

    video_pos: int
    plan: SegmentPlan
    frames: torch.Tensor
    weights: torch.Tensor
    cropped: bool = True

    def pin_memory(self) -> SegmentViews:
        """Called by the DataLoader (pin_memory=True on CUDA) for faster, asynchronous copies."""
        return SegmentViews(self.video_pos, self.plan, self.frames.pin_memory(), self.weights, self.cropped)


@dataclass(frozen=True)
class VideoDecoded:
    """Sent after a video's last segment: what the summary record needs.

    A live stream also sends the (start, end) seconds of the segments it dropped to stay live
    (`skipped`) and of the stream time lost while it reconnected (`gaps`); files have neither.
    """

    video_pos: int
    num_segments: int
    num_frames: int
    fps: float
    duration: float
    skipped: tuple[tuple[float, float], ...] = ()
    gaps: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class VideoFailed:
    """Sent instead of (or after some of) a video's segments when it cannot be read."""

    video_pos: int
    error: VideoError


def segment_views(video_pos: int, video: VideoInput, spec: ClipSpec, options: DecodeOptions,
                  first_segment: int = 0, share: tuple[int, int] = (0, 1)) -> Iterator:
    """Decode one video and yield its `SegmentViews`, then one `VideoDecoded` (or a `VideoFailed`).

    Frames are read in chunks of segments (distinct frames, ascending; frames the previous chunk
    already holds are reused), resized in uint8 so the short side is `spec.resize_short`, and cropped.
    Any failure becomes a `VideoFailed` naming the file, so one bad file never stops a run.

    Args:
        first_segment: skip the segments before this one (already scored: `--resume`, a retry).
        share: (i, n): decode only every n-th chunk of segments from the i-th, so that n decode
            workers share one long video.
    """
    try:
        short_side = spec.resize_short if options.fast_decode else None
        opened = video.path.open() if isinstance(video.path, Frames) else open_video(video.path, options.backend, short_side)
        with opened as reader:
            window_s, stride_s = segment_lengths(options.window_s, options.stride_s, spec.span_frames,
                                                 reader.fps, reader.duration)
            segments = plan_segments(reader.timestamps, window_s, stride_s)
            plans = [plan_views(s, spec) for s in segments[first_segment:]]
            resize_here = not (options.resize_on_device and not options.fast_decode)
            size = spec.resize_short if resize_here else None
            kept_index, kept = np.empty(0, np.int64), None  # the previous chunk's frames (overlapping windows)
            max_frames = min(MAX_FRAMES_PER_READ, reader.max_frames_for(size))  # the decode memory budget
            for number, chunk in enumerate(_chunks(plans, max_frames)):
                if number % share[1] != share[0]:
                    continue
                wanted = np.unique(np.concatenate([p.clips.reshape(-1) for p in chunk]))
                frames = _resized_frames(reader, wanted, size, kept_index, kept)  # (F, h, w, 3) uint8
                kept_index, kept = wanted, frames
                for plan in chunk:
                    rows = torch.from_numpy(np.searchsorted(wanted, plan.clips))  # (U, T) rows of `frames`
                    weights = torch.from_numpy(np.tile(plan.weights, spec.num_crops))
                    if resize_here:
                        yield SegmentViews(video_pos, plan, gather_views(frames, rows, spec.crop_size, spec.num_crops),
                                           weights)
                    else:
                        clips = torch.index_select(frames, 0, rows.reshape(-1)).view(*rows.shape, *frames.shape[1:])
                        yield SegmentViews(video_pos, plan, clips, weights, cropped=False)  # (U, T, H, W, 3)
            yield VideoDecoded(video_pos, len(segments), reader.num_frames, float(reader.fps), float(reader.duration))
    except Exception as err:  # a bad file must never stop the run
        if os.environ.get("VSWIN_DEBUG") == "1" and not isinstance(err, VswinError):
            raise
        message = str(err) if isinstance(err, VswinError) else f"{video.path}: {type(err).__name__}: {err}"
        yield VideoFailed(video_pos, VideoError(video.key, type(err).__name__, message))


def decode_nice() -> int:
    """How much lower the decode workers run than the model when it is on the CPU (`os.nice`).

    The model's threads wait for each other at every layer: a thread that loses its core to a decoder
    holds the others up. Decoders at the lowest priority (19) take the cores when the model's threads
    wait instead (the end-to-end figures per nice level are in docs/benchmarks.md). `VSWIN_DECODE_NICE=0`
    turns it off (when other programs share the machine, decoders at the lowest priority yield to them too).
    """
    try:
        return max(0, min(19, int(os.environ.get("VSWIN_DECODE_NICE", "19"))))
    except ValueError:
        return 19


def _lower_priority() -> None:
    try:
        os.nice(decode_nice())
    except (AttributeError, OSError):  # not on this platform, or not allowed: run at the same priority
        pass


def _resized_frames(reader, wanted: np.ndarray, size: int | None, kept_index: np.ndarray,
                    kept: torch.Tensor | None) -> torch.Tensor:
    """Frames `wanted` (ascending) resized so the short side is `size` (None: as decoded); frames in
    `kept` are reused.

    Returns:
        uint8 (len(wanted), h, w, 3).
    """
    reuse = np.isin(wanted, kept_index)
    if kept is None or not reuse.any():
        return _decode_resized(reader, wanted, size)
    out = torch.empty((len(wanted), *kept.shape[1:]), dtype=torch.uint8)
    out[torch.from_numpy(reuse)] = kept[torch.from_numpy(np.searchsorted(kept_index, wanted[reuse]))]
    if not reuse.all():
        out[torch.from_numpy(~reuse)] = _decode_resized(reader, wanted[~reuse], size)
    return out


def _decode_resized(reader, indices: np.ndarray, size: int | None) -> torch.Tensor:
    """Frames `indices`, each resized (uint8, before any float conversion) as soon as it is decoded, so
    at most one full-size frame is held at a time. Returns uint8 (F, h, w, 3)."""
    return torch.from_numpy(reader.read(indices, resize_short=size))


def _chunks(plans: list[SegmentPlan], max_frames: int) -> Iterator[list[SegmentPlan]]:
    """Consecutive segments grouped so each group needs at most about `max_frames` distinct frames."""
    chunk: list[SegmentPlan] = []
    needed = 0
    for plan in plans:
        size = len(np.unique(plan.clips))
        if chunk and needed + size > max_frames:
            yield chunk
            chunk, needed = [], 0
        chunk.append(plan)
        needed += size
    if chunk:
        yield chunk


class VideoStream(IterableDataset):
    """Every video's items. Each worker process takes every `num_workers`-th video; with fewer videos
    than workers, the workers share each video's segments instead (one long video keeps all busy)."""

    def __init__(self, videos: Sequence[VideoInput], positions: Sequence[int], spec: ClipSpec, options: DecodeOptions,
                 first_segment: dict[int, int]):
        self.videos, self.positions, self.spec, self.options = videos, list(positions), spec, options
        self.first_segment = first_segment

    def __iter__(self):
        worker = get_worker_info()
        index, count = (worker.id, worker.num_workers) if worker else (0, 1)
        if worker is not None:
            torch.set_num_threads(1)  # many decoders side by side; do not oversubscribe the cores
            if self.options.lower_priority:
                _lower_priority()
        shared = len(self.positions) < count
        for n, pos in enumerate(self.positions):
            if shared or n % count == index:
                yield from segment_views(pos, self.videos[pos], self.spec, self.options,
                                         self.first_segment.get(pos, 0), (index, count) if shared else (0, 1))


