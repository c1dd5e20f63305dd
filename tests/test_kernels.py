"""The compute kernels behind the network (models/kernels.py): the attention dispatch, the CPU bf16
paths, and the capability checks they rest on.

Every test of a hardware-specific path asks the capability the code itself asks
(`kernels.cpu_has_native_bf16()` / `kernels.onednn_linear_available()`), never the machine name, and
the other side of each branch is covered by forcing the check, so the tests pass on x86-64 with or
without AVX512_BF16/AMX and on aarch64.
"""

from __future__ import annotations

import platform

import pytest
import torch
import torch.nn.functional as F

from models import kernels
from models.attention import build_shift_mask, explicit_attention
from tests.test_model import OFFICIAL, load_case, rel_err


def onednn_calls(fn) -> tuple[object, bool]:
    with torch.profiler.profile() as prof:
        out = fn()
    return out, any("_linear_pointwise" in event.name for event in prof.events())


def test_native_bf16_is_what_onednn_reports_and_on_x86_what_the_cpu_has():
    onednn = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if platform.machine().lower() in ("x86_64", "amd64"):
        # oneDNN says yes on any AVX-512 CPU (it emulates bf16 there); native needs the instructions
        instructions = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        assert kernels.x86_has_bf16_instructions() is bool(instructions)
        assert kernels.cpu_has_native_bf16() is bool(onednn and instructions)
    else:
        assert kernels.cpu_has_native_bf16() is bool(onednn)
    # The fused linear needs native bf16; it is never claimed without it.
    assert not kernels.onednn_linear_available() or kernels.cpu_has_native_bf16()


