"""Video Swin Transformer (Liu et al., 2021, arXiv 2106.13230) with an I3D-style classification head.

Numerically the authors' network (SwinTransformer/Video-Swin-Transformer @ db018fb,
`mmaction/models/backbones/swin_transformer.py`, Apache-2.0), quirks included; see
`../shared/spec/model.md`. Module names follow the official checkpoint keys without the `backbone.`
prefix (and `cls_head.fc_cls` -> `head`), so converting a released file is a short key map.

Tokens are channels-last `(N, D, H, W, C)` inside the network. Window attention runs through
`F.scaled_dot_product_attention` with the relative-position bias and the shift mask summed into one
additive mask; that mask is cached per block for a given input size, device and dtype. Each stage
caches a `WindowPlan` per input size (effective window and shift, region mask, and the token order
that does roll + window partition in a single gather).

On the CPU in bf16 without gradients, attention runs as explicit matmuls over cache-sized chunks of
windows (`chunked_attention`) and the linear layers through oneDNN with bias and GELU fused
(`cpu_linear`): PyTorch's fused CPU attention kernel is slow at these shapes (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.config import Swin3DConfig, config_from_dict

Size3 = tuple[int, int, int]

# The official mask value for token pairs from different regions of a shifted window.
MASK_VALUE = -100.0
# Input sizes whose window plans and masks are kept per stage/block; more sizes reset the cache.
# (A combined mask is nW*heads*N*N elements: for swin-b at 32x224x224 in fp32 all blocks together
# hold about 1.3 GB; `VideoSwin.clear_caches()` frees them.)
_MAX_CACHED_MASKS = 2


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


def relative_position_index(window: Size3) -> torch.Tensor:
    """Index into the relative-position bias table for every (query, key) pair of a window.

    Returns:
        int64 (N, N), N = wd*wh*ww: (dd+wd-1)(2wh-1)(2ww-1) + (dh+wh-1)(2ww-1) + (dw+ww-1), with
        d* = coordinate of the query minus that of the key.
    """
    wd, wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)  # (3, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3)
    rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1])
    return rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]


def build_shift_mask(padded: Size3, window: Size3, shift: Size3, dtype=torch.float32, device=None) -> torch.Tensor:
    """Additive mask of a shifted-window stage: 0 within a region, -100 across regions.

    Along each axis positions [0, P) fall into bands [0, P-w), [P-w, P-s), [P-s, P) (one band when
    the shift is 0); a token's region is its band triple. Tokens are then partitioned like the map.

    Returns:
        (num_windows, N, N) in `dtype`, N = window volume.
    """

    def bands(size: int, win: int, sh: int) -> torch.Tensor:
        pos = torch.arange(size, device=device)
        if sh == 0:
            return torch.zeros_like(pos)
        return (pos >= size - win).long() + (pos >= size - sh).long()

    d, h, w = (bands(p, win, sh) for p, win, sh in zip(padded, window, shift))
    region = d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]  # (D, H, W)
    region = window_partition(region[None, ..., None], window).squeeze(-1)  # (num_windows, N)
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill_(different, MASK_VALUE)


def aligned_rows(mask: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """The same values with a row stride that is a multiple of `multiple` elements.

    The memory-efficient CUDA attention kernel wants 16-aligned mask rows and otherwise pads the mask
    on every call; padding it once here (and returning a view) keeps the cached mask usable as is.
    """
    n = mask.shape[-1]
    if n % multiple == 0:
        return mask
    padded = mask.new_zeros(*mask.shape[:-1], -(-n // multiple) * multiple)
    return padded[..., :n].copy_(mask)


def cpu_bf16_inference(x: torch.Tensor) -> bool:
    """Whether `x` takes the CPU bf16 inference paths (`chunked_attention`, `cpu_linear`)."""
    return x.device.type == "cpu" and x.dtype == torch.bfloat16 and not torch.is_grad_enabled()


# Score elements (window x head rows of N x N) computed at once by `chunked_attention`: about 3.7 MB
# of bf16, which stays in cache between the matmul, the softmax and the second matmul.
_CHUNK_SCORES = 12 * 392 * 392


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, a few (window, head) rows at a time; no autograd.

    The CPU path for bf16 inference. PyTorch's fused CPU attention kernel runs at about a quarter of
    the matmul rate at these shapes (head_dim 32, N = 392); explicit matmuls plus an in-place softmax
    on cache-sized chunks are about 1.4x faster (docs/benchmarks.md). Same formula as SDPA.

    Args:
        q, k, v: (B, heads, N, head_dim), any strides.
        mask: (1, G, N, N) additive mask where G is heads, or nW*heads for a shifted block
            (row r of the flattened (B*heads) rows uses mask row r % G).

    Returns:
        (B, heads, N, head_dim), contiguous.
    """
    b, heads, n, head_dim = q.shape
    rows = b * heads
    q_scaled = q.new_empty(b, heads, n, head_dim)
    torch.mul(q, scale, out=q_scaled)  # scale first, as upstream; also the one copy of q
    q_rows = q_scaled.view(rows, n, head_dim)
    k_rows, v_rows = k.reshape(rows, n, head_dim), v.reshape(rows, n, head_dim)
    g = mask.shape[1]
    mask = mask.reshape(g, n, n)
    # Each chunk of `step` rows must meet the mask at one phase: `step` divides G, or is a multiple
    # of G with the mask repeated to match.
    want = max(1, _CHUNK_SCORES // (n * n))
    if g >= want:
        step = max(d for d in range(1, want + 1) if g % d == 0)
    else:
        step = g * (want // g)
        mask = mask.repeat(step // g, 1, 1)
    out = q.new_empty(rows, n, head_dim)
    scores = q.new_empty(min(step, rows), n, n)
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        phase = start % g
        chunk = scores[: stop - start]
        k_t = k_rows[start:stop].transpose(1, 2)
        torch.baddbmm(mask[phase : phase + stop - start], q_rows[start:stop], k_t, out=chunk)
        torch.softmax(chunk, -1, out=chunk)
        torch.bmm(chunk, v_rows[start:stop], out=out[start:stop])
    return out.view(b, heads, n, head_dim)


def _has_onednn_linear() -> bool:
    """oneDNN's fused linear op exists and this CPU runs oneDNN in bf16 (AVX-512 or newer on x86)."""
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        )
    except (AttributeError, RuntimeError):
        return False


_ONEDNN_LINEAR = _has_onednn_linear()


def cpu_linear(layer: nn.Linear, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """`layer(x)`, then exact GELU if asked: one oneDNN call (bias and GELU fused) for CPU bf16
    inference, the plain modules otherwise.

    Saves the pass that `addmm` spends copying the bias into its output and the separate GELU pass;
    GELU is applied to the fp32 accumulator before rounding (within one bf16 step of the plain path).
    """
    global _ONEDNN_LINEAR
    w = layer.weight
    if _ONEDNN_LINEAR and cpu_bf16_inference(x) and w.dtype == torch.bfloat16:
        flat = x.reshape(-1, x.shape[-1])
        try:
            out = torch.ops.mkldnn._linear_pointwise(flat, w, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
            return out.view(*x.shape[:-1], w.shape[0])
        except RuntimeError:  # an oneDNN build or CPU that refuses it after all: plain modules from now on
            _ONEDNN_LINEAR = False
    out = layer(x)
    return F.gelu(out) if gelu else out


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole samples of a residual branch with probability p, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


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
        self.fc1 = nn.Linear(dim, hidden)  # GELU is applied inside `cpu_linear`
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(cpu_linear(self.fc2, self.drop(cpu_linear(self.fc1, x, gelu=True))))


class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows with a learned relative-position bias.

    `use_reference=True` switches to the official formula written out (softmax(q k^T * scale + bias
    + mask) v, bias and mask rebuilt every call), for tests and benchmarks.
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
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def relative_position_bias(self, num_tokens: int) -> torch.Tensor:
        """(num_heads, N, N) bias for a window of N tokens (the top-left N x N of the full index)."""
        index = self.relative_position_index[:num_tokens, :num_tokens].reshape(-1)
        bias = self.relative_position_bias_table[index].view(num_tokens, num_tokens, -1)
        return bias.permute(2, 0, 1)

    def combined_mask(self, num_tokens: int, shift_mask: torch.Tensor | None, shift_key, dtype) -> torch.Tensor:
        """Bias plus shift mask as one additive mask: (1, nW*nH, N, N) if shifted, else (1, nH, N, N).

        4D with a leading 1 (broadcast over the batch) so the fused SDPA kernels accept it.

        Cached while the bias table is unchanged and no gradient is wanted; while training it is
        rebuilt each call so the gradient reaches the table.
        """
        table = self.relative_position_bias_table
        if torch.is_grad_enabled() and table.requires_grad:
            return self._build_mask(num_tokens, shift_mask, dtype)
        # `_version` grows with every in-place change (optimizer step, load_state_dict).
        key = (num_tokens, shift_key, dtype, table.device, table.data_ptr(), table._version)
        mask = self._mask_cache.get(key)
        if mask is None:
            if len(self._mask_cache) >= _MAX_CACHED_MASKS:
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
        return aligned_rows(mask) if mask.is_cuda else mask.contiguous()

    def forward(self, x: torch.Tensor, shift_mask: torch.Tensor | None, shift_key=None) -> torch.Tensor:
        """Attention within each window.

        Args:
            x: (N*nW, L, C) windows of L tokens.
            shift_mask: (nW, L, L) additive region mask of a shifted block, or None.
            shift_key: hashable description of `shift_mask` (the padded size) for the cache.

        Returns:
            (N*nW, L, C).
        """
        num_windows_total, num_tokens, c = x.shape
        heads = self.num_heads
        qkv = cpu_linear(self.qkv, x).view(num_windows_total, num_tokens, 3, heads, c // heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, N*nW, heads, L, head_dim)
        dropout = self.attn_drop if self.training else 0.0
        if self.use_reference:
            out = self._reference_attention(qkv, shift_mask)
        else:
            mask = self.combined_mask(num_tokens, shift_mask, shift_key, qkv.dtype)
            if cpu_bf16_inference(qkv) and dropout == 0.0:
                out = chunked_attention(*qkv.unbind(0), mask, self.scale)  # (N*nW, heads, L, head_dim)
            else:
                if shift_mask is not None:
                    # Group windows per sample so the (nW*heads, L, L) mask broadcasts over the batch.
                    num_windows = shift_mask.shape[0]
                    qkv = qkv.reshape(3, num_windows_total // num_windows, num_windows * heads, num_tokens, -1)
                q, k, v = qkv.unbind(0)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=self.scale)
        # (X, windows*heads, L, head_dim) -> (X, windows, L, heads, head_dim) -> (N*nW, L, C), heads
        # concatenated; reshape, not view: fused kernels may return a transposed memory layout.
        out = out.unflatten(1, (-1, heads)).transpose(2, 3).reshape(num_windows_total, num_tokens, c)
        return self.proj_drop(cpu_linear(self.proj, out))

    def _reference_attention(self, qkv: torch.Tensor, shift_mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v = qkv.unbind(0)  # (N*nW, heads, L, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (N*nW, heads, L, L)
        attn = attn + self.relative_position_bias(q.shape[2]).to(attn.dtype)[None]
        if shift_mask is not None:
            num_windows = shift_mask.shape[0]
            attn = attn.view(-1, num_windows, *attn.shape[1:]) + shift_mask.to(attn.dtype)[None, :, None]
            attn = attn.flatten(0, 1)
        attn = attn.softmax(dim=-1)
        attn = F.dropout(attn, self.attn_drop, self.training)
        return attn @ v


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
    return WindowPlan(win, shift, padded, build_shift_mask(padded, win, shift, dtype, device), order, order.argsort())


class Block(nn.Module):
    """Swin block: x + DropPath(W-MSA(norm1(x))), then x + DropPath(MLP(norm2(x)))."""

    def __init__(self, dim, num_heads, window: Size3, shifted: bool, cfg: Swin3DConfig, drop_path_p: float):
        super().__init__()
        self.shifted = shifted  # odd blocks; the plan may still clip the shift to zero
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(
            dim, window, num_heads, cfg.qkv_bias, cfg.qk_scale, cfg.attn_drop_rate, cfg.drop_rate
        )
        self.drop_path_p = drop_path_p
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)

    def forward(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        """(N, D, H, W, C) -> same."""
        x = x + drop_path(self._attention_part(x, plan), self.drop_path_p, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_p, self.training)

    def _attention_part(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        n, d, h, w, c = x.shape
        x = self.norm1(x)
        # Pad after the norm, at the end: padded tokens stay zeros and act as keys (not masked).
        pad_d, pad_h, pad_w = (p - s for p, s in zip(plan.padded, (d, h, w)))
        if pad_d or pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h, 0, pad_d))
        if self.shifted and plan.shifted_order is not None:
            # roll(-shift) + partition as one gather: (N, L, C) -> (N*nW, tokens, C)
            tokens = x.reshape(n, -1, c).index_select(1, plan.shifted_order)
            windows = self.attn(tokens.view(-1, math.prod(plan.window), c), plan.shift_mask, plan.padded)
            # merge + roll(+shift) as one gather back to map order
            x = windows.view(n, -1, c).index_select(1, plan.shifted_inverse).view(n, *plan.padded, c)
        else:
            windows = self.attn(window_partition(x, plan.window), None)  # (N*nW, tokens, C)
            x = window_reverse(windows, plan.window, n, plan.padded)  # (N, D', H', W', C)
        if pad_d or pad_h or pad_w:
            x = x[:, :d, :h, :w]
        return x


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


class Stage(nn.Module):
    """`depth` blocks alternating unshifted/shifted windows, then optional patch merging."""

    def __init__(self, dim, depth, num_heads, cfg: Swin3DConfig, drop_path_ps, downsample: bool):
        super().__init__()
        self.window = cfg.window_size
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, cfg.window_size, j % 2 == 1, cfg, drop_path_ps[j]) for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None
        self.grad_checkpointing = False
        self._plans: dict[tuple, WindowPlan] = {}

    def window_plan(self, size: Size3, dtype, device) -> WindowPlan:
        """The stage's `WindowPlan` for a map size, built once per (size, dtype, device)."""
        key = (size, dtype, device)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= _MAX_CACHED_MASKS:
                self._plans.clear()
            # Normal tensors even under inference_mode, so a later training pass can use the plan.
            with torch.inference_mode(False):
                plan = self._plans[key] = make_window_plan(size, self.window, dtype, device)
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, H, W, C) -> (N, D, H', W', C') (halved H, W and doubled C after merging)."""
        plan = self.window_plan(tuple(x.shape[1:4]), x.dtype, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, plan, use_reentrant=False)
            else:
                x = block(x, plan)
        return self.downsample(x) if self.downsample is not None else x


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


class VideoSwin(nn.Module):
    """Video Swin Transformer backbone plus I3D head (average pool, dropout, linear).

    Build with `VideoSwin(**config_dict)` (keys of `config.json`; `format`, `pretrained2d`,
    `imagenet2d` ignored) or `VideoSwin.from_config(cfg)`. Maps float (N, 3, T, H, W) to logits
    (N, num_classes); any T, H, W (end-padded to the patch size; windows clip to small maps).
    """

    def __init__(self, **config):
        super().__init__()
        cfg = config_from_dict(config)
        self.config = cfg
        self.patch_embed = PatchEmbed3D(cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.patch_norm)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        total = sum(cfg.depths)
        # linspace(0, drop_path_rate, total blocks), in plain Python so the model builds on `meta` too
        rates = [cfg.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            first = sum(cfg.depths[:i])
            stage = Stage(
                cfg.embed_dim * 2**i, depth, heads, cfg, rates[first : first + depth], i < len(cfg.depths) - 1
            )
            self.layers.append(stage)
        self.norm = nn.LayerNorm(cfg.num_features)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        self.apply(_init_weights)
        for module in self.modules():
            if isinstance(module, WindowAttention3D):
                nn.init.normal_(module.relative_position_bias_table, std=0.02)
        nn.init.normal_(self.head.weight, std=0.01)  # I3DHead's init

    @classmethod
    def from_config(cls, cfg: Swin3DConfig) -> VideoSwin:
        """Build from a `Swin3DConfig`."""
        return cls(**cfg.to_dict())

    def forward_backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output after the final norm.

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, C, D, H', W') with C = config.num_features, D = ceil(T / patch_t).
        """
        if x.ndim != 5 or x.shape[1] != self.config.in_chans or not x.is_floating_point():
            raise ValueError(
                f"expected a float tensor (N, {self.config.in_chans}, T, H, W), got {x.dtype} of shape "
                f"{tuple(x.shape)} (channels come before time; normalise uint8 frames to float first)"
            )
        x = self.pos_drop(self.patch_embed(x))  # (N, D, H, W, C)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).permute(0, 4, 1, 2, 3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled embedding: final-norm output averaged over D, H, W.

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, C) with C = config.num_features (768 for swin-t/s, 1024 for swin-b).
        """
        return self.forward_backbone(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class scores (no softmax).

        Args:
            x: (N, 3, T, H, W) float.

        Returns:
            (N, num_classes).
        """
        return self.head(self.head_drop(self.forward_features(x)))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for layer in self.layers:
            layer.grad_checkpointing = enabled

    def clear_caches(self) -> None:
        """Free the cached window plans and attention masks (they are rebuilt on the next forward)."""
        for module in self.modules():
            if isinstance(module, Stage):
                module._plans.clear()
            elif isinstance(module, WindowAttention3D):
                module._mask_cache.clear()

    def set_reference_attention(self, enabled: bool = True) -> None:
        """Use the explicit official attention formula instead of SDPA (slower; for checks)."""
        for module in self.modules():
            if isinstance(module, WindowAttention3D):
                module.use_reference = enabled


def _init_weights(module: nn.Module) -> None:
    # Upstream uses trunc_normal_(std=0.02) with the default cut at +-2 (absolute), i.e. 100 standard
    # deviations: the same distribution as normal_, which is several times faster on big models.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def average_views(logits: torch.Tensor, mode: str = "prob") -> torch.Tensor:
    """Combine the scores of several views of one video, as mmaction's `average_clips` does.

    Args:
        logits: (V, K) raw scores of V views.
        mode: "prob" (softmax per view, then mean; the released configs) or "score" (mean of raw scores).

    Returns:
        (K,) averaged scores.
    """
    if mode == "prob":
        return logits.softmax(dim=-1).mean(dim=0)
    if mode == "score":
        return logits.mean(dim=0)
    raise ValueError(f"mode must be 'prob' or 'score', got {mode!r}")
