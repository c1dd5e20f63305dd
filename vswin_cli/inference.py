"""The engine from videos to per-segment probabilities: batches views, runs the model, streams results.

`Engine` takes the uint8 views that decode workers produce (`vswin_cli.segments`), batches them across
segments and videos, normalises them on the device, runs the model, and averages each segment's views
(softmax each, weighted mean: `models.average_views`). `Engine.stream` hands on each segment as soon
as it and the ones before it are scored, then the video's summary, in input order; `Engine.scores`
gives `eval` the probabilities (both from `vswin_cli.scoring`, which the Ray engine shares). Used by
`vswin tag`, `vswin eval` (one whole-video segment) and `train`'s validation. The views follow the official Video Swin protocol (SwinTransformer/Video-Swin-Transformer,
Apache-2.0; `../shared/spec/pipeline.md`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from vswin_cli.aggregate import VideoError
from vswin_cli.inputs import VideoInput
from vswin_cli.live import LiveStream, has_streams
from vswin_cli.precision import autocast
from vswin_cli.protocol import ClipSpec
from vswin_cli.scoring import RecordOptions, Scoring, VideoScores, emit_ready, segment_scores
from vswin_cli.segments import DecodeOptions, SegmentViews, VideoDecoded, VideoStream
from vswin_cli.transforms import crop_views, normalize_views, resize_short_side


@dataclass(frozen=True)
class RunOptions:
    """How the network runs in one tag or eval run.

    Attributes:
        device: where the model runs (a `torch.device`, resolved once by the caller).
        precision: "fp32", "fp16" or "bf16", already resolved for `device` (`precision.resolve_precision`).
        runtime: the CPU runtime of the network (`vswin_cli.runtime.load_runtime`: "torch", "auto",
            "onnxruntime", "openvino"); CUDA, `--features` and `--compile` always run torch.
        runtime_cache: where exported files for the other runtimes are kept.
        compile: run the model through `torch.compile` (slow first batch, faster after).
        batch_views: views per forward pass (across segments and videos).
        workers: decoding processes (0 decodes in the main process).
    """

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    runtime: str = "torch"
    runtime_cache: str | None = None
    compile: bool = False
    batch_views: int = 8
    workers: int = 0


class Network:
    """The model as a run calls it: on its device, in its dtype, through the runtime it chose.

    Args:
        model: a `VideoSwin` (any module mapping (N, 3, T, H, W) to logits, with `forward_features` and
            `head` when `features` is asked for); moved to the device (and to bf16 for a CPU bf16 run).
        clip_shape: (T, S, S) of the views it will see (the exported runtimes are built for one shape).
        run: device, precision, runtime, compile.
        features: also return each view's pooled embedding.

    Attributes:
        runtime: the runtime that actually runs it ("torch", "openvino", ...): what `auto` chose.
    """

    def __init__(self, model: torch.nn.Module, clip_shape: tuple[int, int, int], run: RunOptions, features: bool = False):
        self.device, self.precision, self.features = run.device, run.precision, features
        # On the CPU, bf16 runs a bf16 model (the oneDNN bf16 kernels); autocast is for CUDA.
        self.cpu_dtype = torch.bfloat16 if self.device.type == "cpu" and run.precision == "bf16" else None
        self.model = model.eval().to(self.device, dtype=self.cpu_dtype)
        self._forward = self._forward_with_features if features else self.model
        if run.runtime != "torch" and not (features or run.compile) and self.device.type == "cpu":
            from vswin_cli.runtime import load_runtime

            self._forward = load_runtime(self.model, run.runtime, clip_shape, run.precision, run.runtime_cache)
        self.runtime = getattr(self._forward, "runtime", "torch")
        # Views go to the network in the model's dtype on PyTorch; the exported runtimes take fp32.
        self.input_dtype = self.cpu_dtype if self.runtime == "torch" else None
        if run.compile:
            self._forward = torch.compile(self._forward)

    def __call__(self, frames: torch.Tensor):
        """The output for uint8 views (B, T, S, S, 3) on the device: normalised, in this run's dtype and
        autocast: logits (B, K), or (logits, pooled features (B, C)) with `features`."""
        x = normalize_views(frames)
        if self.input_dtype is not None:
            x = x.to(self.input_dtype)
        with autocast(self.device, self.precision if self.cpu_dtype is None else "fp32"):
            return self._forward(x)

    def in_batches(self, frames: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Views uint8 (N, T, S, S, 3) on the device through the network `batch` at a time: float32 logits
        (N, K) on the CPU, and float32 pooled features (N, C) with `features` (else None).

        On the CPU every view has a forward of its own: fp32 matrix products round differently with the
        number of rows, so a view's scores would depend on what it was batched with (which decode worker
        was first), and one view at a time is as fast there (docs/benchmarks.md). Outputs are then the
        same bytes whatever the timing or `--batch-views`."""
        if self.device.type == "cpu":
            batch = 1
        logits, features = [], []
        for start in range(0, len(frames), batch):
            out = self(frames[start:start + batch])
            if self.features:
                logits.append(out[0].float())
                features.append(out[1].float())
            else:
                logits.append(out.float())
        return torch.cat(logits).cpu(), torch.cat(features).cpu() if features else None

    def _forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, K), pooled embedding (B, C)) from one backbone pass (the head is one Linear)."""
        pooled = self.model.forward_features(x)
        return self.model.head(pooled), pooled


class _WorkerDied(Exception):
    """A DataLoader worker process ended without finishing (killed by a signal, or crashed)."""


class Engine(Scoring):
    """Runs a model over videos and yields one `VideoResult` per video, in input order.

    The local engine: decode workers (`segments.VideoStream` in a DataLoader) feed this process, which
    batches the views, runs the `Network` and hands on each segment as soon as it is scored.

    Args:
        model: a `VideoSwin` (see `Network`); ignored when `network` is given.
        labels: class names, one per model output.
        model_name: written into every record.
        spec: the views per segment.
        run: see `RunOptions`.
        decode: see `segments.DecodeOptions`.
        records: see `RecordOptions`.
        network: an already built `Network` for `spec`'s clip shape (`vswin_cli.api` keeps them between runs).
    """

    def __init__(self, model: torch.nn.Module | None, labels: Sequence[str], model_name: str, spec: ClipSpec,
                 run: RunOptions = RunOptions(), decode: DecodeOptions = DecodeOptions(),
                 records: RecordOptions = RecordOptions(), network: Network | None = None):
        self.labels, self.model_name, self.spec = list(labels), model_name, spec
        self.run_options, self.decode, self.records = run, decode, records
        self.network = network or Network(model, (spec.clip_len, spec.crop_size, spec.crop_size), run, records.features)
        self.device = run.device
        self.num_views_computed = 0  # views run through the network (identical views count once)

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
                    next_pos = yield from emit_ready(states, next_pos, len(videos))
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
        workers = self.run_options.workers
        stream = VideoStream(videos, todo, self.spec, self.decode, starts)
        if has_streams(videos, todo):  # URLs, pipes, cameras: read front to back in this process (vswin_cli.live)
            workers, stream = 0, LiveStream(videos, todo, self.spec, self.decode, starts)
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
                if (not self.num_views_computed or sum(len(p.weights) for p in pending) >= self.run_options.batch_views
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
        workers = max(self.run_options.workers, 1)
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


    @torch.inference_mode()
    def _score(self, pending: list[SegmentViews], states: dict[int, VideoScores]) -> None:
        """Run the model over the pending views in batches and store each segment's probabilities."""
        frames = torch.cat([views_on_device(p, self.device, self.spec) for p in pending])  # (N, T, S, S, 3) uint8
        logits, features = self.network.in_batches(frames, self.run_options.batch_views)
        self.num_views_computed += len(frames)
        row = 0
        for p in pending:
            rows = slice(row, row + len(p.weights))
            row += len(p.weights)
            state = states.get(p.video_pos)
            if state is None or state.failed is not None:
                continue
            index = p.plan.segment.index
            state.plans[index] = p.plan
            state.probs[index], embedding = segment_scores(logits[rows], p.weights,
                                                           features[rows] if features is not None else None)
            if embedding is not None:
                state.features[index] = embedding


def views_on_device(item: SegmentViews, device: torch.device, spec: ClipSpec) -> torch.Tensor:
    """A segment's views on `device`: uint8 (V, T, S, S, 3), copied (from pinned memory), resized and
    cropped there if the decoder left that to the device (`SegmentViews.cropped` False)."""
    frames = item.frames.to(device, non_blocking=True)
    if item.cropped:
        return frames
    num_clips, clip_len = frames.shape[:2]
    resized = resize_short_side(frames.flatten(0, 1), spec.resize_short)  # (U*T, h, w, 3) uint8
    return crop_views(resized.view(num_clips, clip_len, *resized.shape[1:]), spec.crop_size, spec.num_crops)