@pytest.mark.parametrize(
    "batch, heads, mask_rows",
    [
        (4, 3, 3),  # unshifted (G = heads) and G < 5: chunks of 3 rows
        (4, 2, 2),  # chunks of 4 rows, the mask repeated twice
        (5, 2, 10),  # shifted (G = nW*heads) and G >= 5: chunks of 5, a divisor of G
        (7, 1, 7),  # prime G: one row per chunk
        (6, 4, 8),  # shifted, 3 samples x 2 windows: chunks of 4
    ],
)
def test_chunked_attention_equals_sdpa(monkeypatch, batch, heads, mask_rows):
    n, head_dim = 11, 4
    monkeypatch.setattr(kernels, "CHUNK_SCORES", 5 * n * n)  # chunks of about 5 rows: many per call
    qkv = torch.randn(batch, n, 3, heads, head_dim, dtype=torch.float64).permute(2, 0, 3, 1, 4)  # strided, as in the model
    q, k, v = qkv.unbind(0)
    mask = torch.randn(1, mask_rows, n, n, dtype=torch.float64)
    ours = kernels.chunked_attention(q, k, v, mask, 0.3)
    grouped = [t.reshape(-1, mask_rows, n, head_dim) for t in (q, k, v)]  # rows r use mask row r % G
    expected = F.scaled_dot_product_attention(*grouped, attn_mask=mask, scale=0.3).reshape(batch, heads, n, head_dim)
    assert ours.is_contiguous()
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_window_attention_dispatch_equals_the_formula(shifted, dtype):
    # 2 samples x 4 windows of 2x3x3 tokens, 2 heads: the SDPA path (fp64) and the chunked CPU path
    # (bf16 without gradients) against the formula written out.
    window, heads, head_dim = (2, 3, 3), 2, 4
    n = 18
    num_windows, batch = 4, 2
    q, k, v = torch.randn(3, batch * num_windows, heads, n, head_dim, dtype=torch.float64).unbind(0)
    bias = torch.randn(heads, n, n, dtype=torch.float64)
    shift_mask = build_shift_mask((2, 6, 6), window, (1, 1, 1), torch.float64) if shifted else None
    mask = bias[None]
    if shifted:
        mask = (bias[None] + shift_mask[:, None]).flatten(0, 1)[None]  # (1, nW*heads, N, N)
    expected = explicit_attention(q, k, v, bias, shift_mask, 0.5).transpose(1, 2).reshape(batch * num_windows, n, -1)
    with torch.no_grad():
        ours = kernels.window_attention(*(t.to(dtype) for t in (q, k, v)), mask.to(dtype), 0.5)
    assert ours.shape == (batch * num_windows, n, heads * head_dim) and ours.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 3e-2
    torch.testing.assert_close(ours.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("available", [True, False])
def test_linear_takes_onednn_exactly_where_the_capability_says(monkeypatch, available):
    if available and not kernels.onednn_linear_available():
        pytest.skip("this CPU/build has no native bf16 for oneDNN (kernels.onednn_linear_available() is False)")
    monkeypatch.setattr(kernels, "onednn_linear_available", lambda: available)
    layer = torch.nn.Linear(24, 40).to(torch.bfloat16)
    x = torch.randn(2, 3, 5, 24, dtype=torch.bfloat16)
    with torch.no_grad():
        exact = F.gelu(F.linear(x.double(), layer.weight.double(), layer.bias.double()))
        fused, onednn = onednn_calls(lambda: kernels.linear(layer, x, gelu=True))
        assert onednn == available
        plain = F.gelu(layer(x))
        assert fused.shape == (2, 3, 5, 40) and fused.dtype == torch.bfloat16
        if not available:
            assert torch.equal(fused, plain)
        # Within a few bf16 steps of the exact value (the plain path rounds twice, the fused path once).
        assert (fused.double() - exact).abs().max() <= 2 * (plain.double() - exact).abs().max() + 1e-2
        torch.testing.assert_close(kernels.linear(layer, x), layer(x), rtol=1e-2, atol=1e-2)
    # With gradients wanted it is always the plain module (autograd through nn.Linear and F.gelu).
    out, onednn = onednn_calls(lambda: kernels.linear(layer.float(), x.float().requires_grad_(), gelu=True))
    assert out.grad_fn is not None and not onednn


def test_linear_falls_back_when_onednn_refuses(monkeypatch):
    def refuse(*args):
        raise RuntimeError("mkldnn_linear: bf16 path needs the cpu support avx512bw, avx512vl and avx512dq")

    monkeypatch.setattr(kernels, "onednn_linear_available", lambda: True)
    monkeypatch.setattr(kernels._OneDNNState, "usable", True)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", refuse)
    layer = torch.nn.Linear(8, 4).to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(kernels.linear(layer, x, gelu=True), F.gelu(layer(x)))
    assert kernels._OneDNNState.usable is False  # asked once, then the plain modules


@pytest.mark.parametrize("case", OFFICIAL[:2])
def test_bf16_cpu_inference_path_is_used_and_matches_the_official_logits(monkeypatch, case):
    # The chunked attention is plain matmuls: it runs on every CPU (emulated bf16 is slow, not wrong).
    model, x, folder = load_case(case, torch.bfloat16)
    golden = torch.load(folder / "logits.pt", weights_only=True)
    calls = []
    original = kernels.chunked_attention
    monkeypatch.setattr(kernels, "chunked_attention", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        fast = model(x)
    assert len(calls) == sum(model.config.depths)  # every block took the chunked path
    with torch.enable_grad():
        plain = model(x).detach()  # SDPA and nn.Linear
    assert len(calls) == sum(model.config.depths)
    # bf16 carries about 3 significant digits; both paths land within the same distance of the
    # float64 golden logits (measured 0.6% and 1.4% of the largest logit).
    assert rel_err(fast, golden) <= 0.03 and rel_err(plain, golden) <= 0.03
    assert rel_err(fast, plain.double()) <= 0.03


def test_no_mutable_state_in_the_network_modules():
    # The network modules keep no module-level mutable state (flags, caches): caches live on module
    # instances, and the CPU kernels' one flag lives in models/kernels.py.
    import inspect

    from models import attention, layers, swin3d

    for module in (attention, layers, swin3d):
        assert "global " not in inspect.getsource(module), module.__name__
        mutable = [n for n, v in vars(module).items() if isinstance(v, (dict, list, set, bytearray, torch.Tensor))]
        assert [n for n in mutable if not n.startswith("__")] == [], module.__name__
    assert "cpu_linear" not in vars(swin3d) and "chunked_attention" not in vars(swin3d)
