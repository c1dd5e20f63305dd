"""Inference speed of VideoSwin: views/s per arch, batch size, dtype and device, side by side with the
plain reference attention path, torch.compile, the exported CPU runtimes (ONNX Runtime, OpenVINO, via
vswin_cli.runtime) and (when it imports) torchvision's swin3d, in one interleaved run.

    python bench/bench_model.py                       # CPU: batch 1, fp32+bf16, swin-t/s/b/b-16
    python bench/bench_model.py --archs swin-t --dtypes fp32 --impls ours,onnxruntime,torchvision
    python bench/bench_model.py --archs swin-t --dtypes bf16 --repeats 5
    PYTHONPATH=/tmp/tvsite python bench/bench_model.py --device cuda   # batch 1 and 16, TFLOP/s
    python bench/bench_model.py --device cuda --impls ours,torchvision,compiled,flex --json out.json

Implementations: ours (SDPA with the cached bias+mask), reference (explicit formula), torchvision
(its eager swin3d), compiled (ours through torch.compile), flex (ours with every window attention
through models/flex.py, the compiled FlexAttention kernel; CUDA only), onnxruntime / openvino (the
exported file through vswin_cli.runtime: a clip per thread; OpenVINO also in bf16 where it computes
bf16 on this CPU), and default: what `vswin tag` runs at that precision on the CPU (`--runtime auto`,
the runtime it measured fastest; the row names it). On the CPU use a batch of as many clips as threads
(`--batch-sizes 2` on 2 cores) so that the exported runtimes, which run a clip per thread, use every core.

Beside wall time per view the table gives CPU seconds per view (process time, all threads: on a shared
machine wall time moves with other load, CPU time much less) and minor page faults per forward.
`--tune-allocator` applies `vswin_cli.runtime.tune_allocator()` first (compare two runs).

A view is 3 x T x S x S (default 3x32x224x224). On CUDA the table also gives the achieved TFLOP/s
(2 x multiply-adds of one 32x224x224 view, from spec/model.md) and its share of a measured bf16 matmul
peak. Prints a Markdown table; ratios compare implementations measured in this same run.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import resource
import shutil
import tempfile
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import VideoSwin, get_config  # noqa: E402

# Multiply-adds of one 3x32x224x224 view (spec/model.md, torch FlopCounterMode).
GMACS_PER_VIEW = {"swin-t": 87.76, "swin-s": 165.68, "swin-b": 281.33, "swin-b-16": 320.36}
ARCHS = {
    "swin-t": ("swin-t", {}),
    "swin-s": ("swin-s", {}),
    "swin-b": ("swin-b", {}),
    "swin-b-16": ("swin-b", {"window_size": (16, 7, 7)}),
    # For smoke runs only (bench/device_check.sh --dry): the tests' tiny config; no TFLOP/s.
    "tiny": ("swin-t", {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 1), "window_size": (2, 3, 3)}),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def import_torchvision_swin3d():
    """Return (torchvision's SwinTransformer3d module, note). Falls back to importing the pure-Python
    model files without running torchvision/__init__ (whose C extension may not match this torch)."""
    try:
        from torchvision.models.video import swin_transformer

        return swin_transformer, "torchvision imported normally"
    except Exception as err:  # noqa: BLE001 - any import failure means "not available"
        first_error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None, "torchvision is not installed"
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["torchvision"] = package
    try:
        from torchvision.models.video import swin_transformer

        return swin_transformer, f"torchvision package import failed ({first_error}); its pure-Python swin3d loaded"
    except Exception as err:  # noqa: BLE001
        return None, f"torchvision unusable ({first_error}; then {type(err).__name__}: {err})"


EXPORTED = ("onnxruntime", "openvino", "default")


def build(impl: str, arch: str, tv_module):
    name, overrides = ARCHS[arch]
    if impl in ("ours", "reference", "compiled") or impl in EXPORTED:
        model = VideoSwin.from_config(get_config(name, **overrides))
        model.set_reference_attention(impl == "reference")
        return model
    cfg = get_config(name, **overrides)
    return tv_module.SwinTransformer3d(
        patch_size=list(cfg.patch_size),
        embed_dim=cfg.embed_dim,
        depths=list(cfg.depths),
        num_heads=list(cfg.num_heads),
        window_size=list(cfg.window_size),
        stochastic_depth_prob=cfg.drop_path_rate,
        num_classes=cfg.num_classes,
    )


def _use_flex_attention(model) -> None:
    """Route every window attention of `model` (this instance only) through models/flex.py."""
    from models import flex
    from models.attention import WindowAttention3D

    for module in model.modules():
        if isinstance(module, WindowAttention3D):
            module.forward = types.MethodType(
                lambda self, x, shift_mask, *args, **kwargs: flex.window_attention_forward(self, x, shift_mask), module)


def prepare(impl: str, arch: str, tv_module, device: str, dtype, x, cache_dir: str):
    """The callable to time: the module in eval mode on the device, compiled, through FlexAttention, or an
    exported runtime of the same model."""
    model = build("ours" if impl in ("compiled", "flex", *EXPORTED) else impl, arch, tv_module)
    model = model.eval().to(device=device, dtype=dtype)
    if impl == "flex":
        _use_flex_attention(model)
    if impl == "compiled":
        return torch.compile(model, fullgraph=True)
    if impl in EXPORTED:
        from vswin_cli.runtime import load_runtime

        precision = "bf16" if dtype == torch.bfloat16 else "fp32"
        return load_runtime(model, "auto" if impl == "default" else impl, clip_shape=tuple(x.shape[2:]),
                            precision=precision, cache_dir=cache_dir)
    return model


def exported_runs(impl: str, dtype_name: str, device: str) -> bool:
    """Whether an exported-runtime row exists for this dtype and device: "default" on the CPU, the others
    where `vswin tag --runtime` would accept them (`vswin_cli.runtime.check_runtime`)."""
    from vswin_cli.errors import ConfigError
    from vswin_cli.runtime import check_runtime

    if impl == "default":
        return device == "cpu"
    try:
        check_runtime(impl, device, dtype_name)
    except ConfigError:
        return False
    return True


def time_models(models: dict, x, repeats: int, warmup: int, device: str, stat: str = "median") -> dict:
    """(wall seconds, CPU seconds, minor page faults) per forward of the whole batch (median or min over
    runs), per model. Runs interleave (one forward of each model per round) so that load from other
    processes hits every one alike."""
    times = {name: [] for name in models}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for name, model in models.items():
                if device == "cuda":
                    torch.cuda.synchronize()
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start, cpu_start = time.perf_counter(), time.process_time()
                model(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                if i >= warmup:
                    times[name].append((time.perf_counter() - start, time.process_time() - cpu_start,
                                        resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    pick = min if stat == "min" else statistics.median
    return {name: tuple(pick(col) for col in zip(*t)) for name, t in times.items()}


def matmul_peak_tflops(device: str, dtype=torch.bfloat16, n: int = 8192, repeats: int = 20) -> float:
    """Measured dense matmul throughput (TFLOP/s) of the device in `dtype`."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="swin-t,swin-s,swin-b,swin-b-16", help="comma list of " + ",".join(ARCHS))
    parser.add_argument("--impls", default="ours,reference,torchvision",
                        help="comma list: ours,reference,torchvision,compiled,flex,onnxruntime,openvino,default")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list: fp32,bf16")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default: 1 on CPU, 1,16 on CUDA)")
    parser.add_argument("--frames", type=int, default=32, help="frames per view (default 32)")
    parser.add_argument("--size", type=int, default=224, help="height = width of a view (default 224)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs, median taken (default CPU 3, CUDA 10)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed runs first (default 2: on CPU the first passes pay for page faults)")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="summary of the timed runs (min is steadier on a shared, loaded machine)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write every row (and the run's details) to this JSON file")
    parser.add_argument("--tune-allocator", action="store_true", help="apply vswin_cli.runtime.tune_allocator() first")
    args = parser.parse_args(argv)
    tuned = False
    if args.tune_allocator:
        from vswin_cli.runtime import tune_allocator

        tuned = tune_allocator()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,16" if device == "cuda" else "1")).split(",")]
    repeats = args.repeats or (10 if device == "cuda" else 3)
    archs = args.archs.split(",")
    impls = args.impls.split(",")
    unknown = [a for a in archs if a not in ARCHS] + [d for d in args.dtypes.split(",") if d not in DTYPES]
    if unknown:
        parser.error(f"unknown arch/dtype {unknown}")
    tv_module, tv_note = (None, "not requested")
    if "torchvision" in impls:
        tv_module, tv_note = import_torchvision_swin3d()
        if tv_module is None:
            impls.remove("torchvision")
    notes = []
    if any(i in EXPORTED for i in impls):
        from vswin_cli.runtime import available_runtimes

        for impl in [i for i in impls if i in EXPORTED and i != "default" and i not in available_runtimes()]:
            impls.remove(impl)
            notes.append(f"{impl} not installed")
    standard_view = args.frames == 32 and args.size == 224
    peak = matmul_peak_tflops(device) if device == "cuda" else None

    if device == "cuda":
        where = torch.cuda.get_device_name()
    else:
        from vswin_cli.diagnostics import _cpu

        cpu = _cpu()
        flags = " ".join(f for f, present in (cpu["flags"] or {}).items() if present) or "flags unknown"
        where = f"{cpu['model']}, {cpu['cores']} cores, {torch.get_num_threads()} threads; flags: {flags}"
    print(f"# bench_model: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, device {device} ({where})")
    print(f"# view 3x{args.frames}x{args.size}x{args.size}, {args.stat} of {repeats} interleaved runs after {args.warmup} warm-up; torchvision: {tv_note}")
    if "flex" in impls:
        from models import flex

        if not flex.FLEX_AVAILABLE:
            impls.remove("flex")
            print("# flex: this PyTorch has no flex_attention; skipped")
    print(f"# allocator: {'tuned (vswin_cli.runtime.tune_allocator)' if tuned else 'glibc defaults'}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}" + (f"; {', '.join(notes)}" if notes else ""))
    if peak:
        print(f"# measured bf16 matmul peak: {peak:.0f} TFLOP/s")
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
              "device": device, "device_name": where, "frames": args.frames, "size": args.size,
              "repeats": repeats, "warmup": args.warmup, "stat": args.stat, "torchvision": tv_note,
              "bf16_matmul_peak_tflops": peak, "rows": []}
    print()
    print("| arch | dtype | batch | impl | views/s | vs torchvision | vs reference | vs ours | wall s/view | CPU s/view | faults/fwd |"
          + (" TFLOP/s | % peak |" if device == "cuda" else ""))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if device == "cuda" else ""))
    cache_dir = tempfile.mkdtemp(prefix="bench-model-")  # exported files (100+ MB each): removed at exit
    atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    for arch in archs:
        for dtype_name in args.dtypes.split(","):
            dtype = DTYPES[dtype_name]
            run_impls = [i for i in impls if not (i in EXPORTED and not exported_runs(i, dtype_name, device))]
            for batch in batch_sizes:
                x = torch.randn(batch, 3, args.frames, args.size, args.size, device=device, dtype=dtype)
                models = {}
                for impl in run_impls:
                    try:
                        models[impl] = prepare(impl, arch, tv_module, device, dtype, x, cache_dir)
                        if impl in ("compiled", "flex"):  # compile now; a failure drops only this impl
                            with torch.inference_mode():
                                models[impl](x)
                    except Exception as err:  # noqa: BLE001 - reported, the other impls still run
                        models.pop(impl, None)
                        note = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
                        report.setdefault("errors", []).append({"arch": arch, "dtype": dtype_name, "batch": batch,
                                                                "impl": impl, "error": note})
                        print(f"# {impl} failed ({arch}, {dtype_name}, batch {batch}): {note}", flush=True)
                measured = time_models(models, x, repeats, args.warmup, device, args.stat)
                speed = {impl: batch / measured[impl][0] for impl in models}
                picked = {impl: getattr(models[impl], "runtime", "") for impl in models}
                del models
                for impl in speed:
                    wall, cpu, faults = measured[impl]
                    record = {"arch": arch, "dtype": dtype_name, "batch": batch, "impl": impl,
                              "seconds_per_batch": wall, "cpu_seconds_per_batch": cpu, "faults_per_forward": faults,
                              "views_per_s": speed[impl]}
                    if impl == "default":
                        record["runtime"] = picked[impl]
                    shown = f"default ({picked[impl]})" if impl == "default" else impl
                    row = f"| {arch} | {dtype_name} | {batch} | {shown} | {speed[impl]:.3g} | "
                    row += f"{speed[impl] / speed['torchvision']:.2f}x | " if "torchvision" in speed else "- | "
                    row += f"{speed[impl] / speed['reference']:.2f}x |" if "reference" in speed else "- |"
                    row += f" {speed[impl] / speed['ours']:.2f}x |" if "ours" in speed else " - |"
                    row += f" {wall / batch:.3f} | {cpu / batch:.3f} | {faults:.0f} |"
                    if device == "cuda":
                        if standard_view and arch in GMACS_PER_VIEW:
                            tflops = 2 * GMACS_PER_VIEW[arch] * speed[impl] / 1e3
                            record.update(tflops=tflops, share_of_peak=tflops / peak)
                            row += f" {tflops:.1f} | {100 * tflops / peak:.0f}% |"
                        else:
                            row += " - | - |"
                    print(row, flush=True)
                    report["rows"].append(record)
                if args.json:  # after every configuration, so a time-out keeps what was measured
                    Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
