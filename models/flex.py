"""Window attention through PyTorch's FlexAttention, for the CUDA path of `WindowAttention3D`.

Same formula as the official Video Swin attention (SwinTransformer/Video-Swin-Transformer @ db018fb,
`mmaction/models/backbones/swin_transformer.py`, Apache-2.0):

    softmax(q k^T * scale + table[relative_position_index] + shift_mask) v

but with nothing of size (windows x heads, N, N) read per block. The SDPA path sums the bias and the
shift mask into one dense additive mask (swin-b at 32x224x224, a shifted stage-1 block: 128 windows x
4 heads x 392^2 = 79 M values, 157 MB in bf16) that the kernel then streams from memory every call. Here a `score_mod`
looks the bias up from the (tiny) table by the (N, N) index, and adds -100 where query and key come
from different regions of a shifted window, from per-token region labels (num_windows, N). Both are
computed inside the fused kernel that `torch.compile` generates for `flex_attention`.

Each window is one "batch" row of `flex_attention` ((B * nW, heads, N, head_dim), the layout the
model already has after the qkv projection), so a row `b` belongs to window `b % num_windows`.

Availability: `torch.nn.attention.flex_attention` exists from PyTorch 2.5; the fused kernel needs
`torch.compile` (Triton on CUDA). Without it, `FLEX_AVAILABLE` is False and `flex_window_attention`
raises `FlexUnavailableError`: keep the SDPA path as the fallback (old PyTorch, CPU). On the CPU the
eager `flex_attention` runs (unfused, slowly) so the tests can prove the formula there.

How `WindowAttention3D.forward` should call it on CUDA (the wiring lives in models/swin3d.py):

    q, k, v = qkv.unbind(0)                          # each (B*nW, heads, N, head_dim), as today
    if use_flex(q) and (self.attn_drop == 0.0 or not self.training):
        out = flex_window_attention(
            q, k, v, self.relative_position_bias_table, self.relative_position_index, self.scale,
            regions=plan_regions,                    # (nW, N) int from `shift_regions`, or None
        )                                            # (B*nW, heads, N, head_dim)
    else:
        ...                                          # the SDPA / chunked path as today

where `plan_regions = shift_regions(plan.padded, plan.window, plan.shift, device)` is built once per
`WindowPlan` next to `shift_mask` (or derived from it once with `regions_from_shift_mask`), and is
None for unshifted blocks. `window_attention_forward(module, x, shift_mask)` below is that wiring
written out for one module (the tests run the real model through it).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from models.attention import shift_regions  # noqa: F401  (re-exported: the labels flex_window_attention takes)

try:  # PyTorch >= 2.5
    from torch.nn.attention.flex_attention import flex_attention as _flex_attention

    FLEX_AVAILABLE = True
except ImportError:  # pragma: no cover - old PyTorch
    _flex_attention = None
    FLEX_AVAILABLE = False

# The official mask value for pairs from different regions of a shifted window (models/swin3d.py).
MASK_VALUE = -100.0
_compiled_flex = None


class FlexUnavailableError(RuntimeError):
    """`torch.nn.attention.flex_attention` is missing (PyTorch < 2.5): use the SDPA path."""


# The fused (Triton) flex kernel wants head_dim >= 16; the released models have 32.
MIN_HEAD_DIM = 16


def use_flex(q: torch.Tensor) -> bool:
    """Whether the flex path should run for queries `q` (..., N, head_dim): flex_attention exists, `q`
    is on CUDA and head_dim >= 16.

    On the CPU the eager flex_attention materialises the scores and is slower than the existing
    chunked/SDPA paths, so it is only for tests there; tiny test configs (head_dim < 16) keep SDPA.
    """
    return FLEX_AVAILABLE and q.is_cuda and q.shape[-1] >= MIN_HEAD_DIM


def _flex_fn(compiled: bool):
    """The eager or the compiled `flex_attention` (compiled once per process, lazily)."""
    global _compiled_flex
    if not compiled:
        return _flex_attention
    if _compiled_flex is None:
        import torch._dynamo

        # Each stage (heads, windows, N) and shifted/unshifted block is its own specialisation;
        # swin-b at two input sizes needs ~16, above dynamo's default limit of 8 recompiles.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))
        _compiled_flex = torch.compile(_flex_attention, dynamic=False)
    return _compiled_flex


def regions_from_shift_mask(shift_mask: torch.Tensor) -> torch.Tensor:
    """Region labels equivalent to a dense (num_windows, N, N) shift mask (0 / -100).

    Label of token j = the first token of its window in the same region. Build once per plan (it
    reads the dense mask), not per block.

    Returns:
        int32 (num_windows, N).
    """
    same = shift_mask == 0  # (nW, N, N): reflexive, symmetric, transitive within a window
    return same.to(torch.uint8).argmax(dim=-1).to(torch.int32)


def flex_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias_table: torch.Tensor,
    relative_position_index: torch.Tensor,
    scale: float,
    regions: torch.Tensor | None = None,
    compiled: bool | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias + shift mask) v within windows, bias and mask computed in the kernel.

    Args:
        q, k, v: (B * nW, heads, N, head_dim), windows of one sample consecutive (the model's layout
            after the qkv projection; any strides).
        bias_table: ((2wd-1)(2wh-1)(2ww-1), heads) relative-position bias table of the module.
        relative_position_index: int64 (M, M) index of the module's full window, M >= N; a clipped
            window uses its top-left (N, N) block, as `WindowAttention3D.relative_position_bias` does.
        scale: the module's `scale` (head_dim ** -0.5 unless qk_scale is set).
        regions: int (nW, N) region labels of a shifted block (`shift_regions`), or None when the
            block is not shifted. B * nW must be a multiple of nW.
        compiled: run the `torch.compile`d flex_attention (the fused kernel). Default: on CUDA, unless
            already inside a compiled region (then flex_attention is compiled with the caller).

    Returns:
        (B * nW, heads, N, head_dim) in q's dtype.

    Raises:
        FlexUnavailableError: this PyTorch has no flex_attention.
    """
    if not FLEX_AVAILABLE:
        raise FlexUnavailableError("torch.nn.attention.flex_attention needs PyTorch >= 2.5; use the SDPA path")
    rows, heads, n, _ = q.shape
    index = relative_position_index[:n, :n]  # (N, N)
    # In q's dtype, as the SDPA path's combined mask: the same rounding of the bias in bf16.
    table = bias_table.to(q.dtype)
    if regions is None:

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + table[index[q_idx, kv_idx], h]

    else:
        num_windows = regions.shape[0]
        if regions.shape[1] != n or rows % num_windows:
            raise ValueError(f"regions {tuple(regions.shape)} do not fit {rows} windows of {n} tokens")
        mask_value = torch.tensor(MASK_VALUE, dtype=q.dtype, device=q.device)
        zero = torch.zeros((), dtype=q.dtype, device=q.device)

        def score_mod(score, b, h, q_idx, kv_idx):
            w = b % num_windows
            same = regions[w, q_idx] == regions[w, kv_idx]
            return score + table[index[q_idx, kv_idx], h] + torch.where(same, zero, mask_value)

    if compiled is None:
        compiled = q.is_cuda and not torch.compiler.is_compiling()
    fn = _flex_fn(compiled)
    if compiled or q.is_cuda:
        return fn(q, k, v, score_mod=score_mod, scale=scale)
    with warnings.catch_warnings():  # eager on purpose (CPU tests): the "unfused implementation" notice
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return fn(q, k, v, score_mod=score_mod, scale=scale)


