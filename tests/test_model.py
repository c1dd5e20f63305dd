"""The network against the official golden data (../shared/fixtures) and its structural properties."""

from __future__ import annotations

import json
import platform

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from models import VideoSwin, get_config, load_checkpoint, swin3d
from models.convert import inflate_imagenet2d
from models.swin3d import (
    aligned_rows,
    average_views,
    build_shift_mask,
    chunked_attention,
    cpu_linear,
    effective_window,
    window_partition,
    window_reverse,
)
from tests.conftest import shared_path

OFFICIAL = ["official/a_standard", "official/b_clipped_odd", "torchvision/a_standard"]
# The style guide's tiny config: seconds for every property test.
TINY = dict(embed_dim=8, depths=(1, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=5)


def load_case(case: str, dtype=torch.float64):
    folder = shared_path("fixtures", case)
    model = VideoSwin(**json.loads((folder / "config.json").read_text())).eval()
    load_checkpoint(model, folder / "checkpoint.pth")
    x = torch.load(folder / "input.pt", weights_only=True)
    return model.to(dtype), x.to(dtype), folder


def rel_err(ours: torch.Tensor, golden: torch.Tensor) -> float:
    return ((ours.double() - golden).abs().max() / golden.abs().max()).item()


@pytest.mark.parametrize("case", OFFICIAL)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_logits_match_official(case, dtype, tol):
    model, x, folder = load_case(case, dtype)
    golden = torch.load(folder / "logits.pt", weights_only=True)
    with torch.no_grad():
        logits = model(x)
    assert logits.dtype == dtype and logits.shape == golden.shape
    assert rel_err(logits, golden) <= tol


@pytest.mark.parametrize("case", OFFICIAL[:2])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_features_and_stages_match_official(case, dtype, tol):
    model, x, folder = load_case(case, dtype)
    features = torch.load(folder / "features.pt", weights_only=True)
    stages = torch.load(folder / "intermediates.pt", weights_only=True)
    with torch.no_grad():
        assert rel_err(model.forward_backbone(x), features) <= tol
        assert rel_err(model.forward_features(x), features.mean(dim=(2, 3, 4))) <= tol
        tokens = model.patch_embed(x)  # (N, D, H, W, C); the golden data is (N, C, D, H, W)
        assert rel_err(tokens.permute(0, 4, 1, 2, 3), stages["patch_embed"]) <= tol
        for i, layer in enumerate(model.layers):
            tokens = layer(tokens)
            assert rel_err(tokens.permute(0, 4, 1, 2, 3), stages[f"layers.{i}"]) <= tol, f"stage {i}"


def test_reference_attention_matches_sdpa_on_official_case():
    model, x, folder = load_case("official/b_clipped_odd")
    golden = torch.load(folder / "logits.pt", weights_only=True)
    model.set_reference_attention(True)
    with torch.no_grad():
        assert rel_err(model(x), golden) <= 1e-9


@pytest.mark.parametrize("mode", ["prob", "score"])
def test_multiview_average_matches_official(mode):
    folder = shared_path("fixtures", "official", "b_clipped_odd")
    logits = torch.load(folder / "logits.pt", weights_only=True)  # two views of one video
    golden = torch.load(folder / f"multiview_{mode}.pt", weights_only=True)  # (1, K)
    assert rel_err(average_views(logits, mode)[None], golden) <= 1e-12
    with pytest.raises(ValueError, match="mode"):
        average_views(logits, "max")


def test_inflated_imagenet_weights_match_official():
    folder = shared_path("fixtures", "inflate", "a_standard_from_in1k")
    config = json.loads((folder / "config.json").read_text())
    golden_state = torch.load(folder / "inflated_state_dict.pt", weights_only=True)
    state_2d = torch.load(folder / "imagenet2d.pth", weights_only=True)["model"]
    state, dropped = inflate_imagenet2d(state_2d, tuple(config["window_size"]), config["patch_size"][0])
    assert list(state) == list(golden_state)
    for key, value in golden_state.items():
        assert state[key].dtype == value.dtype and torch.equal(state[key], value), key
    assert sorted(k for k in dropped if k.startswith("head.")) == ["head.bias", "head.weight"]
    assert len(dropped) == 11 + 2

    model = VideoSwin(**config).eval()
    report = load_checkpoint(model, folder / "imagenet2d.pth")
    assert report.format == "imagenet2d" and set(report.missing_keys) == {"head.weight", "head.bias"}
    x = torch.load(folder / "input.pt", weights_only=True).double()
    with torch.no_grad():
        features = model.double().forward_backbone(x)
    assert rel_err(features, torch.load(folder / "backbone_features.pt", weights_only=True)) <= 1e-9


def test_bias_table_resize_when_2d_window_differs():
    # A 2D window-12 table (23x23 rows) resized to a 7x7 window: 13x13 rows, tiled 2*8-1 times.
    table = torch.randn(23 * 23, 2)
    state, _ = inflate_imagenet2d({"layers.0.blocks.0.attn.relative_position_bias_table": table}, (8, 7, 7), 2)
    out = state["layers.0.blocks.0.attn.relative_position_bias_table"]
    assert out.shape == (15 * 169, 2)
    assert torch.equal(out[:169], out[169:338])  # every temporal offset gets the same 2D bias


# ---------------------------------------------------------------------------------------------
# Properties (tiny config)
# ---------------------------------------------------------------------------------------------


def tiny(**overrides) -> VideoSwin:
    torch.manual_seed(0)
    return VideoSwin(**{**TINY, **overrides})


@settings(max_examples=30, deadline=None)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
)
def test_partition_then_reverse_is_identity(blocks, window):
    size = tuple(b * w for b, w in zip(blocks, window))
    x = torch.randn(2, *size, 3)
    windows = window_partition(x, window)
    assert windows.shape == (2 * blocks[0] * blocks[1] * blocks[2], window[0] * window[1] * window[2], 3)
    assert torch.equal(window_reverse(windows, window, 2, size), x)


