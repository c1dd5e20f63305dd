"""Which engine runs the network on the CPU: ours (PyTorch eager), ONNX Runtime or OpenVINO.

    from vswin_cli.runtime import available_runtimes, load_runtime, tune_allocator
    tune_allocator()                                  # once, at start-up (glibc only; no-op elsewhere)
    run = load_runtime(model, "auto", clip_shape=(32, 224, 224), batch=8, cache_dir=cache)
    logits = run(views)                               # float32 (B, 3, T, H, W) -> (B, K), B <= batch

`load_runtime` returns a callable with the contract of `model(views)` in fp32 inference. ONNX Runtime
and OpenVINO need a file for a fixed input shape: it is exported once (`vswin_cli.export`, verified
against PyTorch) into `cache_dir`, named by a hash of the weights, the shape and the library versions,
and reused on later runs. A call with fewer clips than the file's batch is padded with zeros (each
clip's logits do not depend on the others) and the padding cut from the result.

"auto" picks, among the runtimes installed, the fastest measured on the CPU (docs/benchmarks.md):
`AUTO_ORDER`. On CUDA, or for any precision other than fp32, it is always "torch".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from vswin_cli.errors import ConfigError

RUNTIMES = ("torch", "onnxruntime", "openvino")
# Fastest first, as measured on the CPUs of docs/benchmarks.md (fp32, batch 1, Swin-T).
AUTO_ORDER = ("onnxruntime", "openvino", "torch")
# glibc mallopt parameters (malloc.h): keep activation buffers mapped between forwards.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
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


def choose_runtime(name: str = "auto", device: str | torch.device = "cpu", precision: str = "fp32") -> str:
    """The runtime `load_runtime` would use.

    Args:
        name: "auto", or one of `RUNTIMES` to force it.
        device: where the model runs; anything but the CPU means "torch".
        precision: "fp32" for the exported runtimes; bf16/fp16 stay on "torch" (autocast).

    Raises:
        ConfigError: an unknown name, a forced runtime that is not installed, or one that cannot run
            this device/precision.
    """
    if name != "auto" and name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {name!r}", f"use auto or one of {', '.join(RUNTIMES)}")
    on_cpu = torch.device(device).type == "cpu"
    if name == "auto":
        if not on_cpu or precision != "fp32":
            return "torch"
        installed = available_runtimes()
        return next(r for r in AUTO_ORDER if r in installed)
    if name != "torch":
        if name not in available_runtimes():
            raise ConfigError(f"runtime {name} is not installed", "pip install 'vswin[cpu]' (onnx, onnxscript, onnxruntime)"
                              if name == "onnxruntime" else "pip install openvino onnx onnxscript")  # fmt: skip
        if not on_cpu:
            raise ConfigError(f"runtime {name} runs on the CPU only", "use --runtime torch (or auto) with --device cuda")
        if precision != "fp32":
            raise ConfigError(f"runtime {name} runs fp32 files only, not {precision}", "use --precision fp32")
    return name


def load_runtime(
    model: torch.nn.Module,
    name: str = "auto",
    clip_shape: tuple[int, int, int] = (32, 224, 224),
    batch: int = 1,
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable that runs `model` on the chosen runtime.

    Args:
        model: a `VideoSwin` in eval mode (its device decides: CUDA models always run on "torch").
        name: "auto" (fastest installed, see `choose_runtime`) or "torch", "onnxruntime", "openvino".
        clip_shape: (T, H, W) of every clip the callable will get (exported runtimes are fixed-shape).
        batch: the most clips per call.
        precision: "fp32" (any runtime) or "bf16"/"fp16" (torch only; the caller's autocast applies).
        cache_dir: where exported files are kept (required for the exported runtimes), e.g.
            `<cache>/exported`; one file per weights, shape and library versions.
        threads: intra-op threads for ONNX Runtime/OpenVINO (default: torch.get_num_threads()).

    Returns:
        `run(views) -> logits`: float32 (B, 3, T, H, W) on the model's device with B <= batch ->
        (B, num_classes) float32 on the same device. `run.runtime` names the runtime used.
    """
    chosen = choose_runtime(name, next(model.parameters()).device, precision)
    if chosen == "torch":
        return _named(lambda views: model(views), "torch")
    if cache_dir is None:
        raise ConfigError(f"runtime {chosen} needs a cache folder for the exported file")
    path = _exported_file(model, clip_shape, batch, Path(cache_dir))
    threads = threads or torch.get_num_threads()
    if chosen == "onnxruntime":
        infer = _onnxruntime_session(path, threads)
    else:
        infer = _openvino_model(path, threads)
    num_classes = model.config.num_classes
    expected = (3, *clip_shape)

    def run(views: torch.Tensor) -> torch.Tensor:
        if tuple(views.shape[1:]) != expected or views.shape[0] > batch:
            raise ValueError(f"the {chosen} runtime was built for up to {batch} clips of {expected}, got {tuple(views.shape)}")
        n = views.shape[0]
        x = views.detach().float().cpu()
        if n < batch:
            x = torch.cat([x, x.new_zeros(batch - n, *expected)])
        return torch.from_numpy(infer(x.contiguous().numpy()))[:n].view(n, num_classes).to(views.device)

    return _named(run, chosen)


def tune_allocator(nbytes: int = _ALLOCATOR_BYTES) -> bool:
    """Keep freed activation buffers in the process between forwards (glibc only).

    With glibc's defaults every CPU forward returns its large activation buffers to the kernel and
    faults them back in (about 200,000 page faults per Swin-T view); raising the mmap and trim
    thresholds to `nbytes` keeps them (issue 16 measured 12-15% less CPU per forward;
    docs/benchmarks.md). Call once at start-up, before the first forward. Costs up to `nbytes` of
    memory kept mapped after the peak.

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
    nbytes = min(int(nbytes), 2**31 - 1)
    # glibc caps the mmap threshold at 32 MiB on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); larger is refused.
    return bool(mallopt(_M_MMAP_THRESHOLD, min(nbytes, 32 << 20))) and bool(mallopt(_M_TRIM_THRESHOLD, nbytes))


def _named(fn, runtime: str):
    fn.runtime = runtime
    return fn


def _exported_file(model: torch.nn.Module, clip_shape, batch: int, cache_dir: Path) -> Path:
    """The cached .onnx of these weights and this input shape, exported (and verified) on first use."""
    from vswin_cli import export

    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    versions = [torch.__version__] + [_version_of(m) for m in ("onnx", "onnxscript")]
    digest.update(repr((tuple(clip_shape), batch, versions)).encode())
    path = cache_dir / f"vswin-{digest.hexdigest()[:16]}-{batch}x{'x'.join(map(str, clip_shape))}.onnx"
    if not path.is_file():
        export.export_onnx(model, path, tuple(clip_shape), batch, verify=importlib.util.find_spec("onnxruntime") is not None)
    return path


def _version_of(module: str) -> str:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return "-"


def _onnxruntime_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: constant-folding notes are not for users
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (input_name,) = [i.name for i in session.get_inputs()]
    return lambda x: session.run(None, {input_name: x})[0]


def _openvino_model(path: Path, threads: int):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[compiled.output(0)].copy()