def window_attention_forward(module, x: torch.Tensor, shift_mask: torch.Tensor | None,
                             regions: torch.Tensor | None = None, compiled: bool | None = None) -> torch.Tensor:
    """`WindowAttention3D.forward` (inference) with the attention through `flex_window_attention`.

    The wiring written out for one module: qkv projection, flex attention, heads merged, output
    projection. For tests, benchmarks and as the model for the code in `WindowAttention3D`.

    Args:
        module: a `models.swin3d.WindowAttention3D`.
        x: (B * nW, N, C) windows of N tokens.
        shift_mask: (nW, N, N) dense shift mask of a shifted block, or None; only used to derive the
            region labels when `regions` is not given (once per mask object, kept on the module).
        regions: (nW, N) region labels (`shift_regions`), or None.

    Returns:
        (B * nW, N, C).
    """
    rows, n, c = x.shape
    heads = module.num_heads
    if regions is None and shift_mask is not None:
        # Derived once per plan mask: the plan's tensor is cached per input size, so identity is the key
        # (the module holds a reference, so the object cannot be recycled under the same id).
        cached = getattr(module, "_flex_regions", None)
        if cached is None or cached[0] is not shift_mask:
            cached = module._flex_regions = (shift_mask, regions_from_shift_mask(shift_mask))
        regions = cached[1]
    qkv = F.linear(x, module.qkv.weight, module.qkv.bias).view(rows, n, 3, heads, c // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, heads, N, head_dim)
    out = flex_window_attention(q, k, v, module.relative_position_bias_table, module.relative_position_index,
                                module.scale, regions=regions, compiled=compiled)
    out = out.transpose(1, 2).reshape(rows, n, c)  # (B*nW, N, heads, head_dim) -> (B*nW, N, C)
    return F.linear(out, module.proj.weight, module.proj.bias)
