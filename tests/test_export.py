"""A traceable forward (torch.export, torch.compile with no graph breaks) and `vswin export` (ONNX
round trip through ONNX Runtime, the files beside it, verification, size)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from models import VideoSwin, get_config, save_checkpoint
from vswin_cli import export as export_lib
from vswin_cli.app import app

TINY = dict(embed_dim=8, depths=(1, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=5)
LABELS = ["abseiling", "air drumming", "archery", "zumba", "yoga"]


def tiny() -> VideoSwin:
    torch.manual_seed(0)
    model = VideoSwin(**TINY).eval()
    with torch.no_grad():  # a head that matters: the default init (std 0.01) gives near-zero logits
        model.head.weight.normal_(std=1.0)
    return model


def cache_sizes(model: VideoSwin) -> list[int]:
    return [len(m._plans) for m in model.layers] + [len(b.attn._mask_cache) for m in model.layers for b in m.blocks]


def test_eval_forward_has_no_graph_breaks():
    model = tiny()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    assert cache_sizes(model) == [0] * len(cache_sizes(model))  # tracing leaves no (fake) tensors in the caches


def test_compiled_fullgraph_matches_eager_and_reference():
    model = tiny()
    x = torch.randn(2, 3, 5, 30, 26)  # odd sizes: padding, clipped windows, shifted and unshifted blocks
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(x)  # raises on any graph break
        model.set_reference_attention(True)
        reference = model(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compiled, reference, rtol=1e-5, atol=1e-5)


def test_torch_export_matches_eager_and_holds_no_mask_constants():
    model = tiny()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        eager = model(x)
        program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), eager, rtol=1e-5, atol=1e-6)
    # No lifted tensor constants: bias and masks are computed from the parameters in the graph.
    assert dict(program.constants) == {}


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

needs_onnx = pytest.mark.skipif(not export_lib.onnx_available(), reason="onnx/onnxscript not installed (pip install 'vswin[export]')")


def onnxruntime():
    return pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'vswin[cpu]')")


@needs_onnx
def test_onnx_round_trip_matches_pytorch(tmp_path):
    ort = onnxruntime()
    model = tiny()
    result = export_lib.export_onnx(model, tmp_path / "out" / "tiny.onnx", clip_shape=(4, 32, 32), batch=2,
                                    labels=LABELS, protocol={"clip_len": 4}, source="tiny")  # fmt: skip
    assert result.onnx.is_file() and result.max_rel_err <= 1e-4
    assert result.labels.read_text().splitlines() == LABELS
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["input"]["shape"] == [2, 3, 4, 32, 32] and sidecar["output"]["shape"] == [2, 5]
    assert sidecar["labels"] == LABELS and sidecar["protocol"] == {"clip_len": 4}
    assert sidecar["verified"]["max_rel_err"] == result.max_rel_err
    # An independent run on a new clip agrees too.
    x = torch.randn(2, 3, 4, 32, 32)
    session = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"video": x.numpy()})
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(torch.from_numpy(theirs), ours, rtol=1e-4, atol=1e-4 * ours.abs().max().item())


@pytest.mark.slow
@needs_onnx
def test_onnx_stores_the_weights_once_and_no_mask_per_block(tmp_path):
    # Stored data beyond the parameters (per-stage constants the exporter folds) must not grow with
    # the number of blocks: no bias or mask per block. Two more blocks in stage 1 add only weights.
    import onnx
    import onnx.numpy_helper

    overhead = []
    for depths in ((2, 1), (4, 1)):  # window 2x7x7 (N = 98): bias and masks above the fold limit
        torch.manual_seed(0)
        model = VideoSwin(**{**TINY, "depths": depths, "window_size": (2, 7, 7)}).eval()
        result = export_lib.export_onnx(model, tmp_path / f"d{depths[0]}.onnx", clip_shape=(4, 56, 56), verify=False)
        graph = onnx.load(str(result.onnx)).graph
        stored = sum(onnx.numpy_helper.to_array(t).nbytes for t in graph.initializer)
        overhead.append(stored - result.weight_bytes)
    assert overhead[1] <= overhead[0] + 1024, overhead


@needs_onnx
def test_a_file_that_does_not_reproduce_the_logits_is_refused(tmp_path, monkeypatch):
    onnxruntime()
    write = export_lib._write_onnx

    def write_a_different_model(model, x, path):
        with torch.no_grad():
            model.head.bias.add_(5.0)
            write(model, x, path)
            model.head.bias.sub_(5.0)

    monkeypatch.setattr(export_lib, "_write_onnx", write_a_different_model)
    with pytest.raises(export_lib.ExportError, match="differ from PyTorch's"):
        export_lib.export_onnx(tiny(), tmp_path / "bad.onnx", clip_shape=(2, 32, 32))
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_bad_output_name_and_label_count_are_refused_before_exporting(tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib, "onnx_available", lambda: True)
    with pytest.raises(export_lib.ExportError, match=r"must end in \.onnx"):
        export_lib.export_onnx(tiny(), tmp_path / "out.pt")
    with pytest.raises(export_lib.ExportError, match="2 labels for a model with 5 classes"):
        export_lib.export_onnx(tiny(), tmp_path / "out.onnx", labels=["a", "b"])


def test_missing_packages_are_an_error_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib, "onnx_available", lambda: False)
    result = CliRunner().invoke(app, ["export", "swin-t-k400", "-o", str(tmp_path / "x.onnx"), "--offline"])
    assert result.exit_code == 1 and "vswin[export]" in result.output
    assert not list(tmp_path.iterdir())  # refused before resolving or fetching anything


def test_a_wrong_output_name_is_refused_before_the_model_is_resolved(tmp_path, monkeypatch):
    monkeypatch.setattr(export_lib, "onnx_available", lambda: True)
    result = CliRunner().invoke(app, ["export", "swin-t-k400", "-o", str(tmp_path / "x.pt"), "--offline"])
    assert result.exit_code == 2 and "must end in .onnx" in result.output  # a usage error
    assert "offline" not in result.output  # not the cache/offline error: no lookup happened


@needs_onnx
def test_cli_exports_a_checkpoint_file(tmp_path):
    onnxruntime()
    weights = save_checkpoint(tmp_path / "tiny.pth", tiny(), labels=LABELS)
    out = tmp_path / "exported" / "tiny.onnx"
    result = CliRunner().invoke(app, ["export", str(weights), "-o", str(out), "--clip-len", "4", "--crop-size", "32", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["input"]["shape"] == [1, 3, 4, 32, 32] and sidecar["labels"] == LABELS
    assert sidecar["protocol"]["crop_size"] == 224  # the protocol the model was published with, for preprocessing


@needs_onnx
def test_openvino_ir_round_trip(tmp_path):
    ov = pytest.importorskip("openvino", reason="openvino not installed (OpenVINO IR is optional)")
    onnxruntime()
    model = tiny()
    result = export_lib.export_onnx(model, tmp_path / "tiny.onnx", clip_shape=(4, 32, 32), openvino=True)
    assert result.openvino == tmp_path / "tiny.xml" and (tmp_path / "tiny.bin").stat().st_size >= result.weight_bytes
    assert json.loads(result.sidecar.read_text())["openvino"] == "tiny.xml"
    compiled = ov.Core().compile_model(str(result.openvino), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(1, 3, 4, 32, 32)
    theirs = torch.from_numpy(compiled.create_infer_request().infer({0: x.numpy()})[compiled.output(0)].copy())
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4 * ours.abs().max().item())


@pytest.mark.slow
@needs_onnx
def test_swin_t_export_is_about_the_size_of_its_weights(tmp_path):
    onnxruntime()
    model = VideoSwin.from_config(get_config("swin-t")).eval()
    result = export_lib.export_onnx(model, tmp_path / "swin-t.onnx", clip_shape=(32, 224, 224))
    assert result.file_bytes <= 1.2 * result.weight_bytes, (result.file_bytes, result.weight_bytes)
    assert result.max_rel_err <= 1e-4
