"""FlexAttention window attention (models/flex.py) against the explicit official formula, on the CPU.

flex_attention runs eagerly on the CPU (unfused), so these prove the score_mod (bias looked up from
the table, shift regions from per-token labels) on small shapes; the fused kernel is the same
score_mod compiled, checked on CUDA by tests/test_cuda.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from models import VideoSwin, flex, load_checkpoint, swin3d
from models.flex import (
    FlexUnavailableError,
    flex_window_attention,
    regions_from_shift_mask,
    shift_regions,
    use_flex,
    window_attention_forward,
)
from models.attention import build_shift_mask, relative_position_index, window_partition
from tests.conftest import shared_path

pytestmark = pytest.mark.skipif(not flex.FLEX_AVAILABLE, reason="this PyTorch has no flex_attention")

TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=5, drop_path_rate=0.0)


def reference_attention(q, k, v, table, index, scale, shift_mask=None):
    """softmax(q k^T * scale + table[index] + shift_mask) v written out: the official formula."""
    n = q.shape[2]
    bias = table[index[:n, :n].reshape(-1)].view(n, n, -1).permute(2, 0, 1)  # (heads, N, N)
    attn = (q * scale) @ k.transpose(-2, -1) + bias[None]  # (B*nW, heads, N, N)
    if shift_mask is not None:
        num_windows = shift_mask.shape[0]
        attn = (attn.view(-1, num_windows, *attn.shape[1:]) + shift_mask[None, :, None]).flatten(0, 1)
    return attn.softmax(-1) @ v


@pytest.mark.parametrize(
    "padded, window, shift",
    [((4, 6, 6), (2, 3, 3), (1, 1, 1)), ((2, 6, 9), (2, 3, 3), (0, 1, 1)), ((4, 4, 4), (2, 2, 2), (1, 0, 1))],
)
def test_shift_regions_reproduce_the_dense_shift_mask(padded, window, shift):
    regions = shift_regions(padded, window, shift)
    dense = build_shift_mask(padded, window, shift, torch.float64)  # the model's mask, (nW, N, N)
    from_labels = (regions[:, :, None] != regions[:, None, :]).double() * -100.0
    assert regions.shape == dense.shape[:2] and regions.dtype == torch.int32
    assert torch.equal(from_labels, dense)
    assert (dense != 0).any()  # the case does shift something
    derived = regions_from_shift_mask(dense)
    assert torch.equal((derived[:, :, None] != derived[:, None, :]).double() * -100.0, dense)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("clipped", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_flex_window_attention_equals_the_explicit_formula(shifted, clipped, dtype, tol):
    torch.manual_seed(0)
    window, heads, head_dim, batch = (2, 3, 3), 2, 4, 2
    padded = (4, 6, 6)
    index = relative_position_index(window)
    table = torch.randn((2 * 2 - 1) * 5 * 5, heads, dtype=dtype)
    n = 12 if clipped else 18  # a clipped window uses the top-left N x N of the index
    if shifted and not clipped:
        regions = shift_regions(padded, window, (1, 1, 1))
        shift_mask = build_shift_mask(padded, window, (1, 1, 1), dtype)
    else:
        regions = shift_mask = None
    num_windows = 8
    # strided q, k, v as the model makes them: (3, B*nW, heads, N, head_dim) from a permuted qkv
    qkv = torch.randn(batch * num_windows, n, 3, heads, head_dim, dtype=dtype).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    ours = flex_window_attention(q, k, v, table, index, 0.37, regions=regions)
    expected = reference_attention(q, k, v, table, index, 0.37, shift_mask)
    assert ours.shape == expected.shape == (batch * num_windows, heads, n, head_dim) and ours.dtype == dtype
    torch.testing.assert_close(ours, expected, rtol=tol, atol=tol)
    if shifted and not clipped:  # the mask matters: without it the result differs
        plain = reference_attention(q, k, v, table, index, 0.37)
        assert not torch.allclose(ours, plain, rtol=1e-3, atol=1e-3)


def test_flex_window_attention_rejects_regions_that_do_not_fit():
    q = torch.randn(6, 1, 18, 4)
    regions = shift_regions((4, 6, 6), (2, 3, 3), (1, 1, 1))  # 8 windows: 6 rows are not whole samples
    with pytest.raises(ValueError, match="do not fit"):
        flex_window_attention(q, q, q, torch.randn(75, 1), relative_position_index((2, 3, 3)), 0.5, regions=regions)


def test_fallback_signal(monkeypatch):
    assert not use_flex(torch.zeros(1))  # CPU tensors keep the SDPA / chunked paths
    monkeypatch.setattr(flex, "FLEX_AVAILABLE", False)
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(FlexUnavailableError, match="PyTorch >= 2.5"):
        flex_window_attention(q, q, q, torch.randn(27, 1), relative_position_index((1, 2, 2)), 1.0)


def _blocks(model: VideoSwin):
    """(block, stage) pairs of a model."""
    return [(block, stage) for stage in model.layers for block in stage.blocks]


@pytest.mark.parametrize("shifted", [False, True])
def test_one_block_of_the_real_model(shifted):
    """A block's own qkv, bias table and index through flex = the module in its reference mode."""
    torch.manual_seed(0)
    model = VideoSwin(**TINY).eval().double()
    stage = model.layers[0]
    block = stage.blocks[1 if shifted else 0]
    plan = stage.window_plan((4, 9, 9), torch.float64, torch.device("cpu"))  # (D, H, W) tokens
    assert plan.shift_mask is not None and block.shifted == shifted
    x = torch.randn(2, *plan.padded, 8, dtype=torch.float64)
    if shifted:
        tokens = x.reshape(2, -1, 8).index_select(1, plan.shifted_order).view(-1, 18, 8)
    else:
        tokens = window_partition(x, plan.window)  # (B*nW, N, C)
    block.attn.use_reference = True
    with torch.no_grad():
        shift_mask = plan.shift_mask if shifted else None  # as Block passes it
        expected = block.attn(tokens, shift_mask, plan.padded)
        regions = shift_regions(plan.padded, plan.window, plan.shift) if shifted else None
        ours = window_attention_forward(block.attn, tokens, None, regions=regions)
        from_mask = window_attention_forward(block.attn, tokens, shift_mask)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(from_mask, expected, rtol=1e-12, atol=1e-12)


