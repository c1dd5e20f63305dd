"""`vswin export`: write a model as ONNX (and OpenVINO IR) for a fixed clip shape, verified."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.checks import check_arch, check_labels, check_model, check_output
from vswin_cli.errors import UsageError


def export(
    model: Annotated[str, typer.Argument(help="Zoo entry (e.g. swin-t-k400; the cache is used first) or a checkpoint file.",
                                         show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write; X.json and X.labels.txt "
                                         "are written beside it.", show_default=False)],
    clip_len: Annotated[Optional[int], typer.Option("--clip-len", help="Frames per clip (default: the model's "
                                                    "protocol, 32).", show_default=False)] = None,
    crop_size: Annotated[Optional[int], typer.Option("--crop-size", help="Height and width of a clip (default: the "
                                                     "model's protocol, 224).", show_default=False)] = None,
    batch: Annotated[int, typer.Option("--batch", help="Clips per call (fixed in the file).")] = 1,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Label file or label-map name, for checkpoints "
                                                  "without stored labels.", show_default=False)] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="swin-t, swin-s or swin-b, for checkpoint files "
                                                "without a stored config.", show_default=False)] = None,
    openvino: Annotated[bool, typer.Option("--openvino", help="Also write OpenVINO IR (X.xml, X.bin); needs the "
                                           "openvino package.")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare ONNX Runtime's logits with PyTorch's "
                                         "(fp32, 1e-4 of the largest logit) and fail otherwise.")] = True,
    offline: Annotated[bool, typer.Option("--offline", help="Never use the network; the model must be in the cache.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the path written.")] = False,
) -> None:
    """Export a model to ONNX for a fixed clip shape, verified against PyTorch; print the file written.

    Needs `pip install 'vswin[export]'` (onnx, onnxscript, onnxruntime). Examples:

      vswin export swin-t-k400 -o swin-t-k400.onnx

      vswin export my_run/best.pth -o model.onnx --clip-len 16 --crop-size 160 --batch 4
    """  # fmt: skip
    check_model(model)
    check_arch(arch)
    check_labels(labels)
    if output.suffix != ".onnx":
        raise UsageError(f"-o {output}: the output file must end in .onnx", f"e.g. -o {output.with_suffix('.onnx').name}")
    check_output(str(output), creates_folder=True)
    for option, value in (("--clip-len", clip_len), ("--crop-size", crop_size), ("--batch", batch)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    from vswin_cli import export as export_lib  # torch and the exporter load only when the command runs

    result = export_lib.export_model(
        model, output, clip_len=clip_len, crop_size=crop_size, batch=batch, labels=labels, arch=arch,
        offline=True if offline else None, verify=verify, openvino=openvino, progress=not quiet,
    )  # fmt: skip
    if not quiet:
        ratio = result.file_bytes / result.weight_bytes
        check = "not verified" if result.max_rel_err is None else f"ONNX Runtime agrees to {result.max_rel_err:.1e}"
        typer.echo(f"input {'x'.join(map(str, result.input_shape))} float32; {result.file_bytes / 1e6:.1f} MB "
                   f"({ratio:.2f}x the weights); {check}", err=True)  # fmt: skip
    typer.echo(result.onnx)
    if result.openvino is not None:
        typer.echo(result.openvino)
