"""Shifted-window attention of the Video Swin Transformer (Liu et al., 2021, arXiv 2106.13230).

Numerically the authors' `WindowAttention3D` and window helpers (SwinTransformer/Video-Swin-Transformer
@ db018fb, `mmaction/models/backbones/swin_transformer.py`, Apache-2.0), quirks included; see
`../shared/spec/model.md`. Read top to bottom: pure window helpers, the per-size `WindowPlan` of a
stage, the attention formula written out, then the module.

Eager inference adds the relative-position bias and the shift mask as one cached additive mask and
hands q, k, v to `models.kernels.window_attention` (SDPA, or the CPU bf16 kernel; the place a CUDA
kernel plugs in). While training the mask is rebuilt each call so the gradient reaches the bias
table. Under `torch.compile` / `torch.export` nothing is cached: the bias is gathered from the table
and the shift mask built from the map size inside the graph, and attention is the formula written out
(`explicit_attention`), so the graph is whole, holds no per-block constants, and the compiler fuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import kernels

Size3 = tuple[int, int, int]

# The official mask value for token pairs from different regions of a shifted window.
MASK_VALUE = -100.0
# Input sizes whose window plans and masks are kept per stage/block; more sizes reset the cache.
# (A combined mask is nW*heads*N*N elements: for swin-b at 32x224x224 in fp32 all blocks together
# hold about 1.3 GB; `VideoSwin.clear_caches()` frees them.)
MAX_CACHED_SIZES = 2


def tracing() -> bool:
    """True inside `torch.compile` / `torch.export`: build masks in the graph, cache nothing."""
    return torch.compiler.is_compiling()


# ---------------------------------------------------------------------------------------------
# Window helpers (pure functions)
# ---------------------------------------------------------------------------------------------


def effective_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Window and shift actually used for a feature map (the official clipping rule).

    Per axis: if size <= window, the window shrinks to the size and the shift becomes 0.

    Returns:
        (window, shift), each (d, h, w).
    """
    win, sh = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            win[i], sh[i] = size[i], 0
    return (win[0], win[1], win[2]), (sh[0], sh[1], sh[2])


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """Split a padded map into windows.

    Args:
        x: (N, D, H, W, C) with D, H, W multiples of the window.
        window: (wd, wh, ww).

    Returns:
        (N * num_windows, wd*wh*ww, C); windows ordered (batch, d, h, w) row-major, tokens too.
    """
    n, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(n, d // wd, wd, h // wh, wh, w // ww, ww, c)
    # (N, nD, nH, nW, wd, wh, ww, C) -> (N*windows, tokens, C)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Size3, n: int, size: Size3) -> torch.Tensor:
    """Inverse of `window_partition`: (N*num_windows, tokens, C) -> (N, D, H, W, C)."""
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(n, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    # (N, nD, nH, nW, wd, wh, ww, C) -> (N, nD, wd, nH, wh, nW, ww, C) -> (N, D, H, W, C)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(n, d, h, w, -1)


def relative_position_index(window: Size3, device=None) -> torch.Tensor:
    """Index into the relative-position bias table for every (query, key) pair of a window.

    Returns:
        int64 (N, N), N = wd*wh*ww: (dd+wd-1)(2wh-1)(2ww-1) + (dh+wh-1)(2ww-1) + (dw+ww-1), with
        d* = coordinate of the query minus that of the key.
    """
    wd, wh, ww = window
    axes = (torch.arange(wd, device=device), torch.arange(wh, device=device), torch.arange(ww, device=device))
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    coords = coords.flatten(1)  # (3, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3)
    dd, dh, dw = (rel[..., 0] + wd - 1), (rel[..., 1] + wh - 1), (rel[..., 2] + ww - 1)
    return dd * (2 * wh - 1) * (2 * ww - 1) + dh * (2 * ww - 1) + dw


def shift_regions(padded: Size3, window: Size3, shift: Size3, device=None) -> torch.Tensor:
    """Region label of every token of every window of a shifted stage (tokens of different regions must
    not attend to each other).

    Along each axis positions [0, P) fall into bands [0, P-w), [P-w, P-s), [P-s, P) (one band when
    the shift is 0); a token's label is its band triple d*9 + h*3 + w. Tokens are then partitioned like
    the map (`window_partition` order).

    Returns:
        int32 (num_windows, N), N = window volume.
    """

    def bands(size: int, win: int, sh: int) -> torch.Tensor:
        pos = torch.arange(size, device=device)
        if sh == 0:
            return torch.zeros_like(pos)
        return (pos >= size - win).long() + (pos >= size - sh).long()

    d, h, w = (bands(p, win, sh) for p, win, sh in zip(padded, window, shift))
    region = d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]  # (D, H, W)
    return window_partition(region[None, ..., None], window).squeeze(-1).to(torch.int32)  # (num_windows, N)


def build_shift_mask(padded: Size3, window: Size3, shift: Size3, dtype=torch.float32, device=None) -> torch.Tensor:
    """Additive mask of a shifted-window stage: 0 within a region, -100 across regions (`shift_regions`).

    Returns:
        (num_windows, N, N) in `dtype`, N = window volume.
    """
    region = shift_regions(padded, window, shift, device)  # (num_windows, N)
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill_(different, MASK_VALUE)


@dataclass(frozen=True)
class WindowPlan:
    """How a stage cuts a feature map of one size into windows (built once per size, dtype, device).

    Attributes:
        window: effective window (d, h, w) after the clipping rule.
        shift: effective shift of the shifted blocks (all zero if nothing is shifted).
        padded: map size after end-padding to multiples of the window.
        shift_mask: (nW, N, N) additive region mask for the shifted blocks, or None.
        shifted_order: (L,) int64, L = prod(padded): for each token in window order (windows
            row-major, tokens row-major inside) its flat index in the padded, UNROLLED map. One
            gather replaces roll + partition; None if nothing is shifted.
        shifted_inverse: (L,) the inverse permutation (merge windows and roll back in one gather).
    """

    window: Size3
    shift: Size3
    padded: Size3
    shift_mask: torch.Tensor | None = None
    shifted_order: torch.Tensor | None = None
    shifted_inverse: torch.Tensor | None = None


def make_window_plan(size: Size3, window: Size3, dtype, device) -> WindowPlan:
    """The `WindowPlan` of a stage with configured `window` for a map of `size` (d, h, w)."""
    win, shift = effective_window(size, window, tuple(w // 2 for w in window))
    padded = tuple(math.ceil(s / w) * w for s, w in zip(size, win))
    if not any(shift):
        return WindowPlan(win, shift, padded)
    flat = torch.arange(math.prod(padded), device=device).view(padded)
    # Rolling by -shift puts the token from (q + shift) mod P at q; then partition like the tokens.
    rolled = torch.roll(flat, shifts=tuple(-s for s in shift), dims=(0, 1, 2))
    order = window_partition(rolled[None, ..., None], win).reshape(-1)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=device))  # argsort of a permutation
    return WindowPlan(win, shift, padded, build_shift_mask(padded, win, shift, dtype, device), order, inverse)




# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    shift_mask: torch.Tensor | None,
    scale: float,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """The official formula written out: softmax(q k^T * scale + bias + shift mask) v.

    The reference for tests and the traced path (the compiler fuses the adds into the softmax; no
    (nW*heads, N, N) mask is ever materialised).

    Args:
        q, k, v: (B*nW, heads, N, head_dim).
        bias: (heads, N, N) relative-position bias.
        shift_mask: (nW, N, N) additive region mask of a shifted block, or None.
        scale: multiplies q first, as upstream.
        dropout_p: attention dropout (pass 0 in eval).

    Returns:
        (B*nW, heads, N, head_dim).
    """
    attn = (q * scale) @ k.transpose(-2, -1)  # (B*nW, heads, N, N)
    attn = attn + bias.to(attn.dtype)[None]
    if shift_mask is not None:
        num_windows = shift_mask.shape[0]
        # (B, nW, heads, N, N) + (1, nW, 1, N, N)
        attn = attn.view(-1, num_windows, *attn.shape[1:]) + shift_mask.to(attn.dtype)[None, :, None]
        attn = attn.flatten(0, 1)
    attn = attn.softmax(dim=-1)
    if dropout_p:
        attn = F.dropout(attn, dropout_p)
    return attn @ v


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with a learned relative-position bias.

    `use_reference=True` switches to `explicit_attention` with bias and mask rebuilt every call (the
    path `torch.compile` and `torch.export` always take), for tests and benchmarks.
    """

    def __init__(self, dim: int, window: Size3, num_heads: int, qkv_bias: bool, qk_scale, attn_drop, proj_drop):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5  # `or` as upstream: qk_scale=0 means the default
        wd, wh, ww = window
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads)
        )
        # Persistent so checkpoints carry the official keys; clipped windows use its top-left block.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.use_reference = False
        # Eager inference only: (N, shift key, dtype, device, table version) -> combined mask.
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None, shift_key=None) -> torch.Tensor:
        """Attention within each window.

        Args:
            x: (B*nW, N, C) windows of N tokens.
            shift_mask: (nW, N, N) additive region mask of a shifted block, or None.
            shift_key: hashable description of `shift_mask` (the padded size) for the mask cache.

        Returns:
            (B*nW, N, C).
        """
        num_windows_total, num_tokens, c = x.shape
        heads = self.num_heads
        qkv = kernels.linear(self.qkv, x).view(num_windows_total, num_tokens, 3, heads, c // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B*nW, heads, N, head_dim)
        dropout = self.attn_drop if self.training else 0.0
        if self.use_reference or tracing():
            out = explicit_attention(q, k, v, self.relative_position_bias(num_tokens), shift_mask, self.scale, dropout)
            out = out.transpose(1, 2).reshape(num_windows_total, num_tokens, c)  # heads concatenated
        else:
            mask = self.combined_mask(num_tokens, shift_mask, shift_key, q.dtype)
            out = kernels.window_attention(q, k, v, mask, self.scale, dropout)  # (B*nW, N, C)
        return self.proj_drop(kernels.linear(self.proj, out))

    def relative_position_bias(self, num_tokens: int) -> torch.Tensor:
        """(num_heads, N, N) bias for a window of N tokens (the top-left N x N of the full index).

        While tracing, the index is computed in the graph from the window (it always equals the
        buffer, which is kept only for the official checkpoint keys): an exported file then stores
        no int64 N x N index per block (15 MB for Swin-T).
        """
        full = relative_position_index(self.window, self.relative_position_index.device) if tracing() else self.relative_position_index
        index = full[:num_tokens, :num_tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].view(num_tokens, num_tokens, -1)
        return bias.permute(2, 0, 1)

    def combined_mask(self, num_tokens: int, shift_mask: torch.Tensor | None, shift_key, dtype) -> torch.Tensor:
        """Bias plus shift mask as one additive mask: (1, nW*nH, N, N) if shifted, else (1, nH, N, N).

        4D with a leading 1 (broadcast over the batch) so the fused SDPA kernels accept it. Cached in
        eager inference, keyed on the table's version counter (every in-place change: optimizer step,
        `load_state_dict`, `copy_`) and dropped by `.to()`/`.half()`/`.cuda()` (`_apply`); while
        training it is rebuilt each call so the gradient reaches the table.
        """
        table = self.relative_position_bias_table
        if torch.is_grad_enabled() and table.requires_grad:
            return self._build_mask(num_tokens, shift_mask, dtype)
        key = (num_tokens, shift_key, dtype, table.device, _version(table))
        mask = self._mask_cache.get(key)
        if mask is None:
            if len(self._mask_cache) >= MAX_CACHED_SIZES:
                self._mask_cache.clear()
            # A normal tensor even under inference_mode, so later (training) passes may use it.
            with torch.inference_mode(False), torch.no_grad():
                mask = self._mask_cache[key] = self._build_mask(num_tokens, shift_mask, dtype)
        return mask

    def _build_mask(self, num_tokens: int, shift_mask: torch.Tensor | None, dtype) -> torch.Tensor:
        mask = self.relative_position_bias(num_tokens).to(dtype)[None]  # (1, nH, N, N)
        if shift_mask is not None:
            # (1, nH, N, N) + (nW, 1, N, N) -> (1, nW*nH, N, N), window-major like the query layout
            mask = (mask + shift_mask.to(dtype)[:, None]).flatten(0, 1)[None]
        return kernels.aligned_rows(mask) if mask.is_cuda else mask.contiguous()

    def _apply(self, fn, recurse=True):
        # .to(), .double(), .cuda() may change the table without touching its version counter.
        self._mask_cache.clear()
        return super()._apply(fn, recurse)


def _version(t: torch.Tensor) -> int:
    """The in-place version counter; inference tensors have none (they cannot change outside
    inference_mode, and the `_apply` hook covers conversions)."""
    try:
        return t._version
    except RuntimeError:
        return -1
