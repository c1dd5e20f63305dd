"""Batched, multi-view, sliding-window inference over many videos.

Each video is cut into time segments (`--window`/`--stride` seconds); each segment gets the test-time
views of the official Video Swin protocol (SwinTransformer/Video-Swin-Transformer, Apache-2.0; see
`../shared/spec/pipeline.md`): Kinetics-style clips spread over the segment (or one uniform clip, SSv2)
times 1 centre or 3 crops. Views are scored with a softmax each and averaged (`aggregate.py`).

Where the time goes, and what is done about it:
- Decoding runs in worker processes (a torch DataLoader over videos); the main process only batches
  views across segments and videos and runs the model.
- Each needed frame is decoded once, for all its clips, crops and overlapping segments (frames are
  read in chunks of segments; the previous chunk's frames are reused), and resized in uint8 before
  anything is converted to float (on the device).
- Identical clips (the Kinetics formula puts all 4 clips of a 64-frame segment at the same start) are
  computed once and weighted by how often the formula produced them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vswin_cli.aggregate import (
    SegmentResult,
    VideoError,
    VideoResult,
    VideoSummary,
    average_views,
    merge_segments,
    summarize_video,
    top_k,
)
from vswin_cli.decode import open_video
from vswin_cli.errors import VswinError
from vswin_cli.inputs import VideoInput
from vswin_cli.options import autocast
from vswin_cli.protocol import ClipSpec
from vswin_cli.sampling import SegmentPlan, plan_segments, plan_views, segment_lengths
from vswin_cli.transforms import crop_views, normalize_views, resize_short_side

MAX_FRAMES_PER_READ = 256  # frames decoded and resized at once per video (bounds worker memory)


@dataclass(frozen=True)
class TagOptions:
    """How to run: segmenting, batching, device.

    Attributes:
        window_s, stride_s: segment length and step in seconds; None = the clip span
            (clip_len * frame_interval frames at the video's own frame rate), stride = window.
        batch_size: views per forward pass.
        workers: decoding processes (0 decodes in the main process).
        device: torch device string ("cpu", "cuda", "cuda:1", ...).
        precision: "fp32", "fp16" or "bf16" (autocast; fp16 on CUDA only).
        compile: run the model through `torch.compile` (slow first batch, faster after).
        top_k, threshold: tags kept per segment and per video.
        merge: also emit events joining consecutive segments with the same top label.
        features: add each segment's pooled embedding (weighted mean over its views).
        fast_decode: decode at reduced resolution (faster; pixels differ slightly from the official).
        backend: video decoding backend for `open_video`.
        verbose: let the decoders' own log lines through (FFmpeg's, decord's).
        resize_on_device: decode workers send full-size frames and the resize and crops run on the
            device (same integer arithmetic, same pixels); on a GPU this takes the costliest CPU step
            off the decode workers.
    """

    window_s: float | None = None
    stride_s: float | None = None
    batch_size: int = 8
    workers: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False
    top_k: int = 5
    threshold: float = 0.0
    merge: bool = False
    features: bool = False
    fast_decode: bool = False
    backend: str = "auto"
    resize_on_device: bool = False
    verbose: bool = False


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
    """Sent after a video's last segment: what the summary record needs."""

    video_pos: int
    num_segments: int
    num_frames: int
    fps: float
    duration: float


@dataclass(frozen=True)
class VideoFailed:
    """Sent instead of (or after some of) a video's segments when it cannot be read."""

    video_pos: int
    error: VideoError


def segment_views(video_pos: int, video: VideoInput, spec: ClipSpec, options: TagOptions) -> Iterator:
    """Decode one video and yield its `SegmentViews`, then one `VideoDecoded` (or a `VideoFailed`).

    Frames are read in chunks of segments (distinct frames, ascending; frames the previous chunk
    already holds are reused), resized in uint8 so the short side is `spec.crop_size`, and cropped.
    Any failure becomes a `VideoFailed` naming the file, so one bad file never stops a run.
    """
    try:
        short_side = spec.resize_short if options.fast_decode else None
        with open_video(video.path, backend=options.backend, short_side=short_side) as reader:
            window_s, stride_s = segment_lengths(options.window_s, options.stride_s, spec.span_frames,
                                                 reader.fps, reader.duration)
            segments = plan_segments(reader.timestamps, window_s, stride_s)
            plans = [plan_views(s, spec) for s in segments]
            resize_here = not (options.resize_on_device and not options.fast_decode)
            size = spec.resize_short if resize_here else None
            kept_index, kept = np.empty(0, np.int64), None  # the previous chunk's frames (overlapping windows)
            for chunk in _chunks(plans, MAX_FRAMES_PER_READ):
                wanted = np.unique(np.concatenate([p.clips.reshape(-1) for p in chunk]))
                frames = _resized_frames(reader, wanted, size, kept_index, kept)  # (F, h, w, 3) uint8
                kept_index, kept = wanted, frames
                for plan in chunk:
                    rows = torch.from_numpy(np.searchsorted(wanted, plan.clips))  # (U, T) rows of `frames`
                    clips = frames[rows]  # (U, T, h, w, 3)
                    weights = torch.from_numpy(np.tile(plan.weights, spec.num_crops))
                    if resize_here:
                        yield SegmentViews(video_pos, plan, crop_views(clips, spec.crop_size, spec.num_crops), weights)
                    else:
                        yield SegmentViews(video_pos, plan, clips.contiguous(), weights, cropped=False)
            yield VideoDecoded(video_pos, len(plans), reader.num_frames, float(reader.fps), float(reader.duration))
    except Exception as err:  # a bad file must never stop the run
        if os.environ.get("VSWIN_DEBUG") == "1" and not isinstance(err, VswinError):
            raise
        message = str(err) if isinstance(err, VswinError) else f"{video.path}: {type(err).__name__}: {err}"
        yield VideoFailed(video_pos, VideoError(video.key, type(err).__name__, message))


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
    frames = torch.from_numpy(reader.read(indices))  # (F, H, W, 3) uint8
    if size is not None and min(frames.shape[1:3]) != size:  # --fast-decode already decodes at that size
        frames = resize_short_side(frames, size)  # (F, h, w, 3) uint8, resized before any float conversion
    return frames


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


class _VideoStream(IterableDataset):
    """Every video's items; each worker process takes every `num_workers`-th video."""

    def __init__(self, videos: Sequence[VideoInput], spec: ClipSpec, options: TagOptions):
        self.videos, self.spec, self.options = list(videos), spec, options

    def __iter__(self):
        worker = get_worker_info()
        start, step = (worker.id, worker.num_workers) if worker else (0, 1)
        if worker is not None:
            torch.set_num_threads(1)  # many decoders side by side; do not oversubscribe the cores
        for pos in range(start, len(self.videos), step):
            yield from segment_views(pos, self.videos[pos], self.spec, self.options)


@dataclass
class VideoScores:
    """One video's scores, the engine's hand-off to `tag` (top-k records) and `eval` (metrics).

    Attributes:
        probs: segment index -> float32 (K,) class probabilities (softmax per view, weighted mean).
        features: segment index -> float32 (C,) pooled embedding (with `TagOptions.features`).
        plans: segment index -> its `SegmentPlan` (frames and times).
        decoded: the video's frame count, fps and duration, once it is fully read.
        failed: why the video could not be tagged, or None.
    """

    probs: dict[int, torch.Tensor] = field(default_factory=dict)
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    plans: dict[int, SegmentPlan] = field(default_factory=dict)
    decoded: VideoDecoded | None = None
    failed: VideoError | None = None


class Tagger:
    """Runs a model over videos and yields one `VideoResult` per video, in input order.

    Args:
        model: a `VideoSwin` (any module mapping (N, 3, T, H, W) to logits, with
            `forward_features` and `head` when features are asked for).
        labels: class names, one per model output.
        model_name: written into every record.
        spec: the views per segment.
        options: see `TagOptions`.
    """

    def __init__(self, model: torch.nn.Module, labels: Sequence[str], model_name: str, spec: ClipSpec,
                 options: TagOptions):
        self.device = torch.device(options.device)
        self.model = model.eval().to(self.device)
        self.labels, self.model_name, self.spec, self.options = list(labels), model_name, spec, options
        self._forward = self._forward_with_features if options.features else self.model
        if options.compile:
            self._forward = torch.compile(self._forward)
        self.num_views_computed = 0  # views run through the network (identical views count once)
        self.on_segments: Callable[[int], None] | None = None  # progress: called with segments scored

    def run(self, videos: Sequence[VideoInput]) -> Iterator[VideoResult]:
        """Tag `videos`: one `VideoResult` (top-k records) per video, in input order."""
        for video, scores in self.scores(videos):
            yield self._result(video.key, scores)

    def scores(self, videos: Sequence[VideoInput]) -> Iterator[tuple[VideoInput, VideoScores]]:
        """Score `videos`: `(video, VideoScores)` in input order (a video waits for the ones before it)."""
        stream = _VideoStream(videos, self.spec, self.options)
        workers = self.options.workers
        loader = DataLoader(
            stream, batch_size=None, num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None, persistent_workers=False,
        )
        states = {pos: VideoScores() for pos in range(len(videos))}
        pending: list[SegmentViews] = []
        next_pos = 0
        for item in loader:
            if isinstance(item, SegmentViews):
                pending.append(item)
                if sum(len(p.weights) for p in pending) >= self.options.batch_size:
                    self._score(pending, states)
                    pending = []
            elif isinstance(item, VideoDecoded):
                states[item.video_pos].decoded = item
            else:
                states[item.video_pos].failed = item.error
            # A finished video waits for the ones before it; one whose last segments still sit in
            # `pending` finishes when the batch fills (or at the end), so batches stay full.
            while next_pos < len(videos) and self._finished(states[next_pos]):
                yield videos[next_pos], states.pop(next_pos)
                next_pos += 1
        if pending:
            self._score(pending, states)
        while next_pos < len(videos):
            yield videos[next_pos], states.pop(next_pos)
            next_pos += 1

    @staticmethod
    def _finished(state: VideoScores) -> bool:
        if state.failed is not None:
            return True
        return state.decoded is not None and len(state.probs) >= state.decoded.num_segments

    @torch.inference_mode()
    def _score(self, pending: list[SegmentViews], states: dict[int, VideoScores]) -> None:
        """Run the model over the pending views in batches and store each segment's probabilities."""
        frames = torch.cat([self._views_on_device(p) for p in pending])  # (N, T, S, S, 3) uint8
        logits, features = [], []
        for start in range(0, len(frames), self.options.batch_size):
            x = normalize_views(frames[start:start + self.options.batch_size])
            with autocast(self.device, self.options.precision):
                out = self._forward(x)
            if self.options.features:
                logits.append(out[0].float())
                features.append(out[1].float())
            else:
                logits.append(out.float())
        self.num_views_computed += len(frames)
        if self.on_segments is not None:
            self.on_segments(len(pending))
        logits = torch.cat(logits).cpu()
        features = torch.cat(features).cpu() if features else None
        row = 0
        for p in pending:
            rows = slice(row, row + len(p.weights))
            row += len(p.weights)
            state = states.get(p.video_pos)
            if state is None or state.failed is not None:
                continue
            state.plans[p.plan.segment.index] = p.plan
            state.probs[p.plan.segment.index] = average_views(logits[rows], p.weights)
            if features is not None:
                w = p.weights[:, None]
                state.features[p.plan.segment.index] = (features[rows] * w).sum(0) / w.sum()

    def _views_on_device(self, item: SegmentViews) -> torch.Tensor:
        """A segment's views on the device: copied (from pinned memory), resized and cropped if not yet."""
        frames = item.frames.to(self.device, non_blocking=True)
        if item.cropped:
            return frames
        num_clips, clip_len = frames.shape[:2]
        resized = resize_short_side(frames.flatten(0, 1), self.spec.resize_short)  # (U*T, h, w, 3) uint8
        return crop_views(resized.view(num_clips, clip_len, *resized.shape[1:]), self.spec.crop_size, self.spec.num_crops)

    def _forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K), pooled embedding (B, C)) from one backbone pass (the head is one Linear)."""
        pooled = self.model.forward_features(x)
        return self.model.head(pooled), pooled

    def _result(self, key: str, state: VideoScores) -> VideoResult:
        if state.failed is not None:
            return VideoResult(video=key, error=state.failed)
        if state.decoded is None:  # cannot happen unless a worker died; say so rather than drop the video
            return VideoResult(video=key, error=VideoError(key, "InternalError", f"{key}: no result came back"))
        opts, order = self.options, sorted(state.probs)
        spans = {i: state.plans[i].segment for i in order}
        segments = tuple(
            SegmentResult(
                video=key, segment=i, start=round(spans[i].t_start, 3), end=round(spans[i].t_end, 3),
                start_frame=spans[i].start_frame, end_frame=spans[i].end_frame,
                top=top_k(state.probs[i], self.labels, opts.top_k, opts.threshold), views=self.spec.num_views,
                model=self.model_name,
                features=tuple(round(v, 6) for v in state.features[i].tolist()) if opts.features else None,
            )
            for i in order
        )
        frames_per_segment = [spans[i].num_frames for i in order]
        video_probs = summarize_video(torch.stack([state.probs[i] for i in order]), frames_per_segment)
        info = state.decoded
        summary = VideoSummary(
            video=key, num_segments=len(segments), duration=round(info.duration, 3), num_frames=info.num_frames,
            fps=round(info.fps, 3), top=top_k(video_probs, self.labels, opts.top_k, opts.threshold),
            views=self.spec.num_views, model=self.model_name,
        )
        events = merge_segments(segments) if opts.merge else ()
        return VideoResult(video=key, segments=segments, summary=summary, events=events)


