"""The network against the official golden data (../shared/fixtures) and its structural properties."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models import VideoSwin, get_config, load_checkpoint
from models.attention import build_shift_mask, effective_window, window_partition, window_reverse
from models.convert import inflate_imagenet2d
from models.kernels import aligned_rows
from models.swin3d import average_views
from tests.conftest import REPO, shared_path

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
        first = model.forward_backbone(x)
        (mask,) = attn._mask_cache.values()
        model.forward_backbone(x)
        assert list(attn._mask_cache.values()) == [mask]  # reused, not rebuilt
        # e.g. load_state_dict or an optimizer step. Not a constant: softmax ignores a constant added
        # to every score, so only a change that differs between token pairs changes the output.
        table = attn.relative_position_bias_table
        table.add_(torch.linspace(-3.0, 3.0, table.numel()).view_as(table))
        changed = model.forward_backbone(x)
        (new_mask,) = (m for m in attn._mask_cache.values() if m is not mask)  # rebuilt from the new table
    step = new_mask - mask  # differs between keys of one query row, so softmax cannot ignore it
    assert (step.amax(-1) - step.amin(-1)).min() > 0.1
    # The weights are small (std 0.02), so the features move by about 1e-3; rounding noise is 1e-7.
    assert rel_err(changed, first.double()) > 1e-4
    model.set_reference_attention(True)
    with torch.no_grad():
        torch.testing.assert_close(changed, model.forward_backbone(x), rtol=1e-5, atol=1e-5)
    model.clear_caches()
    assert attn._mask_cache == {} and model.layers[0]._plans == {}


def test_dtype_conversion_drops_the_cached_masks():
    # .half()/.double() replace the table without touching its version counter: the hook drops the cache.
    model = tiny().eval()
    x = torch.randn(1, 3, 6, 30, 30)
    with torch.no_grad():
        model(x)
        model.half().float()  # the table is rounded to fp16 and back: different values, same version
        attn = model.layers[0].blocks[0].attn
        assert attn._mask_cache == {}
        cached = model(x)
        model.set_reference_attention(True)
        torch.testing.assert_close(cached, model(x), rtol=1e-5, atol=1e-6)


def test_from_config_and_forward_features_shape():
    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, num_heads=(1, 1, 2, 2), num_classes=3))
    assert model.config.head_in_channels == 64
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(2, 3, 2, 32, 32)).shape == (2, 64)


def test_bench_script_runs_and_prints_a_table(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_model", REPO / "bench" / "bench_model.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = "--archs swin-t --dtypes fp32 --frames 2 --size 32 --repeats 1 --warmup 0 --impls ours,reference --device cpu"
    bench.main(args.split())
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| swin-t")]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    assert [c[3] for c in cells] == ["ours", "reference"]
    assert cells[1][6] == "1.00x" and cells[0][7] == "1.00x"  # each row against itself
    wall, cpu, faults = (float(v) for v in cells[0][8:11])
    assert wall > 0 and cpu > 0 and faults >= 0


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


def test_import_models_loads_nothing_from_vswin_cli():
    code = (
        "import sys; sys.modules['vswin_cli'] = None\n"  # any import of vswin_cli now raises ImportError
        "import models, models.attention, models.checkpoint, models.convert, models.kernels, models.layers\n"
        "print(sorted(m for m in sys.modules if m.startswith('vswin_cli') and sys.modules[m] is not None))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
