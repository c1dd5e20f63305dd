"""The Ray engine: `vswin tag --engine ray` runs the local engine's stages as a Ray Data pipeline.

    rows (one per video: position, first segment, the pickled `VideoInput`)
      -> decode tasks (`segments.segment_views`, `num_cpus` each): `SegmentViews`, then `VideoDecoded`/`VideoFailed`
      -> model actor pool (`inference.Network`, `num_gpus=1` per actor on GPU nodes): `SegmentScores`
      -> the driver (`scoring.Scoring.stream`): records in input order, written by `outputs.run_tag`

Rows between the stages are `{"pos": int64, "item": bytes}`, the item a pickled hand-off dataclass, so
each stage's output is exactly the local engine's. Ray balances the load (a free decode slot takes the
next video; actors take blocks as they come) and backpressures the decoders when the object store
fills, so memory stays bounded whatever the video lengths. The driver holds only probabilities of the
videos finished out of order, (K,) floats per segment.

Faults: a decode task is one video; Ray retries it once if its worker dies (SIGKILL, out of memory, a
lost node), and a retried task's items are deduplicated here by segment index, so nothing is written
twice. A video whose decode task dies twice gets an error record (`DecoderCrash`), as on the local
engine. Model actors are restarted by Ray Data and their blocks retried.

Ray is joined at `RayOptions.address` (or `RAY_ADDRESS`); without one a local instance is started for
the run, bound to 127.0.0.1 only, with an object store of at most 2 GB and 20% of RAM, and shut down
after it.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from vswin_cli.aggregate import VideoError
from vswin_cli.checks import RAY_INSTALL_HINT, check_engine
from vswin_cli.errors import ConfigError
from vswin_cli.inference import Network, RunOptions, views_on_device
from vswin_cli.inputs import VideoInput
from vswin_cli.protocol import ClipSpec
from vswin_cli.sampling import SegmentPlan
from vswin_cli.scoring import RecordOptions, Scoring, VideoScores, emit_ready, segment_scores
from vswin_cli.segments import DecodeOptions, SegmentViews, VideoDecoded, VideoFailed, segment_views

OBJECT_STORE_MAX = 2 << 30  # bytes; a local instance's object store is at most this and 20% of RAM
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray run goes.

    Attributes:
        address: the cluster to join ("auto", "HOST:PORT", "ray://..."); None: `RAY_ADDRESS`, else a
            local instance started for the run on loopback.
        verbose: let Ray's and Ray Data's own log lines through (`vswin tag -v`).
        decode_cpus: CPUs each decode task reserves.
        model_actors: the most model actors (None: one per GPU in the cluster; on a CPU-only cluster one
            per node). The pool starts with one and grows while blocks wait.
        model_threads: PyTorch threads of a CPU model actor (None: the node's cores, as the local engine
            gives its model; the decode tasks beside it run at a lower priority).
    """

    address: str | None = None
    verbose: bool = False
    decode_cpus: float = 1.0
    model_actors: int | None = None
    model_threads: int | None = None


@dataclass(frozen=True)
class SegmentScores:
    """The model stage's hand-off to the driver: one segment's scores.

    Attributes:
        video_pos: position of the video in the input list.
        plan: the segment and its clips.
        probs: float32 (K,) class probabilities (softmax per view, weighted mean).
        features: float32 (C,) pooled embedding (with `RecordOptions.features`), else None.
    """

    video_pos: int
    plan: SegmentPlan
    probs: torch.Tensor
    features: torch.Tensor | None = None


def import_ray(local: bool):
    """`ray` with Ray Data, or a ConfigError with the install hint. `local`: Ray runs on this machine's
    loopback only (read by Ray when it is imported)."""
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default (~/.ray/auth_token), without its warning
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed here ({err})", hint=RAY_INSTALL_HINT) from None
    return ray


