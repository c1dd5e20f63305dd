"""Pure dict -> dict conversions between checkpoint namings and ours.

Our naming is the official backbone naming without `backbone.`, with the head as `head.*`:

    official (mmaction)                  ours                      torchvision
    backbone.patch_embed.*               patch_embed.*             patch_embed.*
    backbone.layers.i.blocks.j.X         layers.i.blocks.j.X       features.{2i}.{j}.X (mlp.fc1/fc2 -> mlp.0/mlp.3)
    backbone.layers.i.downsample.X       layers.i.downsample.X     features.{2i+1}.X
    backbone.norm.*                      norm.*                    norm.*
    cls_head.fc_cls.*                    head.*                    head.*

The ImageNet-2D inflation follows the official `inflate_weights` (spec/model.md). No function here
reads files or touches a model; tensors are passed through, not copied, unless they change.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from models.attention import relative_position_index

StateDict = dict[str, torch.Tensor]

_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.*)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(.*)$")
_OURS_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.*)$")
_OURS_MERGE = re.compile(r"^layers\.(\d+)\.downsample\.(.*)$")
_TV_MLP = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Remove `prefix` from every key that starts with it (e.g. DDP's `module.`)."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def from_mmaction(state_dict: StateDict) -> StateDict:
    """Official Video-Swin (mmaction) keys -> ours. Keys of other heads/modules pass through unchanged
    (they then show up as unexpected keys when loading)."""
    out = {}
    for key, value in strip_prefix(state_dict, "module.").items():
        if key.startswith("backbone."):
            key = key[len("backbone.") :]
        elif key.startswith("cls_head.fc_cls."):
            key = "head." + key[len("cls_head.fc_cls.") :]
        out[key] = value
    return out


def to_mmaction(state_dict: StateDict) -> StateDict:
    """Ours -> official naming (export), in the same order."""
    out = {}
    for key, value in state_dict.items():
        out["cls_head.fc_cls." + key[5:] if key.startswith("head.") else "backbone." + key] = value
    return out


def from_torchvision(state_dict: StateDict) -> StateDict:
    """torchvision `swin3d_t/s/b` state_dict -> ours."""
    out = {}
    for key, value in state_dict.items():
        if m := _TV_BLOCK.match(key):
            index, block, rest = int(m[1]), m[2], m[3]
            if index % 2 == 0:
                for tv, ours in _TV_MLP.items():
                    if rest.startswith(tv):
                        rest = ours + rest[len(tv) :]
                key = f"layers.{index // 2}.blocks.{block}.{rest}"
            else:  # a patch merging has no numbered children, so this is not a merge key
                key = f"features.{index}.{block}.{rest}"
        elif m := _TV_MERGE.match(key):
            index, rest = int(m[1]), m[2]
            key = f"layers.{index // 2}.downsample.{rest}" if index % 2 else key
        out[key] = value
    return out


def to_torchvision(state_dict: StateDict) -> StateDict:
    """Ours -> torchvision naming, in the same order."""
    out = {}
    for key, value in state_dict.items():
        if m := _OURS_BLOCK.match(key):
            rest = m[3]
            for tv, ours in _TV_MLP.items():
                if rest.startswith(ours):
                    rest = tv + rest[len(ours) :]
            key = f"features.{2 * int(m[1])}.{m[2]}.{rest}"
        elif m := _OURS_MERGE.match(key):
            key = f"features.{2 * int(m[1]) + 1}.{m[2]}"
        out[key] = value
    return out


def inflate_imagenet2d(
    state_dict_2d: StateDict, window_size: tuple[int, int, int], patch_size_t: int
) -> tuple[StateDict, list[str]]:
    """Inflate an ImageNet 2D Swin state_dict (microsoft/Swin-Transformer) to a 3D backbone.

    Rules (official `inflate_weights`): drop `relative_position_index`/`attn_mask` and the `head.*`
    classifier; repeat the patch kernel patch_t times along time and divide by patch_t; resize each
    bias table bicubically to (2Wh-1)x(2Ww-1) if its size differs, then tile it 2Wd-1 times (every
    temporal offset gets the 2D bias). The 3D `relative_position_index` buffers are generated.

    Args:
        state_dict_2d: the `model` entry of the 2D file.
        window_size: the 3D window (wd, wh, ww).
        patch_size_t: temporal patch size of the 3D model.

    Returns:
        (3D backbone state_dict in our naming, list of dropped 2D keys).
    """
    wd, wh, ww = window_size
    rows_2d = (2 * wh - 1) * (2 * ww - 1)
    index = relative_position_index(window_size)
    out: StateDict = {}
    dropped = []
    for key, value in state_dict_2d.items():
        if key.endswith("relative_position_index") or key.endswith("attn_mask") or key.startswith("head."):
            dropped.append(key)
            continue
        if key == "patch_embed.proj.weight":
            if value.ndim != 4:
                raise ValueError(f"{key}: expected a 2D (C, 3, h, w) kernel, got shape {tuple(value.shape)}")
            value = value.unsqueeze(2).repeat(1, 1, patch_size_t, 1, 1) / patch_size_t  # (C, 3, pt, h, w)
        elif key.endswith("relative_position_bias_table"):
            rows, heads = value.shape
            if rows != rows_2d:
                side = math.isqrt(rows)
                if side * side != rows:
                    raise ValueError(f"{key}: {rows} rows is not a square 2D table")
                image = value.permute(1, 0).reshape(1, heads, side, side)  # (1, nH, S, S)
                image = F.interpolate(image, size=(2 * wh - 1, 2 * ww - 1), mode="bicubic", align_corners=False)
                value = image.reshape(heads, rows_2d).permute(1, 0)
            value = value.repeat(2 * wd - 1, 1)  # ((2wd-1)(2wh-1)(2ww-1), nH)
            out[key] = value
            out[key.replace("relative_position_bias_table", "relative_position_index")] = index
            continue
        out[key] = value
    return out, dropped
