"""Export a VideoSwin to ONNX (and OpenVINO IR where `openvino` is installed), verified on export.

    from vswin_cli.export import export_onnx
    result = export_onnx(model, "swin-t.onnx", clip_shape=(32, 224, 224), labels=labels)

The graph comes from `torch.export` (the dynamo ONNX exporter), which sees the network's traced path:
the relative-position bias is gathered from each block's table and the shift masks are built from
the map size inside the graph, so the file holds the weights once and no per-block mask constants
(sizes in docs/benchmarks.md). The clip shape and batch are fixed at export.

Beside `X.onnx` come `X.json` (input/output names, shapes, layout, the preprocessing protocol, the
labels, the source and the verification figures) and `X.labels.txt` (one class name per line).
Verification runs the file in ONNX Runtime on a seeded random clip and compares its logits with the
PyTorch model's in fp32: max |difference| / max |logit| <= 1e-4, else the file is removed and
`ExportError` raised.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch

from vswin_cli.errors import VswinError
from vswin_cli.files import atomic_file
from vswin_cli.transforms import MEAN_RGB, STD_RGB

INPUT_NAME = "video"
OUTPUT_NAME = "logits"
# Largest constant (elements) the ONNX optimizer may fold into the file.
FOLD_LIMIT = 4096
# fp32 agreement demanded of an exported file: max |ours - theirs| / max |ours|.
TOLERANCE = 1e-4


class ExportError(VswinError):
    """An export that could not be written or did not reproduce the model's logits."""


@dataclass(frozen=True)
class ExportResult:
    """What `export_onnx` wrote.

    Attributes:
        onnx: the .onnx file; sidecar: its .json description; labels: its .labels.txt (or None).
        openvino: the OpenVINO .xml (its weights in the .bin beside it), or None.
        input_shape: (B, 3, T, H, W) the file takes (float32, normalised RGB).
        file_bytes: size of the .onnx file; weight_bytes: size of the model's parameters in fp32.
        max_rel_err: max |onnxruntime - torch| / max |torch| on the verification clip (None if not verified).
    """

    onnx: Path
    sidecar: Path
    labels: Path | None
    openvino: Path | None
    input_shape: tuple[int, ...]
    file_bytes: int
    weight_bytes: int
    max_rel_err: float | None