def object_store_bytes() -> int:
    """The object store of a local instance: 20% of RAM, at most `OBJECT_STORE_MAX` (Ray's default is 30%)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return OBJECT_STORE_MAX
    return max(100 << 20, min(OBJECT_STORE_MAX, ram // 5))


@contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Ray for one run: joins `options.address` / `RAY_ADDRESS`, else starts a local instance on loopback
    only; shuts down what it started. An instance already initialised in this process is used as it is."""
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    # A cluster on this machine's loopback is joined over loopback (Ray would swap 127.0.0.1 for the
    # machine's network address, where such a cluster does not listen).
    ray = import_ray(local=address is None or address.rsplit(":", 1)[0].strip("[]") in ("127.0.0.1", "localhost", "::1"))
    if ray.is_initialized():
        yield
        return
    handlers = _signal_handlers()  # `ray.init` puts in its own SIGTERM handler: exit at once, nothing published
    level = logging.INFO if options.verbose else logging.ERROR
    logging.getLogger("ray").setLevel(level)
    logging.getLogger("ray.data").setLevel(level)
    common = dict(logging_level=level, log_to_driver=options.verbose, configure_logging=options.verbose)
    try:
        if address is None:
            # "local": a new instance even where `ray start` left an address behind for `ray.init()` to join
            ray.init(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=object_store_bytes(), include_dashboard=False,
                     _node_ip_address=LOOPBACK, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ConfigError(f"cannot start or join {where}: {err}",
                          hint="check --ray-address / RAY_ADDRESS (`ray status` on the head node)") from None
    finally:
        _restore_signal_handlers(handlers)
    try:
        yield
    finally:
        ray.shutdown()


def _signal_handlers() -> dict:
    """This process's SIGINT and SIGTERM handlers (none outside the main thread, where they cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


class _Interrupts:
    """Ctrl-C and SIGTERM during a Ray run: raised as KeyboardInterrupt where they land, and again at the
    next row if they landed in one of Ray's finalizers, which print and drop an exception."""

    def __init__(self):
        self.signal: int | None = None
        self.handlers = _signal_handlers()

    def __enter__(self) -> _Interrupts:
        for sig, previous in self.handlers.items():
            if callable(previous):  # a handler that raises (Python's SIGINT, `vswin tag`'s SIGTERM)
                signal.signal(sig, self._noted(previous))
        return self

    def _noted(self, previous):
        def handler(signum, frame):
            self.signal = signum
            previous(signum, frame)
        return handler

    def check(self) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        _restore_signal_handlers(self.handlers)


class RayEngine(Scoring):
    """Runs a model over videos on Ray and yields what `inference.Engine` yields, in input order.

    Args:
        network: the driver's `Network` for `spec` (it settles the runtime: the actors run the same one).
        labels, model_name, spec: as for `inference.Engine`.
        run, decode, records: see `RunOptions`, `segments.DecodeOptions`, `RecordOptions`.
        ray: see `RayOptions`.
    """

    def __init__(self, network: Network, labels: Sequence[str], model_name: str, spec: ClipSpec, run: RunOptions,
                 decode: DecodeOptions, records: RecordOptions, ray: RayOptions = RayOptions()):
        self.labels, self.model_name, self.spec = list(labels), model_name, spec
        self.network, self.run_options, self.records, self.ray = network, run, records, ray
        # The decode tasks resize and crop even for a GPU: full-size clips through the object store (22 MB
        # per 360p clip against 4.8 MB of views) would cost more than the resize saves (same pixels either way).
        self.decode = replace(decode, resize_on_device=False)
        self.device = run.device

    def _updates(self, videos: Sequence[VideoInput], first: dict[int, int]) -> Iterator[tuple[int, VideoScores, bool]]:
        """`(position, state, finished)` of the earliest unfinished video whenever a row arrived."""
        check_engine("ray", videos)  # (the CLI checked before loading a model; a script may not have)
        states = {pos: VideoScores() for pos in range(len(videos))}
        next_pos = 0
        with ray_session(self.ray), _Interrupts() as interrupts:
            for row in self._rows(videos, first):
                interrupts.check()
                state = states.get(int(row["pos"]))
                if state is not None:
                    _take(state, pickle.loads(row["item"]))
                next_pos = yield from emit_ready(states, next_pos, len(videos))
            interrupts.check()
        for pos in range(next_pos, len(videos)):  # the pipeline ended: whatever is left is final
            state = states.pop(pos)
            if not state.finished():
                state.failed = VideoError(videos[pos].key, "DecoderCrash",
                                          f"{videos[pos].path}: the decoder process died twice while reading it")
            yield pos, state, True

    def _rows(self, videos: Sequence[VideoInput], first: dict[int, int]) -> Iterator[dict]:
        """The pipeline's output rows, as they come (any order)."""
        import ray
        from ray import data

        context = data.DataContext.get_current()
        context.enable_progress_bars = self.ray.verbose
        context.enable_auto_log_stats = False
        context.execution_options.preserve_order = False  # the driver orders; a slow video holds up nothing
        context.max_errored_blocks = -1  # a video whose decode task died twice is reported, not fatal
        rows = [{"pos": pos, "first": first.get(pos, 0), "video": pickle.dumps(video)} for pos, video in enumerate(videos)]
        if not rows:
            return
        spec, run = self.spec, self.run_options
        gpu = run.device.type == "cuda"
        # The actors run exactly the driver's network: its runtime, precision and device kind.
        actor_run = replace(run, runtime=self.network.runtime,
                            device=torch.device("cuda") if gpu else torch.device("cpu"), workers=0)
        model = ray.put(self.network.model)  # once into the object store, not into every actor's arguments
        videos_in = data.from_items(rows, override_num_blocks=len(rows))  # one decode task per video
        with warnings.catch_warnings():
            # Ray 2.60 has no named parameter for a task's retries yet; the keyword still works.
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = videos_in.flat_map(_decode_row, fn_kwargs={"spec": spec, "options": self.decode},
                                         num_cpus=self.ray.decode_cpus, max_retries=1)
        # Ray Data restarts a dead actor and retries its blocks (max_restarts and max_task_retries -1).
        scored = decoded.map_batches(
            _ModelActor, batch_size=max(1, run.batch_views // spec.num_views), batch_format="numpy",
            fn_constructor_kwargs={"model": [model], "spec": spec, "run": actor_run, "features": self.records.features,
                                   "threads": self.ray.model_threads},
            concurrency=(1, self._max_actors(gpu)), num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1,
        )
        yield from scored.iter_rows()

    def _max_actors(self, gpu: bool) -> int:
        if self.ray.model_actors is not None:
            return self.ray.model_actors
        import ray

        if gpu:
            return max(1, int(ray.cluster_resources().get("GPU", 1)))
        return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def _take(state: VideoScores, item) -> None:
    """Store one arrived item in its video's state; a segment a retried task sends again is dropped."""
    if isinstance(item, SegmentScores):
        index = item.plan.segment.index
        if state.failed is not None or index < state.emitted or index in state.probs:
            return
        state.plans[index], state.probs[index] = item.plan, item.probs
        if item.features is not None:
            state.features[index] = item.features
    elif isinstance(item, VideoDecoded):
        state.decoded = item
    elif isinstance(item, VideoFailed) and state.failed is None:
        state.failed = item.error


def _decode_row(row: dict, spec: ClipSpec, options: DecodeOptions) -> Iterator[dict]:
    """The decode stage (a Ray task per video): the rows of one video's `segments.segment_views`."""
    torch.set_num_threads(1)  # many decoders side by side; do not oversubscribe the cores
    if options.lower_priority:
        from vswin_cli.segments import _lower_priority

        _lower_priority()
    pos = int(row["pos"])
    for item in segment_views(pos, pickle.loads(row["video"]), spec, options, int(row["first"])):
        yield {"pos": pos, "item": pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)}


class _ModelActor:
    """The model stage (a Ray actor holding one `Network`): `SegmentViews` rows become `SegmentScores`
    rows; the other rows pass through."""

    def __init__(self, model: list, spec: ClipSpec, run: RunOptions, features: bool, threads: int | None):
        import ray

        try:  # a worker process that decoded before (at a lower priority) may host this actor
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except (AttributeError, OSError):
            pass
        if run.device.type == "cpu":
            torch.set_num_threads(threads or os.cpu_count() or 1)
        self.spec, self.run = spec, run
        model = ray.get(model[0])  # (in a list: Ray passes it as it is, fetched here)
        self.network = Network(model, (spec.clip_len, spec.crop_size, spec.crop_size), run, features)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        views = [item for item in items if isinstance(item, SegmentViews)]
        scored = {}
        if views:
            frames = torch.cat([views_on_device(v, self.run.device, self.spec) for v in views])
            logits, features = self.network.in_batches(frames, self.run.batch_views)
            row = 0
            for v in views:
                rows = slice(row, row + len(v.weights))
                row += len(v.weights)
                probs, embedding = segment_scores(logits[rows], v.weights, features[rows] if features is not None else None)
                scored[id(v)] = SegmentScores(v.video_pos, v.plan, probs, embedding)
        out = [pickle.dumps(scored.get(id(item), item), protocol=pickle.HIGHEST_PROTOCOL) for item in items]
        return {"pos": batch["pos"], "item": np.array(out, dtype=object)}