@settings(max_examples=40, deadline=None)
@given(
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_shift_mask_matches_brute_force_regions(blocks, window, shifted):
    padded = tuple(b * w for b, w in zip(blocks, window))
    shift = tuple(w // 2 if s else 0 for w, s in zip(window, shifted))
    mask = build_shift_mask(padded, window, shift)
    # Brute force: after rolling by -shift, a token at rolled position q along an axis came from the
    # far end (wrapped around) iff q >= P - s; two tokens may attend iff they agree on every axis.
    coords = torch.stack(torch.meshgrid(*[torch.arange(p) for p in padded], indexing="ij"), -1)  # (D,H,W,3)
    wrapped = torch.stack([(coords[..., i] >= padded[i] - shift[i]) & (shift[i] > 0) for i in range(3)], -1)
    labels = window_partition(wrapped.long()[None], window)  # (nW, N, 3)
    same = (labels[:, :, None, :] == labels[:, None, :, :]).all(-1)
    expected = torch.where(same, 0.0, -100.0)
    assert torch.equal(mask, expected)


def test_clipping_rule():
    assert effective_window((16, 8, 7), (8, 7, 7), (4, 3, 3)) == ((8, 7, 7), (4, 3, 0))
    assert effective_window((4, 4, 2), (8, 7, 7), (4, 3, 3)) == ((4, 4, 2), (0, 0, 0))


def test_batch_of_two_equals_two_batches_of_one():
    model = tiny().eval()
    x = torch.randn(2, 3, 5, 26, 30)
    with torch.no_grad():
        both = model(x)
        one_by_one = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(both, one_by_one, rtol=1e-5, atol=1e-6)


def test_every_parameter_gets_a_gradient():
    model = tiny(drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.1).train()
    model(torch.randn(2, 3, 6, 30, 30)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_two_eval_passes_are_equal_even_with_dropout():
    model = tiny(drop_rate=0.3, attn_drop_rate=0.3, drop_path_rate=0.3, head_dropout=0.5).eval()
    x = torch.randn(1, 3, 6, 30, 30)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))  # the dropouts are live in training


@pytest.mark.parametrize("shape", [(1, 3, 7, 31, 17), (3, 3, 1, 5, 9), (2, 3, 3, 13, 45)])
def test_odd_sizes_are_padded_and_cropped(shape):
    model = tiny().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        features = model.forward_backbone(x)
        logits = model(x)
        model.set_reference_attention(True)
        reference = model(x)
    t, h, w = shape[2:]
    d, h1, w1 = -(-t // 2), -(-h // 4), -(-w // 4)
    assert features.shape == (shape[0], 16, d, -(-h1 // 2), -(-w1 // 2))
    assert logits.shape == (shape[0], 5) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-6)


def test_sdpa_path_equals_reference_path_with_gradients():
    x = torch.randn(2, 3, 6, 30, 30, dtype=torch.float64)
    grads = []
    for reference in (False, True):
        model = tiny().double().train()
        model.set_reference_attention(reference)
        model(x).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-9, atol=1e-12, msg=name)


def test_grad_checkpointing_gives_the_same_gradients():
    x = torch.randn(1, 3, 6, 30, 30, dtype=torch.float64)
    grads = []
    for enabled in (False, True):
        model = tiny(drop_path_rate=0.2, drop_rate=0.1).double().train()
        model.set_grad_checkpointing(enabled)
        torch.manual_seed(1)  # same dropout draws; checkpoint replays the RNG state
        model(x).square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-10, atol=1e-12, msg=name)


def test_eval_mask_is_cached_and_follows_weight_changes():
    model = tiny().eval()
    x = torch.randn(1, 3, 6, 30, 30)
    attn = model.layers[0].blocks[0].attn
    with torch.no_grad():
        first = model(x)
        (mask,) = attn._mask_cache.values()
        model(x)
        assert list(attn._mask_cache.values()) == [mask]  # reused, not rebuilt
        attn.relative_position_bias_table.add_(1.0)  # e.g. load_state_dict or an optimizer step
        changed = model(x)
    assert not torch.equal(first, changed)
    model.set_reference_attention(True)
    with torch.no_grad():
        torch.testing.assert_close(changed, model(x), rtol=1e-5, atol=1e-6)
    model.clear_caches()
    assert attn._mask_cache == {} and model.layers[0]._plans == {}


def test_from_config_and_forward_features_shape():
    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, num_heads=(1, 1, 2, 2), num_classes=3))
    assert model.config.head_in_channels == 64
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(2, 3, 2, 32, 32)).shape == (2, 64)


