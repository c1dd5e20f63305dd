"""Which engine runs the network on the CPU: ours (PyTorch eager), ONNX Runtime or OpenVINO.

    from vswin_cli.runtime import available_runtimes, load_runtime, tune_allocator
    tune_allocator()                                  # once, at start-up (glibc only; no-op elsewhere)
    precision, warning = cpu_precision("auto")        # --precision on the CPU: bf16 only where native
    run = load_runtime(model, "auto", clip_shape=(32, 224, 224), cache_dir=cache)  # + --runtime
    logits = run(views)                               # float32 (B, 3, T, H, W) -> (B, K)

`load_runtime` returns a callable with the contract of `model(views)` in fp32 inference. ONNX Runtime
and OpenVINO need a file for a fixed input shape: it is exported once (`vswin_cli.export`, verified
against PyTorch) into `cache_dir`, named by a hash of the weights, the shape and the library versions,
and reused on later runs. The file takes one clip and a call runs its clips one after the other: on
the CPU a batch buys no speed (the views already fill the cores) and costs activation memory per view,
and a short batch is not padded (docs/benchmarks.md, "Figures formerly in code comments").

"auto" measures: the first time a model, clip shape and precision meet this CPU it times each installed
runtime (interleaved, CPU seconds of the process, the best of a few forwards) and keeps the fastest;
the choice is remembered in `cache_dir/runtimes.json`, so later runs pay nothing. A fixed order would
be wrong somewhere: the fastest fp32 runtime differs between an AVX2-only CPU and an AVX-512/AMX one
(docs/benchmarks.md, CPU runtimes). In bf16 (CPUs with native bf16 only) the choice is between PyTorch's bf16 model
and OpenVINO with its bf16 inference hint (the same fp32 file; OpenVINO keeps softmax and normalisation
in fp32), where OpenVINO says the CPU can (`BF16` among its optimisation capabilities), as either may
be the faster on a given CPU. ONNX Runtime runs
fp32 only. On CUDA it is always "torch".
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import hashlib
import importlib
import importlib.util
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vswin_cli.errors import ConfigError
from vswin_cli.files import write_text_atomic

RUNTIMES = ("torch", "onnxruntime", "openvino")
# Forwards per runtime when "auto" measures (after one untimed warm-up each); the best is kept.
PROBE_RUNS = 2
# glibc mallopt parameters (malloc.h): keep activation buffers mapped between forwards.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_ALLOCATOR_BYTES = 1 << 30


def available_runtimes() -> list[str]:
    """The runtimes usable here: "torch" always; "onnxruntime" and "openvino" when their packages and
    the export packages (onnx, onnxscript) are installed (`pip install 'vswin[cpu]'`)."""
    found = ["torch"]
    exportable = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))
    for name in ("onnxruntime", "openvino"):
        if exportable and importlib.util.find_spec(name) is not None:
            found.append(name)
    return found


def candidate_runtimes(device: str | torch.device = "cpu", precision: str = "fp32") -> list[str]:
    """The runtimes "auto" chooses among: on the CPU all installed ones in fp32, "torch" and OpenVINO in
    bf16 where OpenVINO runs bf16 on this CPU (`openvino_runs_bf16`); on other devices only "torch"."""
    if torch.device(device).type != "cpu":
        return ["torch"]
    if precision == "fp32":
        return available_runtimes()
    if precision == "bf16" and "openvino" in available_runtimes() and openvino_runs_bf16():
        return ["torch", "openvino"]
    return ["torch"]


def openvino_runs_bf16() -> bool:
    """Whether OpenVINO computes bf16 on this CPU (it lists `BF16` among the CPU plugin's optimisation
    capabilities on AVX512_BF16/AMX x86 CPUs). Asked for bf16 elsewhere it silently stays in fp32."""
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - no OpenVINO, or a plugin that cannot say: not bf16
        return False


def cpu_extra_notice(device: str | torch.device, precision: str, cpu_flags: set[str] | None = None) -> str | None:
    """The one line `vswin tag` prints on a CPU without the `vswin[cpu]` extra: how much faster the extra ran
    the models on CPUs like this one (the figures and their runs: docs/benchmarks.md, "The cpu extra").

    Args:
        device: where the model runs; only "cpu" gets a notice.
        precision: "fp32" or "bf16", as the run resolved it.
        cpu_flags: /proc/cpuinfo flags (default: this machine's).

    Returns:
        the notice, or None: not on the CPU, the extra installed (OpenVINO and ONNX Runtime both usable),
        or no measurement for this kind of CPU and precision.
    """
    if torch.device(device).type != "cpu" or {"onnxruntime", "openvino"} <= set(available_runtimes()):
        return None
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    if precision == "bf16" and "amx_bf16" in flags:
        figure = "up to 1.9-2x faster in bf16 (Swin-T and Swin-B through OpenVINO, on an AMX Xeon)"
    elif precision == "fp32" and "avx512f" in flags:
        figure = "1.2-1.3x faster in fp32 (Swin-T through OpenVINO, on AVX-512 Xeon and EPYC CPUs)"
    elif precision == "fp32" and "avx2" in flags:
        figure = "1.2x faster in fp32 (Swin-T through ONNX Runtime, on an AVX2 Zen 3)"
    else:
        return None
    return (f"note: pip install 'vswin[cpu]' ran the model {figure}; measured in docs/benchmarks.md "
            "(-q hides this note)")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith(("flags", "Features"))), set())
    except OSError:
        return set()


def check_runtime(name: str, device: str | torch.device = "cpu", precision: str = "fp32") -> str:
    """Validate a `--runtime` value against what is installed, the device and the precision.

    Raises:
        ConfigError: an unknown name, a runtime that is not installed, or one that cannot run this
            device/precision (the exported runtimes are CPU and fp32 only).
    """
    if name != "auto" and name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {name!r}", f"use auto or one of {', '.join(RUNTIMES)}")
    if name in ("auto", "torch"):
        return name
    if name not in available_runtimes():
        raise ConfigError(f"runtime {name} is not installed", "pip install 'vswin[cpu]' (onnx, onnxscript, onnxruntime)"
                          if name == "onnxruntime" else "pip install openvino onnx onnxscript")  # fmt: skip
    if torch.device(device).type != "cpu":
        raise ConfigError(f"runtime {name} runs on the CPU only", "use --runtime torch (or auto) with --device cuda")
    if precision == "bf16" and name == "openvino":
        if not openvino_runs_bf16():
            raise ConfigError("OpenVINO does not run bf16 on this CPU (it would silently stay in fp32)",
                              "use --precision fp32 with --runtime openvino")
    elif precision != "fp32":
        raise ConfigError(f"runtime {name} runs fp32 only, not {precision}" if name == "onnxruntime" else
                          f"runtime {name} runs fp32 and bf16 only, not {precision}", "use --precision fp32")
    return name


# The warnings quote measurements (docs/benchmarks.md: torch.compile on the CPU; emulated bf16).
COMPILE_ON_CPU = ("--compile on the CPU: torch.compile takes minutes and ran Swin-T at 0.59x eager speed in our "
                  "measurements (docs/benchmarks.md), and it runs the network on PyTorch, not the fastest runtime; "
                  "drop --compile")

BF16_EMULATED_COST = "about 3x slower than fp32 with AVX-512, 11x with AVX2 only"


def cpu_precision(requested: str = "auto") -> tuple[str, str | None]:
    """The precision to run on this CPU, and a warning to show (or None).

    "auto" is "bf16" only where the CPU computes bf16 natively (`models.kernels.cpu_has_native_bf16()`:
    AVX512_BF16/AMX on x86, bf16 on Arm), else "fp32". An explicit "bf16" (or "fp16") on a CPU without
    native support is kept, with a warning naming the measured cost.

    Args:
        requested: "auto", "fp32", "bf16" or "fp16" (as `--precision`).

    Returns:
        (precision, warning or None).
    """
    from models.kernels import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    if requested == "auto":
        return ("bf16" if native else "fp32"), None
    if requested in ("bf16", "fp16") and not native:
        return requested, (
            f"this CPU has no native bf16/fp16 (no AVX512_BF16/AMX): {requested} is emulated, {BF16_EMULATED_COST}; "
            "use --precision fp32 (or auto)"
        )
    return requested, None


def load_runtime(
    model: torch.nn.Module,
    name: str = "auto",
    clip_shape: tuple[int, int, int] = (32, 224, 224),
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable that runs `model` on the chosen runtime.

    Args:
        model: a `VideoSwin` in eval mode (its device decides: CUDA models always run on "torch").
        name: "auto" (the fastest installed, measured once per CPU, model and shape; see the module
            docstring) or "torch", "onnxruntime", "openvino" (checked by `check_runtime`).
        clip_shape: (T, H, W) of every clip the callable will get (exported runtimes are fixed-shape).
        precision: "fp32" (any runtime), "bf16" (torch: the caller passes a bf16 model and bf16 views, or
            uses autocast; OpenVINO: its bf16 hint on an fp32 export of the model) or "fp16" (torch only).
        cache_dir: where exported files and `runtimes.json` (the measured choices) are kept; needed
            unless the runtime is "torch". E.g. `<vswin cache>/exported`.
        threads: intra-op threads for ONNX Runtime/OpenVINO (default: torch.get_num_threads()).

    Returns:
        `run(views) -> logits`: float32 (B, 3, T, H, W) on the model's device, any B ->
        (B, num_classes) float32 on the same device. `run.runtime` names the runtime used.

    Raises:
        ConfigError: see `check_runtime`; a missing `cache_dir`.
        vswin_cli.export.ExportError: the export failed or did not reproduce PyTorch's logits.
    """
    device = next(model.parameters()).device
    check_runtime(name, device, precision)
    candidates = candidate_runtimes(device, precision) if name == "auto" else [name]
    if candidates == ["torch"]:
        return _named(lambda views: model(views), "torch")
    if cache_dir is None:
        raise ConfigError(f"runtime {name} needs a cache folder for the exported file")
    cache_dir = Path(cache_dir)
    if len(candidates) > 1:
        key = _choice_key(model, clip_shape, threads, precision)
        remembered = _read_choices(cache_dir).get(key)
        if remembered in candidates:
            candidates = [remembered]
    runners = {r: _runner(r, model, clip_shape, cache_dir, threads, precision) for r in candidates}
    if len(runners) == 1:
        return next(iter(runners.values()))
    # As many clips as threads: each runtime uses all of its parallelism (the exported ones a clip per thread).
    probe = torch.randn(threads or torch.get_num_threads(), 3, *clip_shape, dtype=next(model.parameters()).dtype)
    fastest = _fastest(runners, probe)
    _write_choice(cache_dir, key, fastest)
    return runners[fastest]


def _runner(name: str, model: torch.nn.Module, clip_shape, cache_dir: Path, threads: int | None,
            precision: str = "fp32"):
    if name == "torch":
        return _named(lambda views: model(views), "torch")
    path = _exported_file(model, clip_shape, cache_dir)
    threads = threads or torch.get_num_threads()
    infer = (_onnxruntime_session(path, threads) if name == "onnxruntime"
             else _openvino_model(path, threads, "bf16" if precision == "bf16" else "f32"))
    num_classes = model.config.num_classes
    expected = (3, *clip_shape)

    def run(views: torch.Tensor) -> torch.Tensor:
        if tuple(views.shape[1:]) != expected:
            raise ValueError(f"the {name} runtime was built for clips of {expected}, got {tuple(views.shape)}")
        x = views.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(infer(x)).view(len(x), num_classes).to(views.device)

    return _named(run, name)


def _fastest(runners: dict, x: torch.Tensor) -> str:
    """The runtime with the least process CPU time per forward (best of `PROBE_RUNS`, interleaved):
    CPU time moves much less than wall time with other load on a shared machine."""
    best = {name: float("inf") for name in runners}
    with torch.inference_mode():
        for round_ in range(PROBE_RUNS + 1):
            for name, run in runners.items():
                start = time.process_time()
                run(x)
                if round_:  # the first round warms up (allocations, lazy initialisation)
                    best[name] = min(best[name], time.process_time() - start)
    return min(best, key=best.get)


def _choice_key(model: torch.nn.Module, clip_shape, threads: int | None, precision: str = "fp32") -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    config = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    parts = [cpu, str(threads or torch.get_num_threads()), config, repr(tuple(clip_shape)),
             ",".join(available_runtimes()), torch.__version__, precision]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _read_choices(cache_dir: Path) -> dict:
    try:
        return json.loads((cache_dir / "runtimes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_choice(cache_dir: Path, key: str, runtime: str) -> None:
    choices = {**_read_choices(cache_dir), key: runtime}
    write_text_atomic(cache_dir / "runtimes.json", json.dumps(choices, indent=1) + "\n")


def tune_allocator(keep_bytes: int = _ALLOCATOR_BYTES) -> bool:
    """Keep freed activation buffers in the process between forwards (glibc only).

    With glibc's defaults every CPU forward returns its large activation buffers to the kernel (each is
    its own mmap) and faults them back in, page by page, on the next forward. Raising the mmap threshold
    is not enough (glibc caps it at 32 MiB), so this serves large blocks from the heap instead
    (`M_MMAP_MAX = 0`) and keeps up to `keep_bytes` of freed heap (`M_TRIM_THRESHOLD`): no page faults
    from the third forward, the same peak memory (figures in docs/benchmarks.md). Call once at start-up,
    before the model is built.

    Returns:
        True if the settings were applied (Linux with glibc), else False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    keep_bytes = min(int(keep_bytes), 2**31 - 1)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, keep_bytes))


def _named(fn, runtime: str):
    fn.runtime = runtime
    return fn


def _exported_file(model: torch.nn.Module, clip_shape, cache_dir: Path) -> Path:
    """The cached .onnx of these weights and this input shape, exported (and verified) on first use."""
    from vswin_cli import export

    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    versions = [torch.__version__] + [_version_of(m) for m in ("onnx", "onnxscript")]
    digest.update(repr((tuple(clip_shape), 1, versions)).encode())
    path = cache_dir / f"vswin-{digest.hexdigest()[:16]}-1x{'x'.join(map(str, clip_shape))}.onnx"
    if not path.is_file():
        if next(model.parameters()).dtype != torch.float32:  # a bf16 model (CPU bf16): the file is fp32
            model = copy.deepcopy(model).float()
        export.export_onnx(model, path, tuple(clip_shape), 1, verify=importlib.util.find_spec("onnxruntime") is not None)
    return path


def _version_of(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except (ImportError, AttributeError):
        return "-"


def _onnxruntime_session(path: Path, threads: int):
    """`infer(clips) -> logits` (numpy, one clip per call of the file) on `threads` single-threaded calls
    side by side (one session; ONNX Runtime's `run` is thread-safe and releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: constant-folding notes are not for users
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (input_name,) = [i.name for i in session.get_inputs()]
    pool = ThreadPoolExecutor(threads, thread_name_prefix="vswin-onnxruntime")

    def infer(clips):
        outputs = pool.map(lambda clip: session.run(None, {input_name: clip[None]})[0], clips)
        return np.concatenate(list(outputs))

    return infer


def _openvino_model(path: Path, threads: int, precision: str = "f32"):
    """`infer(clips) -> logits` (numpy) on OpenVINO: `threads` streams of one thread each, a clip per
    stream at a time (faster than one stream of `threads` threads, the same logits: docs/benchmarks.md);
    a stream that loses its core to a decode worker does not hold up the other."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": threads, "INFERENCE_PRECISION_HINT": precision}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = core.compile_model(str(path), "CPU", config)
    queue = ov.AsyncInferQueue(compiled, threads)

    def infer(clips):
        logits = [None] * len(clips)

        def keep(request, position):
            logits[position] = request.get_output_tensor(0).data.copy()

        queue.set_callback(keep)
        for position, clip in enumerate(clips):
            queue.start_async({0: clip[None]}, position)
        queue.wait_all()
        return np.concatenate(logits)

    return infer