def run_with_flex(model: VideoSwin, x: torch.Tensor) -> torch.Tensor:
    """The model's logits with every WindowAttention3D going through flex (patched in this test only)."""
    calls = []

    def forward(self, tokens, shift_mask, shift_key=None):
        calls.append(shift_mask is not None)
        return window_attention_forward(self, tokens, shift_mask)

    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(swin3d.WindowAttention3D, "forward", forward)
        logits = model(x)
    assert len(calls) == sum(model.config.depths)
    return logits, calls


def test_tiny_model_through_flex_equals_the_reference_path():
    torch.manual_seed(0)
    model = VideoSwin(**TINY).eval().double()
    x = torch.randn(2, 3, 8, 36, 36, dtype=torch.float64)
    logits, calls = run_with_flex(model, x)
    assert any(calls)  # shifted blocks took the region labels
    model.set_reference_attention(True)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)


def test_golden_logits_through_flex():
    """The official network (clipped, odd-sized windows) through flex in fp32: within 1e-4 of the authors."""
    folder = shared_path("fixtures", "official", "b_clipped_odd")
    model = VideoSwin(**json.loads((folder / "config.json").read_text())).eval()
    load_checkpoint(model, folder / "checkpoint.pth")
    x = torch.load(folder / "input.pt", weights_only=True)
    golden = torch.load(folder / "logits.pt", weights_only=True)
    logits, _ = run_with_flex(model, x)
    assert ((logits.double() - golden).abs().max() / golden.abs().max()).item() <= 1e-4


def test_regions_are_derived_once_per_plan_mask():
    torch.manual_seed(0)
    model = VideoSwin(**TINY).eval()
    stage = model.layers[0]
    attn = stage.blocks[1].attn
    plan = stage.window_plan((4, 9, 9), torch.float32, torch.device("cpu"))
    tokens = torch.randn(2 * plan.shift_mask.shape[0], 18, 8)
    with torch.no_grad():
        first = window_attention_forward(attn, tokens, plan.shift_mask)
        derived = attn._flex_regions[1]
        again = window_attention_forward(attn, tokens, plan.shift_mask)
        assert attn._flex_regions[1] is derived  # same mask object: not derived again
        other = plan.shift_mask.clone()
        window_attention_forward(attn, tokens, other)
        assert attn._flex_regions[0] is other and torch.equal(attn._flex_regions[1], derived)
    assert torch.equal(first, again)