def test_bench_script_runs_and_prints_a_table(capsys):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_model", REPO / "bench" / "bench_model.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = "--archs swin-t --dtypes fp32 --frames 2 --size 32 --repeats 1 --warmup 0 --impls ours,reference --device cpu"
    bench.main(args.split())
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| swin-t")]
    assert [row.split("|")[4].strip() for row in rows] == ["ours", "reference"]
    assert rows[1].split("|")[7].strip() == "1.00x"  # the reference row against itself


@pytest.mark.parametrize(
    "x", [torch.zeros(1, 4, 3, 32, 32), torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8)]
)
def test_wrong_input_layout_is_a_clear_error(x):
    with pytest.raises(ValueError, match=r"expected a float tensor \(N, 3, T, H, W\)"):
        tiny()(x)


def test_aligned_rows_keeps_values_and_aligns_the_stride():
    mask = torch.randn(1, 6, 392, 392)
    aligned = aligned_rows(mask)
    assert torch.equal(aligned, mask) and aligned.stride(-2) % 16 == 0 and aligned.stride(-2) == 400
    square = torch.randn(2, 32, 32)
    assert aligned_rows(square) is square


def test_training_after_an_inference_mode_pass():
    # Caches filled under inference_mode (as evaluation loops do) must not break a later backward.
    model = tiny().eval()
    x = torch.randn(1, 3, 6, 30, 30)
    with torch.inference_mode():
        model(x)
    model.train()
    model(x).sum().backward()
    assert model.layers[1].blocks[1].attn.relative_position_bias_table.grad is not None
    model.eval()
    with torch.no_grad():
        model(x)


