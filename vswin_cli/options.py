"""Option types shared by several commands."""

from __future__ import annotations

import contextlib
from enum import Enum

import torch

from vswin_cli.errors import ConfigError

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision(str, Enum):
    """`--precision`: the autocast dtype of the forward (and backward) passes."""

    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def resolve_precision(precision: str | Precision, device) -> str:
    """"auto" -> "bf16" on CUDA, "fp32" elsewhere; "fp16" is refused off CUDA (no fast fp16 on CPU).

    Args:
        precision: "auto", "fp32", "fp16" or "bf16" (or the enum).
        device: a device string ("cpu", "cuda:1") or `torch.device`.
    """
    value = Precision(precision).value
    on_cuda = str(device).startswith("cuda")
    if value == "auto":
        return "bf16" if on_cuda else "fp32"
    if value == "fp16" and not on_cuda:
        raise ConfigError("--precision fp16 needs a CUDA device", hint="use --precision fp32 or bf16 on CPU")
    return value


def autocast(device: torch.device, precision: str):
    """The autocast context of a resolved `precision` ("fp32" = none) on `device`."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
