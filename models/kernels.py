"""Compute kernels behind the network: one dispatch for window attention, one for linear layers.

The network (`models.attention`, `models.layers`) calls only `window_attention` and `linear`; which
implementation runs is decided here, from the tensors and from what the CPU can do:

| path | when | why |
|---|---|---|
| `chunked_attention` | CPU, bf16, no gradients, no dropout | PyTorch's fused CPU attention runs at a quarter of the matmul rate at these shapes |
| oneDNN linear (`_linear_pointwise`) | CPU, bf16, no gradients, and `cpu_has_native_bf16()` | bias and GELU fused into the matmul |
| `F.scaled_dot_product_attention`, `nn.Linear` | everything else (fp32/fp64, CUDA, training, tracing) | |

CUDA fast path: `window_attention` is the one place a CUDA-specific kernel (FlexAttention in
`models/flex.py`) plugs in; see the marked branch. Under `torch.compile` / `torch.export` the network
does not call these kernels for attention (it writes the formula out so the compiler sees and fuses
it; `models.attention.explicit_attention`) and `linear` is the plain module.

Capability checks ask PyTorch what the path itself needs (`torch.backends.mkldnn`,
`torch.ops.mkldnn._is_mkldnn_bf16_supported()`), never the machine name, so tests and `--precision
auto` agree with the code on x86-64 with or without AVX512_BF16/AMX and on aarch64.
"""

from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F
from torch import nn

# Score elements (window x head rows of N x N) computed at once by `chunked_attention`: about 3.7 MB
# of bf16, which stays in cache between the matmul, the softmax and the second matmul.
CHUNK_SCORES = 12 * 392 * 392


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively through oneDNN (AVX512_BF16/AMX on x86, bf16 on Arm).

    This is the check the fast CPU bf16 path makes. Where it is False, bf16 on the CPU is emulated and
    far slower than fp32 (docs/benchmarks.md), so `--precision auto` should pick fp32 there. oneDNN
    alone is not asked on x86: it reports bf16 on any AVX-512 CPU, where it emulates it.
    """
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
    except (AttributeError, RuntimeError):
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True  # Arm: oneDNN reports bf16 only where the CPU has the bf16 instructions
    return x86_has_bf16_instructions()


def x86_has_bf16_instructions() -> bool:
    """AVX512_BF16 or AMX, as PyTorch's CPU feature probe (cpuinfo) sees them."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


@functools.cache
def onednn_linear_available() -> bool:
    """oneDNN's fused linear op exists in this build and the CPU runs it in bf16 natively."""
    return cpu_has_native_bf16() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def cpu_bf16_inference(x: torch.Tensor) -> bool:
    """Whether `x` takes the CPU bf16 inference paths (eager, CPU, bf16, no gradients)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.bfloat16
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    )


class _OneDNNState:
    """Set to False after oneDNN refuses a call (a build or CPU that reports bf16 yet fails)."""

    usable = True


def linear(layer: nn.Linear, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """`layer(x)`, then exact GELU if asked.

    On the CPU in bf16 without gradients (and where `onednn_linear_available()`), one oneDNN call with
    bias and GELU fused: it saves the pass that `addmm` spends copying the bias into its output and the
    separate GELU pass; GELU is applied to the fp32 accumulator before rounding (within one bf16 step
    of the plain path). Everywhere else the plain module and `F.gelu`.

    Args:
        layer: the linear layer (its weight and bias are used as they are).
        x: (..., in_features).

    Returns:
        (..., out_features) in x's dtype.
    """
    w = layer.weight
    if _OneDNNState.usable and w.dtype == torch.bfloat16 and cpu_bf16_inference(x) and onednn_linear_available():
        flat = x.reshape(-1, x.shape[-1])
        try:
            out = torch.ops.mkldnn._linear_pointwise(flat, w, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
            return out.view(*x.shape[:-1], w.shape[0])
        except RuntimeError:  # the op refuses after all: plain modules from now on
            _OneDNNState.usable = False
    out = layer(x)
    return F.gelu(out) if gelu else out


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float, dropout_p: float = 0.0
) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v for windows, on the fastest path for these tensors.

    Args:
        q, k, v: (B*nW, heads, N, head_dim), any strides (views of the qkv projection).
        mask: (1, G, N, N) additive mask (relative-position bias, plus the shift mask in a shifted
            block): G = heads, or nW*heads for a shifted block, window-major (row r of the flattened
            (B*nW*heads) rows uses mask row r % G).
        scale: multiplies q before the product (as upstream).
        dropout_p: attention dropout (training only).

    Returns:
        (B*nW, N, heads*head_dim): heads concatenated (head-major), ready for the output projection.
    """
    windows_total, heads, n, head_dim = q.shape
    if dropout_p == 0.0 and cpu_bf16_inference(q):
        out = chunked_attention(q, k, v, mask, scale)  # (B*nW, heads, N, head_dim)
        return out.transpose(1, 2).reshape(windows_total, n, heads * head_dim)
    # CUDA fast path: a CUDA-specific kernel (FlexAttention, models/flex.py) is called here, e.g.
    #     if q.is_cuda and <it supports the call>: return flex.window_attention(q, k, v, mask, scale, dropout_p)
    # Everything else: SDPA, with the windows of one sample grouped so a (nW*heads, N, N) mask
    # broadcasts over the batch.
    g = mask.shape[1]
    if g != heads:
        q, k, v = (t.reshape(-1, g, n, head_dim) for t in (q, k, v))  # (B, nW*heads, N, head_dim)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    # (X, windows*heads, N, head_dim) -> (X, windows, N, heads, head_dim) -> (B*nW, N, C); reshape,
    # not view: the fused kernels may return a transposed memory layout.
    return out.unflatten(1, (-1, heads)).transpose(2, 3).reshape(windows_total, n, heads * head_dim)


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, a few (window, head) rows at a time; no autograd.

    The CPU path for bf16 inference. PyTorch's fused CPU attention kernel runs at about a quarter of
    the matmul rate at these shapes (head_dim 32, N = 392); explicit matmuls plus an in-place softmax
    on cache-sized chunks keep the scores in cache and run at the matmul rate (docs/benchmarks.md).
    Same formula as SDPA.

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
    want = max(1, CHUNK_SCORES // (n * n))
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


def aligned_rows(mask: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """The same values with a row stride that is a multiple of `multiple` elements.

    The memory-efficient CUDA attention kernel wants 16-aligned mask rows and otherwise pads the mask
    on every call; padding it once (and returning a view) keeps a cached mask usable as is.
    """
    n = mask.shape[-1]
    if n % multiple == 0:
        return mask
    padded = mask.new_zeros(*mask.shape[:-1], -(-n // multiple) * multiple)
    return padded[..., :n].copy_(mask)