def onnx_available() -> bool:
    """Whether the packages an export needs are installed (`pip install 'vswin[export]'`)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_model(
    model: str | Path,
    output: str | Path,
    clip_len: int | None = None,
    crop_size: int | None = None,
    batch: int = 1,
    labels: str | Path | None = None,
    arch: str | None = None,
    offline: bool | None = None,
    verify: bool = True,
    openvino: bool = False,
    progress: bool = True,
) -> ExportResult:
    """`vswin export`: resolve a zoo name or weights file (the cache first, so a fetched zoo model
    exports offline) and write it with `export_onnx`.

    Args:
        model: a zoo entry name or a checkpoint file.
        output: the .onnx file.
        clip_len, crop_size: the clip shape (T = clip_len, H = W = crop_size); default the model's
            test protocol (32 and 224 for the released models).
        batch: clips per call.
        labels, arch: as `vswin tag --labels/--arch` (for files without stored labels/config).
        offline: never download (default `VSWIN_OFFLINE`).
        verify, openvino, progress: see `export_onnx`; progress is for the download.
    """
    from vswin_cli.resolve import resolve_model

    if batch < 1 or (clip_len is not None and clip_len < 1) or (crop_size is not None and crop_size < 1):
        raise ExportError("--batch, --clip-len and --crop-size must be at least 1")
    if not onnx_available():  # checks before any download
        raise ExportError("ONNX export needs the onnx and onnxscript packages", "pip install 'vswin[export]'")
    _check_output(Path(output))
    is_file = Path(model).expanduser().is_file()
    resolved = resolve_model(
        model=None if is_file else str(model), weights=Path(model).expanduser() if is_file else None,
        arch=arch, labels=labels, offline=offline, progress=progress,
    )  # fmt: skip
    spec = resolved.protocol
    clip_shape = (clip_len or spec.clip_len, crop_size or spec.crop_size, crop_size or spec.crop_size)
    return export_onnx(
        resolved.model, output, clip_shape, batch, resolved.labels, spec, resolved.name, verify, openvino
    )


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    clip_shape: tuple[int, int, int] = (32, 224, 224),
    batch: int = 1,
    labels: list[str] | None = None,
    protocol: object = None,
    source: str | None = None,
    verify: bool = True,
    openvino: bool = False,
) -> ExportResult:
    """Write `model` as ONNX for inputs of one fixed shape, with its description beside it.

    Args:
        model: a `VideoSwin` (any device/dtype; exported in fp32 on the CPU, the model is not changed).
        path: the .onnx file to write (its folder is created; written atomically).
        clip_shape: (T, H, W) of the clips the file will take.
        batch: clips per call.
        labels: class names (len == num_classes), written to X.labels.txt and X.json.
        protocol: the preprocessing protocol (a dataclass such as `ClipSpec`, or a dict) for X.json.
        source: where the weights came from (zoo name or file), for X.json.
        verify: run the file in ONNX Runtime and compare logits (needs `onnxruntime`).
        openvino: also write OpenVINO IR (X.xml + X.bin); needs the `openvino` package.

    Returns:
        An `ExportResult`.

    Raises:
        ExportError: the export packages are missing, the exporter failed, or verification failed.
    """
    if not onnx_available():
        raise ExportError("ONNX export needs the onnx and onnxscript packages", "pip install 'vswin[export]'")
    path = Path(path)
    _check_output(path)
    num_classes = model.config.num_classes
    if labels is not None and len(labels) != num_classes:
        raise ExportError(f"{len(labels)} labels for a model with {num_classes} classes")
    cpu = _cpu_fp32_copy(model)
    x = torch.randn(batch, 3, *clip_shape, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".incomplete") as tmp:  # readable like any file (the writer keeps the mode)
        _write_onnx(cpu, x, tmp)
        max_rel_err = verify_onnx(tmp, cpu, x) if verify else None
    labels_path = None
    if labels is not None:
        labels_path = path.with_suffix(".labels.txt")
        labels_path.write_text("".join(f"{name}\n" for name in labels), encoding="utf-8")
    xml = export_openvino(path) if openvino else None
    weight_bytes = sum(p.numel() * 4 for p in cpu.parameters())
    sidecar = path.with_suffix(".json")
    description = {
        "format": "vswin-onnx",
        "file": path.name,
        "input": {"name": INPUT_NAME, "shape": list(x.shape), "dtype": "float32", "layout": "NCTHW",
                  "values": "RGB, (pixel - mean) / std with the protocol's mean and std (0-255 units)"},
        "output": {"name": OUTPUT_NAME, "shape": [batch, num_classes], "dtype": "float32",
                   "values": "raw class scores (no softmax)"},
        "config": cpu.config.to_dict(),
        "protocol": _plain(protocol),
        "normalize": {"mean": list(MEAN_RGB), "std": list(STD_RGB)},
        "labels": labels,
        "source": source,
        "verified": None if max_rel_err is None else {"runtime": "onnxruntime", "max_rel_err": max_rel_err,
                                                       "tolerance": TOLERANCE},
        "openvino": xml.name if xml is not None else None,
        "torch": torch.__version__,
    }  # fmt: skip
    sidecar.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return ExportResult(path, sidecar, labels_path, xml, tuple(x.shape), path.stat().st_size, weight_bytes, max_rel_err)


def verify_onnx(path: str | Path, model: torch.nn.Module, x: torch.Tensor, tolerance: float = TOLERANCE) -> float:
    """Run the file in ONNX Runtime on `x` and compare with `model(x)` (fp32).

    Returns:
        max |onnxruntime - torch| / max |torch|.

    Raises:
        ExportError: onnxruntime is missing, or the difference exceeds `tolerance`.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("verifying the export needs onnxruntime", "pip install 'vswin[cpu]', or pass --no-verify") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])
    with torch.inference_mode():
        ours = model(x)
    err = ((theirs.double() - ours.double()).abs().max() / ours.double().abs().max().clamp_min(1e-30)).item()
    if not err <= tolerance:
        raise ExportError(
            f"{path}: ONNX Runtime's logits differ from PyTorch's by {err:.2e} of the largest logit (limit {tolerance:g})",
            "report this with `vswin export --help` output and your torch/onnx/onnxruntime versions",
        )
    return err


def export_openvino(onnx_path: str | Path) -> Path:
    """Convert an exported .onnx file to OpenVINO IR (X.xml + X.bin beside it).

    Raises:
        ExportError: the `openvino` package is not installed.
    """
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("OpenVINO IR needs the openvino package", "pip install openvino, or leave out --openvino") from None
    onnx_path = Path(onnx_path)
    xml = onnx_path.with_suffix(".xml")
    # fp32 weights as exported (save_model would halve them to fp16 by default).
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def _write_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """The dynamo exporter, quietly (it prints progress and warns about torchvision ops)."""
    import onnxscript.optimizer

    log = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # "torchvision is not installed. Skipping torchvision::nms" and the like
        logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, (x,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                optimize=False,
            )
            # Fold only small constants (shapes, indices): the default limit (256k elements) would
            # store a gathered bias or shift mask per block for small clips.
            onnxscript.optimizer.optimize_ir(program.model, output_size_limit=FOLD_LIMIT)
            program.save(str(path))
    except Exception as err:  # noqa: BLE001 - the exporter fails in many ways; name it and keep the cause
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ExportError(f"the ONNX exporter failed: {first}", "run with VSWIN_DEBUG=1 for the traceback") from err
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _check_output(path: Path) -> None:
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx", f"e.g. -o {path.with_suffix('.onnx').name}")


def _cpu_fp32_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An fp32 CPU eval copy, so exporting never moves or converts the caller's model."""
    from models import VideoSwin

    copy = VideoSwin.from_config(model.config)
    copy.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return copy.eval()


def _plain(protocol: object):
    if protocol is None or isinstance(protocol, dict):
        return protocol
    if is_dataclass(protocol):
        return asdict(protocol)
    return str(protocol)
