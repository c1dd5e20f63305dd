"""Layers of the Video Swin Transformer around the attention: patch embedding, MLP, stochastic depth
and patch merging (SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; spec/model.md).

Tokens are channels-last `(N, D, H, W, C)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import kernels

Size3 = tuple[int, int, int]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole samples of a residual branch with probability p, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)



class PatchEmbed3D(nn.Module):
    """Non-overlapping 3D patches -> tokens: end-pad to the patch size, Conv3d, optional LayerNorm."""

    def __init__(self, patch_size: Size3, in_chans: int, embed_dim: int, patch_norm: bool):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, T, H, W) -> (N, D, H', W', C)."""
        _, _, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        pad = (0, -w % pw, 0, -h % ph, 0, -t % pt)
        if any(pad):
            x = F.pad(x, pad)
        x = self.proj(x).permute(0, 2, 3, 4, 1)  # (N, C, D, H, W) -> (N, D, H, W, C)
        return self.norm(x) if self.norm is not None else x


class Mlp(nn.Module):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, drop: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)  # GELU is applied inside `kernels.linear` (fused on the CPU bf16 path)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(kernels.linear(self.fc2, self.drop(kernels.linear(self.fc1, x, gelu=True))))


class PatchMerging(nn.Module):
    """2x2 spatial merge: pad odd H/W, concat the four neighbours on channels, LayerNorm, Linear 4C->2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, H, W, C) -> (N, D, ceil(H/2), ceil(W/2), 2C)."""
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Order (even h, even w), (odd h, even w), (even h, odd w), (odd h, odd w) as upstream.
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))