# ---------------------------------------------------------------------------------------------
# CPU bf16 inference paths (chunked attention, oneDNN linear with fused bias and GELU)
# ---------------------------------------------------------------------------------------------


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
    monkeypatch.setattr(swin3d, "_CHUNK_SCORES", 5 * n * n)  # chunks of about 5 rows: many per call
    qkv = torch.randn(batch, n, 3, heads, head_dim, dtype=torch.float64).permute(2, 0, 3, 1, 4)  # strided, as in the model
    q, k, v = qkv.unbind(0)
    mask = torch.randn(1, mask_rows, n, n, dtype=torch.float64)
    ours = chunked_attention(q, k, v, mask, 0.3)
    grouped = [t.reshape(-1, mask_rows, n, head_dim) for t in (q, k, v)]  # rows r use mask row r % G
    expected = F.scaled_dot_product_attention(*grouped, attn_mask=mask, scale=0.3).reshape(batch, heads, n, head_dim)
    assert ours.is_contiguous()
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


def test_cpu_linear_fuses_bias_and_gelu_within_bf16_rounding():
    layer = torch.nn.Linear(24, 40).to(torch.bfloat16)
    x = torch.randn(2, 3, 5, 24, dtype=torch.bfloat16)
    with torch.no_grad():
        exact = F.gelu(F.linear(x.double(), layer.weight.double(), layer.bias.double()))
        with torch.profiler.profile() as prof:
            fused = cpu_linear(layer, x, gelu=True)
        onednn = any("_linear_pointwise" in event.name for event in prof.events())
        assert onednn == swin3d._ONEDNN_LINEAR
        assert onednn or platform.machine().lower() not in ("x86_64", "amd64")  # PyTorch x86 builds have oneDNN
        plain = F.gelu(layer(x))
        assert fused.shape == (2, 3, 5, 40) and fused.dtype == torch.bfloat16
        # Within a few bf16 steps of the exact value (the plain path rounds twice, the fused path once).
        assert (fused.double() - exact).abs().max() <= 2 * (plain.double() - exact).abs().max() + 1e-2
        torch.testing.assert_close(cpu_linear(layer, x), layer(x), rtol=1e-2, atol=1e-2)
    # With gradients wanted it is the plain module (autograd through nn.Linear and F.gelu).
    out = cpu_linear(layer.float(), x.float().requires_grad_(), gelu=True)
    assert out.grad_fn is not None


@pytest.mark.parametrize("case", OFFICIAL[:2])
def test_bf16_cpu_inference_path_is_used_and_matches_the_official_logits(monkeypatch, case):
    model, x, folder = load_case(case, torch.bfloat16)
    golden = torch.load(folder / "logits.pt", weights_only=True)
    calls = []
    original = swin3d.chunked_attention
    monkeypatch.setattr(swin3d, "chunked_attention", lambda *a: calls.append(1) or original(*a))
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


def test_cpu_linear_falls_back_when_onednn_refuses(monkeypatch):
    def refuse(*args):
        raise RuntimeError("mkldnn_linear: bf16 path needs the cpu support avx512bw, avx512vl and avx512dq")

    monkeypatch.setattr(swin3d, "_ONEDNN_LINEAR", True)
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", refuse)
    layer = torch.nn.Linear(8, 4).to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(cpu_linear(layer, x, gelu=True), F.gelu(layer(x)))
    assert swin3d._ONEDNN_LINEAR is False  # asked once, then the plain modules
