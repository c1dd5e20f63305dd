"""What `vswin env` reports for a bug report: versions, devices, CPU features, backends, the cache.

Every probe is guarded: a package that is missing or broken is reported as such (`None` / "error: ..."),
never raised, because this is what a user runs when something is already wrong.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

# CPU flags (Linux /proc/cpuinfo names) that change which kernels PyTorch and the bf16 CPU path use.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = {  # shown name -> distribution names to try (decord comes as decord2 or decord)
    "torch": ("torch",), "torchvision": ("torchvision",), "av": ("av",), "decord": ("decord2", "decord", "eva-decord"),
    "numpy": ("numpy",), "typer": ("typer",), "rich": ("rich",), "tqdm": ("tqdm",),
}


def collect() -> dict[str, Any]:
    """Everything `vswin env` prints, as plain data (JSON-serialisable)."""
    from vswin_cli import __version__

    return {
        "vswin": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "packages": {name: _version(dists) for name, dists in PACKAGES.items()},
        "cpu": _cpu(),
        "torch": _torch(),
        "video_backends": _video_backends(),
        "cache": _cache(),
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("VSWIN_") or k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")},
    }


def _version(dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "model": model,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "flags": {flag: flag in flags for flag in CPU_FLAGS} if flags else None,  # None: not readable here
    }


def _torch() -> dict[str, Any]:
    try:
        import torch
    except Exception as err:  # noqa: BLE001 (report, never raise)
        return {"error": f"{type(err).__name__}: {err}"}
    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "devices": [],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": _guard(lambda: torch.backends.cpu.get_cpu_capability()),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkldnn_bf16": _guard(lambda: bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())),
        "openmp": torch.backends.openmp.is_available(),
        "mps": _guard(lambda: torch.backends.mps.is_available()),
    }
    if info["cuda_available"]:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["devices"].append({
                "index": index, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}", "bf16": _guard(lambda: torch.cuda.is_bf16_supported()),
            })  # fmt: skip
    return info


def _video_backends() -> dict[str, Any]:
    backends: dict[str, Any] = {}
    try:
        import av

        codec = getattr(av, "library_versions", {}).get("libavcodec")
        backends["pyav"] = {"version": av.__version__, "ffmpeg": getattr(av, "ffmpeg_version_info", None),
                            "libavcodec": ".".join(map(str, codec)) if codec else None}
    except Exception as err:  # noqa: BLE001
        backends["pyav"] = {"error": f"{type(err).__name__}: {err}"}
    try:
        import decord

        backends["decord"] = {"version": getattr(decord, "__version__", None)}
    except Exception as err:  # noqa: BLE001
        backends["decord"] = {"error": f"{type(err).__name__}: {err}"}
    return backends


def _cache() -> dict[str, Any]:
    from vswin_cli import cache, cache_contents

    try:
        items = cache_contents.list_cache()
    except Exception as err:  # noqa: BLE001 (a broken manifest is worth reporting, not a crash)
        return {"path": str(cache.cache_dir()), "error": f"{type(err).__name__}: {err}"}
    return {"path": str(cache.cache_dir()), "files": len(items), "bytes": sum(i.size for i in items)}


def _guard(probe):
    try:
        return probe()
    except Exception as err:  # noqa: BLE001
        return f"error: {type(err).__name__}: {err}"


def format_text(info: dict[str, Any]) -> str:
    """The plain-text report: one `key: value` line each, sections indented, for pasting into an issue."""
    lines = [f"vswin: {info['vswin']}", f"python: {info['python']}", f"platform: {info['platform']}", "packages:"]
    lines += [f"  {name}: {version or 'not installed'}" for name, version in info["packages"].items()]
    cpu = info["cpu"]
    lines += ["cpu:", f"  model: {cpu['model']}", f"  cores: {cpu['cores']} ({cpu['cores_usable']} usable)"]
    if cpu["flags"] is None:
        lines.append("  flags: unknown (no /proc/cpuinfo)")
    else:
        lines.append("  flags: " + " ".join(f"{flag}={'yes' if on else 'no'}" for flag, on in cpu["flags"].items()))
    lines.append("torch:")
    for key, value in info["torch"].items():
        if key == "devices":
            continue
        lines.append(f"  {key}: {_word(value)}")
    devices = info["torch"].get("devices") or []
    lines.append("  cuda devices: " + (", ".join(f"cuda:{d['index']} {d['name']} ({d['memory_gb']} GB, sm {d['capability']})" for d in devices) or "none"))
    lines.append("video backends:")
    for name, value in info["video_backends"].items():
        lines.append(f"  {name}: " + (value["error"] if "error" in value else ", ".join(f"{k} {_word(v)}" for k, v in value.items())))
    cache = info["cache"]
    size = f"{cache['files']} files, {cache['bytes'] / 2**20:.1f} MB" if "error" not in cache else cache["error"]
    lines += ["cache:", f"  path: {cache['path']}", f"  size: {size}"]
    lines.append("environment: " + (" ".join(f"{k}={v}" for k, v in info["environment"].items()) or "no VSWIN_* variables set"))
    return "\n".join(lines) + "\n"


def _word(value) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "none" if value is None else str(value)
