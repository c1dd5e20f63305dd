"""The Python front door: `vswin_cli.load(model)` gives a `Tagger`; `Tagger.tag(inputs)` one result per video.

After openai/whisper's `load_model(name)` + `model.transcribe(audio)`: `vswin tag` and `vswin eval` call
exactly these, so a script gets the command line's records, errors and speed::

    import vswin_cli

    tagger = vswin_cli.load("swin-t-k400")                  # zoo name or checkpoint file; fetched once
    for result in tagger.tag("clips/", window=4.0, views="fast"):
        print(result.video, result.top[0].label if result.top else result.error)
        rows = result.records()                             # exactly the JSON Lines dicts `vswin tag` writes

Options are checked once, when a `TagSettings` is made (before PyTorch loads, so the CLI answers usage
errors at once); devices are `torch.device`s from `load` on. Heavy modules load inside the functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from vswin_cli import __version__
from vswin_cli.errors import UsageError
from vswin_cli.frames import Frames
from vswin_cli.protocol import ClipSpec, check_crops, parse_views

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vswin_cli.engines.ray import RayEngine
    from vswin_cli.inference import Engine
    from vswin_cli.inputs import VideoInput
    from vswin_cli.records import VideoResult

BACKENDS = ("auto", "pyav", "decord")
ENGINES = ("local", "ray")


def default_workers() -> int:
    """Decoding processes when none are asked for: the CPU cores, at most 8."""
    return min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class TagSettings:
    """How one tag run cuts, views, scores and records videos; each value checked once, here.

    The names are those of `vswin tag`'s options (`--batch-views` is `batch_views`).

    Attributes:
        window, stride: segment length and step in seconds (None: the clip span; stride = window);
            `math.inf` scores each whole video as one segment (the published protocol).
        views: "fast" (1 clip x 1 centre crop), "paper" (the model's published protocol) or "CLIPSxCROPS".
        clips, crops: override the clips and crops of `views`.
        clip_len, frame_interval, crop_size: override the model's clip shape.
        top_k, threshold, merge, features: what the records hold (`inference.RecordOptions`).
        batch_views: views per forward pass; workers: decoding processes (None: `default_workers()`).
        backend, fast_decode: how frames are decoded (`segments.DecodeOptions`).
        compile: run the network through `torch.compile`.
    """

    window: float | None = None
    stride: float | None = None
    views: str | None = "fast"
    clips: int | None = None
    crops: int | None = None
    clip_len: int | None = None
    frame_interval: int | None = None
    crop_size: int | None = None
    top_k: int = 5
    threshold: float = 0.0
    merge: bool = False
    features: bool = False
    batch_views: int = 8
    workers: int | None = None
    backend: str = "auto"
    fast_decode: bool = False
    compile: bool = False

    def __post_init__(self):
        view_clips, view_crops = parse_views(self.views)
        object.__setattr__(self, "_views", (self.clips or view_clips, self.crops or view_crops))
        if self.crops is not None:
            check_crops(self.crops)
        for name in ("window", "stride"):
            seconds = getattr(self, name)
            if seconds is not None and not seconds > 0:
                raise UsageError(f"--{name} must be a positive number of seconds, got {seconds}")
        for name, low in (("clips", 1), ("clip_len", 1), ("frame_interval", 1), ("crop_size", 8), ("top_k", 0),
                          ("batch_views", 1), ("workers", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise UsageError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.backend not in BACKENDS:
            raise UsageError(f"--backend {self.backend!r} is not one of {', '.join(BACKENDS)}")

    def spec(self, base: ClipSpec) -> ClipSpec:
        """The views per segment over a model's protocol `base`."""
        clips, crops = self._views
        return ClipSpec.for_views(base, clips, crops, clip_len=self.clip_len, frame_interval=self.frame_interval,
                                  crop_size=self.crop_size)


@dataclass(frozen=True)
class Classification:
    """One video scored whole with the published protocol (`Tagger.classify`, `vswin eval`).

    Attributes:
        video: the input's key (its path as given, or relative to a single folder).
        probs: float32 (K,) class probabilities (softmax per view, then the mean), or None on error.
        error: why the video could not be scored, or None.
    """

    video: str
    probs: np.ndarray | None
    error: str | None = None


def load(model: str | os.PathLike | None = None, *, weights: str | os.PathLike | None = None, arch: str | None = None,
         labels: str | os.PathLike | None = None, device: str | torch.device = "auto", precision: str = "auto",
         runtime: str | None = None, offline: bool | None = None, progress: bool = False) -> Tagger:
    """A model ready to tag: the same resolution as `vswin tag --model/--weights/--arch/--labels/--device/
    --precision/--runtime`.

    Args:
        model: a zoo name (`vswin models`; fetched into the cache on first use) or a checkpoint file.
        weights: a local checkpoint instead of `model` (vswin, official mmaction or torchvision file).
        arch: with `weights` that do not say their architecture: "swin-t", "swin-s", "swin-b" or a config.json.
        labels: a class-name file or label-set name (default: the model's).
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:N", or a `torch.device` (taken as it is:
            one the caller already resolved, as `vswin eval` does when it joins a torchrun group).
        precision: "auto" (bf16 on CUDA and on CPUs with native bf16, else fp32), "fp32", "bf16", "fp16".
        runtime: the CPU runtime (None: `VSWIN_RUNTIME`, else "auto", as `vswin tag`): "auto" (the fastest
            installed, measured once), "torch", "onnxruntime",
            "openvino".
        offline: never download (default: `VSWIN_OFFLINE`).
        progress: show download progress on stderr.

    On the CPU it also tunes the C allocator for this process (`runtime.tune_allocator`: freed activation
    buffers are kept between forwards, as `vswin tag` does).

    Raises:
        ConfigError / UsageError: an unknown name, a bad file, a device this machine lacks.
    """
    import torch

    from vswin_cli.distributed import resolve_device
    from vswin_cli.precision import resolve_precision
    from vswin_cli.resolve import resolve_model
    from vswin_cli.runtime import check_runtime, tune_allocator

    run_device = device if isinstance(device, torch.device) else resolve_device(device)
    run_precision = resolve_precision(precision, run_device, cpu_native_bf16=True)
    runtime = runtime or os.environ.get("VSWIN_RUNTIME") or "auto"
    check_runtime(runtime, run_device, run_precision)
    if run_device.type == "cpu":
        tune_allocator()  # before the model is built: a script runs in the same memory regime as `vswin tag`
    resolved = resolve_model(model=None if model is None else str(model), weights=weights, arch=arch, labels=labels,
                             offline=offline, progress=progress)
    return Tagger(resolved.model, resolved.labels, name=resolved.name, protocol=resolved.protocol, device=run_device,
                  precision=run_precision, runtime=runtime, sha256=resolved.sha256, arch=resolved.arch)


class Tagger:
    """A loaded model with the device, precision and runtime it runs on; `load` makes one.

    Attributes:
        model: the `VideoSwin` network; labels: its class names; name: the zoo name or weights path.
        protocol: the model's published test views (`ClipSpec`); device, precision, runtime: as resolved.
        sha256, arch: the weights file's hash and the architecture (written in each output's `run` record).

    A model already in memory (a training run's, say) gets one with `Tagger(model, labels, name=..., device=...)`.
    """

    def __init__(self, model: torch.nn.Module, labels: list[str], *, name: str = "model",
                 protocol: ClipSpec | None = None, device: torch.device | None = None, precision: str = "fp32",
                 runtime: str = "torch", sha256: str = "", arch: str = "", runtime_cache: str | None = None):
        import torch

        from vswin_cli.zoo import KINETICS_TEST

        self.model, self.labels, self.name = model, list(labels), name
        self.protocol = protocol or KINETICS_TEST
        self.device = device if device is not None else torch.device("cpu")
        self.precision, self.runtime, self.sha256, self.arch = precision, runtime, sha256, arch
        self.runtime_cache = runtime_cache  # where exported runtimes are kept (default: the cache's `exported`)
        self._networks: dict[tuple, Any] = {}  # one per clip shape and output kind: exported runtimes are built per shape

    def tag(self, inputs, *, glob: str | None = None, live_policy: str = "keep", live_queue: int = 4,
            reconnect: bool = False, engine: str = "local", ray_address: str | None = None,
            **options) -> Iterator[VideoResult]:
        """Tag videos: one `VideoResult` per video, in input order, each as soon as it is done.

        Args:
            inputs: a file, a folder (searched recursively), a `Frames` (frames in memory), or a list of them.
            glob: only files in folders whose relative path matches (as `vswin tag --glob`).
            live_policy, live_queue, reconnect: how live streams are read (see `find_inputs`).
            engine, ray_address: "local", or "ray" on the cluster at `ray_address` (see `engine`).
            **options: the fields of `TagSettings` (window, stride, views, top_k, threshold, merge,
                features, batch_views, workers, ...).

        Returns:
            An iterator of `records.VideoResult`: `.segments` (each with `.start`, `.end`, `.top`),
            `.summary`, `.top` (the video's tags), `.error`, and `.records()` (the JSON Lines dicts).
        """
        settings = TagSettings(**options)
        videos = find_inputs(inputs, glob, live_policy=live_policy, live_queue=live_queue, reconnect=reconnect)
        yield from self.engine(settings, kind=engine, ray_address=ray_address).run(videos)

    def segments(self, inputs, *, glob: str | None = None, live_policy: str = "keep", live_queue: int = 4,
                 reconnect: bool = False, **options):
        """Like `tag`, but each segment as soon as it is scored (`inference.ScoredSegment`: `.result` is its
        record, `.probs` float32 (K,)), then each video's `VideoResult`; for scripts that react at once."""
        settings = TagSettings(**options)
        videos = find_inputs(inputs, glob, live_policy=live_policy, live_queue=live_queue, reconnect=reconnect)
        yield from self.engine(settings).stream(videos)

    def classify(self, inputs, *, views: str | None = "paper", clips: int | None = None, crops: int | None = None,
                 clip_len: int | None = None, frame_interval: int | None = None, crop_size: int | None = None,
                 batch_views: int = 12, workers: int | None = None, backend: str = "auto",
                 spec: ClipSpec | None = None, engine: str = "local", ray_address: str | None = None,
                 verbose: bool = False) -> Iterator[Classification]:
        """Score each video whole with the published protocol (what `vswin eval` measures), in input order.

        Args:
            inputs: as for `tag`.
            views, clips, crops, clip_len, frame_interval, crop_size: as for `tag` (default: the paper's views).
            spec: the views as a `ClipSpec` (instead of the view options; e.g. a training run's validation).
            engine, ray_address, verbose: "local", or "ray" on the cluster at `ray_address` (see `engine`).

        Returns:
            `Classification(video, probs float32 (K,) | None, error | None)` per video.
        """
        settings = TagSettings(window=math.inf, views=views, clips=clips, crops=crops, clip_len=clip_len,
                               frame_interval=frame_interval, crop_size=crop_size, top_k=0,
                               batch_views=batch_views, workers=workers, backend=backend)
        runner = self.engine(settings, spec=spec, kind=engine, ray_address=ray_address, verbose=verbose)
        for video, scores in runner.scores(find_inputs(inputs, None)):
            if scores.failed is not None:
                yield Classification(video.key, None, scores.failed.message.removeprefix(f"{video.key}: "))
            elif not scores.probs:
                yield Classification(video.key, None, "no frames")
            else:
                yield Classification(video.key, scores.probs[0].numpy(), None)

    def engine(self, settings: TagSettings, spec: ClipSpec | None = None, *, kind: str = "local",
               ray_address: str | None = None, verbose: bool = False) -> Engine | RayEngine:
        """The engine for one run with `settings` (the CLI streams it into an output file).

        Args:
            kind: "local" (this machine: decode processes feed the model here) or "ray" (a Ray Data
                pipeline on the cluster at `ray_address` / `RAY_ADDRESS`, else on a local instance
                started for the run; needs the `vswin[ray]` extra). Both yield the same records.
            verbose: with "ray", let Ray's own log lines through.
        """
        if kind not in ENGINES:
            raise UsageError(f"--engine {kind!r} is not one of {', '.join(ENGINES)}")
        from vswin_cli.inference import Engine, Network, RunOptions
        from vswin_cli.scoring import RecordOptions
        from vswin_cli.segments import DecodeOptions

        spec = spec or settings.spec(self.protocol)
        run = RunOptions(device=self.device, precision=self.precision, runtime=self.runtime,
                         runtime_cache=self.runtime_cache or _runtime_cache(), compile=settings.compile, batch_views=settings.batch_views,
                         workers=default_workers() if settings.workers is None else settings.workers)
        decode = DecodeOptions(window_s=settings.window, stride_s=settings.stride, backend=settings.backend,
                               fast_decode=settings.fast_decode, resize_on_device=self.device.type == "cuda",
                               lower_priority=self.device.type == "cpu")
        records = RecordOptions(top_k=settings.top_k, threshold=settings.threshold, merge=settings.merge,
                                features=settings.features)
        key = (spec.clip_len, spec.crop_size, settings.features, settings.compile)
        if key not in self._networks:
            self._networks[key] = Network(self.model, (spec.clip_len, spec.crop_size, spec.crop_size), run,
                                          settings.features)
        if kind == "ray":
            from vswin_cli.checks import check_engine
            from vswin_cli.engines.ray import RayEngine, RayOptions

            check_engine("ray")
            return RayEngine(self._networks[key], self.labels, self.name, spec, run, decode, records,
                             RayOptions(address=ray_address, verbose=verbose))
        return Engine(None, self.labels, self.name, spec, run, decode, records, network=self._networks[key])

    def run_record(self, settings: TagSettings, engine: Engine | RayEngine) -> dict:
        """What produced an output (its leading `run` record): enough to tell two outputs apart and to
        reproduce one; no clock time or host name, so a repeated or resumed run writes the same bytes."""
        spec = engine.spec
        return {
            "record": "run", "vswin": __version__, "model": self.name, "arch": self.arch, "sha256": self.sha256,
            "num_classes": len(self.labels), "device": self.device.type, "precision": self.precision,
            "runtime": engine.network.runtime, "sampling": spec.sampling, "clip_len": spec.clip_len,
            "frame_interval": spec.frame_interval, "num_clips": spec.num_clips, "num_crops": spec.num_crops,
            "crop_size": spec.crop_size, "window": _seconds(settings.window), "stride": _seconds(settings.stride),
            "backend": settings.backend, "fast_decode": settings.fast_decode,
        }


def find_inputs(inputs, glob: str | None = None, on_skip: Callable[[str, str], None] | None = None, *,
                live_policy: str = "keep", reconnect: bool = False, live_queue: int = 4) -> list:
    """The videos to tag from what `Tagger.tag` takes: paths, folders, URLs and live streams (`rtsp://`, `pipe:0`,
    `/dev/video0`, ...), `Frames`, `VideoInput`s, or a list of them.

    Args:
        live_policy, reconnect, live_queue: how live streams are read (`sources.StreamInput`): keep every
            segment through a queue of `live_queue` segments, or skip segments to stay live; reconnect
            with backoff when a network stream drops.

    Raises:
        ConfigError: nothing given, nothing found, or two inputs that would get the same key.
    """
    from vswin_cli.inputs import VideoInput
    from vswin_cli.sources import StreamInput, find_sources

    items = [inputs] if isinstance(inputs, (str, os.PathLike, Frames, VideoInput, StreamInput)) else list(_iterable(inputs))
    videos: list = []
    paths: list[str] = []

    def flush() -> None:
        if paths:
            videos.extend(find_sources(paths, glob=glob, policy=live_policy, reconnect=reconnect,
                                       queue_segments=live_queue, on_skip=on_skip))
            paths.clear()

    for item in items:
        if isinstance(item, Frames):
            flush()
            videos.append(VideoInput(item, item.name))
        elif isinstance(item, (VideoInput, StreamInput)):
            flush()
            videos.append(item)
        else:
            paths.append(os.fspath(item))
    flush()
    if not videos:
        raise UsageError("no videos given", hint="give video files or folders")
    keys = [v.key for v in videos]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise UsageError(f"two inputs would both be written as {twice!r}", hint="give each input once, or name Frames apart")
    return videos


def _iterable(inputs) -> Iterable:
    if isinstance(inputs, Iterable):
        return inputs
    raise UsageError(f"cannot tag a {type(inputs).__name__}", hint="give paths, folders or vswin_cli.Frames(array, fps)")


def _runtime_cache() -> str:
    from vswin_cli.cache import cache_dir

    return str(cache_dir() / "exported")


def _seconds(value: float | None) -> float | str | None:
    """A window or stride as JSON can hold it (`inf`, the whole video, as the string "video")."""
    return "video" if value is not None and math.isinf(value) else value
