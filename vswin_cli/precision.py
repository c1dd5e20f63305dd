"""The precision rule of inference and training, and its autocast context (no Typer, no torch at import).

`resolve_precision` turns `--precision auto|fp32|fp16|bf16` (or the `precision=` of `vswin_cli.load`) into the
precision a run uses on its device; `autocast` is that precision's context.
"""

from __future__ import annotations

import contextlib
import sys

from vswin_cli.errors import UsageError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_precision(precision: str, device, cpu_native_bf16: bool = False) -> str:
    """The autocast precision: "auto" -> "bf16" on CUDA; on the CPU "bf16" where the CPU computes bf16
    natively and `cpu_native_bf16` asks for it (inference), else "fp32". "fp16" is refused off CUDA;
    an explicit "bf16" on a CPU without native bf16 is kept, with a warning naming its cost.

    Args:
        precision: "auto", "fp32", "fp16" or "bf16" (or the CLI's enum).
        device: a device string ("cpu", "cuda:1") or `torch.device`.
        cpu_native_bf16: let "auto" pick bf16 on a CPU with AVX512_BF16/AMX (tag, eval; not train).
    """
    value = str(getattr(precision, "value", precision))
    if value not in PRECISIONS:
        raise UsageError(f"--precision {value!r} is not one of {', '.join(PRECISIONS)}", hint="use --precision auto, fp32, fp16 or bf16")
    on_cuda = str(device).startswith("cuda")
    if value == "fp16" and not on_cuda:
        raise UsageError("--precision fp16 needs a CUDA device", hint="use --precision fp32 or bf16 on CPU")
    if on_cuda:
        return "bf16" if value == "auto" else value
    if value == "auto" and not cpu_native_bf16:
        return "fp32"
    from vswin_cli.runtime import cpu_precision

    value, warning = cpu_precision(value)
    if warning:
        sys.stderr.write(f"warning: {warning}\n")
    return value


def autocast(device, precision: str):
    """The autocast context of a resolved `precision` ("fp32" = none) on `device` (a `torch.device`)."""
    import torch

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
