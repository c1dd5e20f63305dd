"""The engine from videos to per-segment probabilities: batches views, runs the model, streams results.

`Tagger` takes the uint8 views that decode workers produce (`vswin_cli.segments`), batches them across
segments and videos, normalises them on the device, runs the model, and averages each segment's views
(softmax each, weighted mean: `models.average_views`). `Tagger.stream` hands on each segment as soon
as it and the ones before it are scored, then the video's summary, in input order; `Tagger.scores`
gives `eval` the probabilities. Used by `vswin tag`, `vswin eval` (one whole-video segment) and `train`'s
validation. The views follow the official Video Swin protocol (SwinTransformer/Video-Swin-Transformer,
Apache-2.0; `../shared/spec/pipeline.md`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from vswin_cli.aggregate import (
    SegmentResult,
    VideoError,
    VideoResult,
    RunningMean,
    VideoSummary,
    average_views,
    merge_segments,
    top_k,
)
from vswin_cli.inputs import VideoInput
from vswin_cli.live import LiveStream, has_streams
from vswin_cli.options import autocast
from vswin_cli.protocol import ClipSpec
from vswin_cli.sampling import SegmentPlan
from vswin_cli.segments import SegmentViews, VideoDecoded, VideoStream
from vswin_cli.transforms import crop_views, normalize_views, resize_short_side

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
        runtime: the CPU runtime of the network (`vswin_cli.runtime.load_runtime`: "torch", "auto",
            "onnxruntime", "openvino"); CUDA and `features` always run torch.
        runtime_cache: where exported files for the other runtimes are kept.
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
    runtime: str = "torch"
    runtime_cache: str | None = None


@dataclass
class VideoScores:
    """One video's scores, the engine's hand-off to `tag` (records) and `eval` (metrics).

    Attributes:
        probs: segment index -> float32 (K,) class probabilities (softmax per view, weighted mean).
        features: segment index -> float32 (C,) pooled embedding (with `TagOptions.features`).
        plans: segment index -> its `SegmentPlan` (frames and times).
        decoded: the video's frame count, fps and duration, once it is fully read.
        failed: why the video could not be tagged, or None.
        emitted: segments already handed on in order (`Tagger.run` streams them, then drops their data).
    """

    probs: dict[int, torch.Tensor] = field(default_factory=dict)
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    plans: dict[int, SegmentPlan] = field(default_factory=dict)
    decoded: VideoDecoded | None = None
    failed: VideoError | None = None
    emitted: int = 0

    def restart_from(self, first: int) -> int:
        """The segment to decode from after an interruption: the end of the scored prefix. Segments
        scored out of order after it (workers sharing a video) are dropped and decoded again."""
        start = max(first, self.emitted)
        while start in self.probs:
            start += 1
        for index in [i for i in self.probs if i > start]:
            del self.probs[index], self.plans[index]
            self.features.pop(index, None)
        self.decoded = None  # sent again by the new loader
        return start

    def finished(self) -> bool:
        if self.failed is not None:
            return True
        return self.decoded is not None and self.emitted + len(self.probs) >= self.decoded.num_segments


@dataclass(frozen=True)
class ScoredSegment:
    """One segment as `Tagger.run` streams it: its record and its probabilities (kept for `--resume`)."""

    result: SegmentResult
    probs: torch.Tensor  # float32 (K,)


@dataclass
class ResumedVideo:
    """A video's segments from an interrupted run, to be continued after them (`--resume`).

    Attributes:
        segments: the first segments' records, in order (0 .. len-1).
        probs: float32 (K,) probabilities of each of them (the summary needs them).
    """

    segments: list[SegmentResult]
    probs: list[torch.Tensor]


class _WorkerDied(Exception):
    """A DataLoader worker process ended without finishing (killed by a signal, or crashed)."""


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
        # On the CPU, bf16 runs a bf16 model (the oneDNN bf16 kernels); autocast is for CUDA.
        self.cpu_dtype = torch.bfloat16 if self.device.type == "cpu" and options.precision == "bf16" else None
        self.model = model.eval().to(self.device, dtype=self.cpu_dtype)
        self.labels, self.model_name, self.spec, self.options = list(labels), model_name, spec, options
        self._forward = self._forward_with_features if options.features else self.model
        if options.runtime != "torch" and not (options.features or options.compile) and self.device.type == "cpu":
            from vswin_cli.runtime import load_runtime

            self._forward = load_runtime(self.model, options.runtime, (spec.clip_len, spec.crop_size, spec.crop_size),
                                         options.precision, options.runtime_cache)
        # Views go to the network in the model's dtype on PyTorch; the exported runtimes take fp32.
        self.input_dtype = self.cpu_dtype if getattr(self._forward, "runtime", "torch") == "torch" else None
        if options.compile:
            self._forward = torch.compile(self._forward)
        self.num_views_computed = 0  # views run through the network (identical views count once)

    def run(self, videos: Sequence[VideoInput]) -> Iterator[VideoResult]:
        """Tag `videos`: one `VideoResult` per video (segments, summary, events, or the error), in input order."""
        for item in self.stream(videos):
            if isinstance(item, VideoResult):
                yield item

    def stream(self, videos: Sequence[VideoInput], resumed: dict[int, ResumedVideo] | None = None
               ) -> Iterator[ScoredSegment | VideoResult]:
        """Tag `videos`, streaming: each segment's `ScoredSegment` as soon as it and the ones before it
        are scored, then the video's `VideoResult` (all its segments, summary, events), in input order.

        Args:
            videos: the inputs, in output order.
            resumed: position in `videos` -> segments an interrupted run already wrote; those are
                streamed again first (from memory), and the video is decoded from the next segment on.
        """
        resumed = resumed or {}
        first = {pos: len(r.segments) for pos, r in resumed.items()}
        done: list[SegmentResult] = []
        summary = RunningMean()
        current = -1
        for pos, state, finished in self._updates(videos, first):
            if pos != current:  # a new video: start its summary, replay what a resumed run kept
                current, done, summary = pos, [], RunningMean()
                for seg, probs in zip(*(resumed[pos].segments, resumed[pos].probs)) if pos in resumed else ():
                    summary.add(probs, seg.end_frame - seg.start_frame)
                    done.append(seg)
                    yield ScoredSegment(seg, probs)
                state.emitted = len(done)
            while state.failed is None and state.emitted in state.probs:
                i = state.emitted
                seg = self._segment_result(videos[pos].key, i, state)
                probs = state.probs.pop(i)
                state.features.pop(i, None)
                summary.add(probs, state.plans.pop(i).segment.num_frames)
                done.append(seg)
                state.emitted += 1
                yield ScoredSegment(seg, probs)
            if finished:
                yield self._result(videos[pos].key, state, done, summary)

    def scores(self, videos: Sequence[VideoInput]) -> Iterator[tuple[VideoInput, VideoScores]]:
        """Score `videos`: `(video, VideoScores)` with every segment's probabilities, in input order."""
        for pos, state, finished in self._updates(videos, {}):
            if finished:
                yield videos[pos], state

    def _updates(self, videos: Sequence[VideoInput], first: dict[int, int]) -> Iterator[tuple[int, VideoScores, bool]]:
        """`(position, state, finished)` of the earliest unfinished video whenever something arrived.

        A decode worker that dies (out of memory, a crash inside a decoder) costs only the video it was
        decoding: that video gets an error record, a new loader starts, the others go on where they were.
        """
        states = {pos: VideoScores() for pos in range(len(videos))}
        deaths: dict[int, int] = {}
        next_pos = 0
        while next_pos < len(videos):
            todo = [pos for pos in range(next_pos, len(videos)) if not states[pos].finished()]
            starts = {pos: states[pos].restart_from(first.get(pos, 0)) for pos in todo}
            try:
                for _ in self._score_stream(videos, todo, starts, states):
                    while next_pos < len(videos):
                        finished = states[next_pos].finished()
                        yield next_pos, states[next_pos], finished
                        if not finished:
                            break
                        del states[next_pos]
                        next_pos += 1
            except _WorkerDied as died:
                self._blame(str(died), videos, states, todo, deaths)
                continue
            for pos in range(next_pos, len(videos)):  # the loader ended: whatever is left is final
                if not states[pos].finished() and states[pos].failed is None:
                    states[pos].failed = VideoError(videos[pos].key, "InternalError",
                                                    f"{videos[pos].key}: no result came back from the decoder")
            while next_pos < len(videos):
                yield next_pos, states[next_pos], True
                del states[next_pos]
                next_pos += 1

    def _score_stream(self, videos, todo: list[int], starts: dict[int, int], states: dict[int, VideoScores]) -> Iterator[None]:
        """Decode `todo` (from segment `starts[pos]` on) and score; yields after each item that arrived."""
        workers = self.options.workers
        stream = VideoStream(videos, todo, self.spec, self.options, starts)
        if has_streams(videos, todo):  # URLs, pipes, cameras: read front to back in this process (vswin_cli.live)
            workers, stream = 0, LiveStream(videos, todo, self.spec, self.options, starts)
        loader = DataLoader(
            stream, batch_size=None, num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None, persistent_workers=False,
        )
        pending: list[SegmentViews] = []
        previous = signal.getsignal(signal.SIGCHLD) if hasattr(signal, "SIGCHLD") else None
        iterator = iter(loader)
        if workers and previous is not None:
            # PyTorch's SIGCHLD handler raises at whatever line runs when a worker dies; without it a
            # death surfaces from `next(iterator)` (checked every few seconds), where it is handled.
            signal.signal(signal.SIGCHLD, previous)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except RuntimeError as err:
                if "DataLoader worker" not in str(err):
                    raise
                if pending:
                    self._score(pending, states)
                raise _WorkerDied(str(err)) from None
            if isinstance(item, SegmentViews):
                pending.append(item)
                # The first segment goes through at once (the model would idle while a whole batch is
                # decoded, and a short video would get no decode/model overlap); then full batches.
                if (not self.num_views_computed or sum(len(p.weights) for p in pending) >= self.options.batch_size
                        or getattr(stream, "idle", bool)()):  # a live stream with nothing else ready: no waiting
                    self._score(pending, states)
                    pending = []
            elif item.video_pos in states:  # (a video can finish before a worker sharing it reports)
                state = states[item.video_pos]
                if isinstance(item, VideoDecoded):
                    state.decoded = item
                elif state.failed is None:
                    state.failed = item.error
            yield
        if pending:
            self._score(pending, states)
        yield

    def _blame(self, reason: str, videos, states: dict[int, VideoScores], todo: list[int], deaths: dict[int, int]) -> None:
        """A decode worker died: fail the video it was decoding, so the run can go on without it.

        The videos being decoded at that moment are the suspects (one per worker). A lone suspect is
        the cause; of several, each gets one more try and fails on its second death as a suspect.
        """
        workers = max(self.options.workers, 1)
        reading = [pos for pos in todo if pos in states and states[pos].decoded is None and states[pos].failed is None]
        if len(todo) >= workers:  # whole videos dealt to workers: each worker's first unread one
            suspects = {reading_pos for w in range(workers)
                        for reading_pos in [next((pos for pos in todo[w::workers] if pos in reading), None)]
                        if reading_pos is not None}
        else:  # the workers shared every video
            suspects = set(reading)
        for pos in suspects:
            deaths[pos] = deaths.get(pos, 0) + 1
            if len(suspects) == 1 or deaths[pos] >= 2:
                states[pos].failed = VideoError(videos[pos].key, "DecoderCrash",
                    f"{videos[pos].path}: the decoder process was killed (out of memory?) while reading it ({reason})")


    def forward_views(self, frames: torch.Tensor):
        """The network's output for uint8 views (B, T, S, S, 3) on the device: normalised, in the dtype
        and autocast of this run, through the runtime it chose (logits, or (logits, features))."""
        x = normalize_views(frames)
        if self.input_dtype is not None:
            x = x.to(self.input_dtype)
        with autocast(self.device, self.options.precision if self.cpu_dtype is None else "fp32"):
            return self._forward(x)

    @torch.inference_mode()
    def _score(self, pending: list[SegmentViews], states: dict[int, VideoScores]) -> None:
        """Run the model over the pending views in batches and store each segment's probabilities."""
        frames = torch.cat([self._views_on_device(p) for p in pending])  # (N, T, S, S, 3) uint8
        logits, features = [], []
        for start in range(0, len(frames), self.options.batch_size):
            out = self.forward_views(frames[start:start + self.options.batch_size])
            if self.options.features:
                logits.append(out[0].float())
                features.append(out[1].float())
            else:
                logits.append(out.float())
        self.num_views_computed += len(frames)
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
            state.probs[p.plan.segment.index] = average_views(logits[rows], "prob", p.weights)
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

    def _segment_result(self, key: str, index: int, state: VideoScores) -> SegmentResult:
        """The record of one scored segment (top-k labels, times, frames, optional embedding)."""
        span, opts = state.plans[index].segment, self.options
        features = state.features.get(index)
        return SegmentResult(
            video=key, segment=index, start=round(span.t_start, 3), end=round(span.t_end, 3),
            start_frame=span.start_frame, end_frame=span.end_frame,
            top=top_k(state.probs[index], self.labels, opts.top_k, opts.threshold), views=self.spec.num_views,
            model=self.model_name,
            features=tuple(round(v, 6) for v in features.tolist()) if features is not None else None,
        )

    def _result(self, key: str, state: VideoScores, segments: list[SegmentResult], summary: RunningMean) -> VideoResult:
        """The whole video: its segments, the frame-weighted summary and the merged events; or its error."""
        if state.failed is not None:
            return VideoResult(video=key, error=state.failed)
        opts, info = self.options, state.decoded
        video_summary = VideoSummary(
            video=key, num_segments=len(segments), duration=round(info.duration, 3), num_frames=info.num_frames,
            fps=round(info.fps, 3), top=top_k(summary.mean(), self.labels, opts.top_k, opts.threshold),
            views=self.spec.num_views, model=self.model_name,
        )
        events = merge_segments(segments) if opts.merge else ()
        return VideoResult(video=key, segments=tuple(segments), summary=video_summary, events=events)
