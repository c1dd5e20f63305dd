"""Choosing and loading a CPU runtime (vswin_cli/runtime.py): the choice rules, forcing, agreement
of every installed runtime with PyTorch, the export cache, and the allocator setting."""

from __future__ import annotations

import time

import pytest
import torch

from models import VideoSwin
from vswin_cli import runtime
from vswin_cli.errors import ConfigError

TINY = dict(embed_dim=8, depths=(1, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=5)
CLIP = (4, 32, 32)


def tiny() -> VideoSwin:
    torch.manual_seed(0)
    model = VideoSwin(**TINY).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=1.0)  # logits well away from zero, so relative checks mean something
    return model


def test_auto_chooses_among_installed_runtimes_on_the_cpu_in_fp32_only(monkeypatch):
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime"])
    assert runtime.candidate_runtimes("cpu", "fp32") == ["torch", "onnxruntime"]
    assert runtime.candidate_runtimes("meta", "fp32") == ["torch"]
    assert runtime.candidate_runtimes("cpu", "bf16") == ["torch"]
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime", "openvino"])
    for capable in (True, False):  # bf16: OpenVINO too, where it computes bf16 on this CPU; never ORT
        monkeypatch.setattr(runtime, "openvino_runs_bf16", lambda: capable)
        assert runtime.candidate_runtimes("cpu", "bf16") == (["torch", "openvino"] if capable else ["torch"])
        assert runtime.candidate_runtimes("cpu", "fp16") == ["torch"]
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch"])
    run = runtime.load_runtime(tiny(), "auto", clip_shape=CLIP)  # nothing to measure, no cache needed
    assert run.runtime == "torch"


def test_auto_keeps_the_fastest_and_remembers_it(tmp_path, monkeypatch):
    # Two fake runtimes: "slow" burns CPU time, "fast" does not; auto must measure and keep "fast",
    # then reuse the remembered choice without building the others.
    def busy(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    built = []

    def runner(name, model, clip_shape, cache_dir, threads, precision):
        built.append(name)
        return runtime._named(lambda x: busy(0.02 if name == "torch" else 0.0), name)

    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime"])
    monkeypatch.setattr(runtime, "check_runtime", lambda *a: "auto")
    monkeypatch.setattr(runtime, "_runner", runner)
    first = runtime.load_runtime(tiny(), "auto", clip_shape=CLIP, cache_dir=tmp_path)
    assert first.runtime == "onnxruntime" and sorted(built) == ["onnxruntime", "torch"]
    assert list(runtime._read_choices(tmp_path).values()) == ["onnxruntime"]
    built.clear()
    again = runtime.load_runtime(tiny(), "auto", clip_shape=CLIP, cache_dir=tmp_path)
    assert again.runtime == "onnxruntime" and built == ["onnxruntime"]  # remembered: nothing measured


def test_forcing_a_runtime_that_cannot_run_is_a_config_error(monkeypatch):
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime"])
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        runtime.check_runtime("tensorrt")
    with pytest.raises(ConfigError, match="openvino is not installed") as info:
        runtime.check_runtime("openvino")
    assert "pip install" in info.value.hint
    with pytest.raises(ConfigError, match="runs fp32 only"):
        runtime.check_runtime("onnxruntime", precision="bf16")
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime", "openvino"])
    monkeypatch.setattr(runtime, "openvino_runs_bf16", lambda: False)
    with pytest.raises(ConfigError, match="does not run bf16 on this CPU") as info:
        runtime.check_runtime("openvino", precision="bf16")
    assert "--precision fp32" in info.value.hint
    monkeypatch.setattr(runtime, "openvino_runs_bf16", lambda: True)
    assert runtime.check_runtime("openvino", precision="bf16") == "openvino"
    with pytest.raises(ConfigError, match="fp32 and bf16 only"):
        runtime.check_runtime("openvino", precision="fp16")
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime"])
    with pytest.raises(ConfigError, match="CPU only"):
        runtime.check_runtime("onnxruntime", device="meta")
    assert runtime.check_runtime("torch", precision="bf16") == "torch"
    with pytest.raises(ConfigError, match="needs a cache folder"):
        runtime.load_runtime(tiny(), "onnxruntime", clip_shape=CLIP)


def test_available_runtimes_follow_the_installed_packages():
    import importlib.util

    found = runtime.available_runtimes()
    assert found[0] == "torch"
    exportable = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
    for name in ("onnxruntime", "openvino"):
        assert (name in found) == (exportable and importlib.util.find_spec(name) is not None)


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino"])
def test_every_installed_runtime_agrees_with_pytorch(tmp_path, name):
    if name not in runtime.available_runtimes():
        pytest.skip(f"{name} is not installed (pip install 'vswin[cpu]')")
    model = tiny()
    run = runtime.load_runtime(model, name, clip_shape=CLIP, cache_dir=tmp_path)
    assert run.runtime == name
    x = torch.randn(3, 3, *CLIP)
    with torch.inference_mode():
        expected = model(x)
        full, partial = run(x), run(x[:2])  # any number of clips: the file takes one, run one by one
    scale = expected.abs().max().item()
    torch.testing.assert_close(full, expected, rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(partial, expected[:2], rtol=1e-4, atol=1e-4 * scale)
    assert torch.equal(full.argmax(1), expected.argmax(1))
    if name != "torch":
        with pytest.raises(ValueError, match="built for clips of"):
            run(torch.randn(4, 3, 2, *CLIP[1:]))  # another clip length: the file is for one shape


def test_openvino_bf16_agrees_with_the_bf16_model_and_fp32(tmp_path):
    # Checks the capability the code checks: OpenVINO's own BF16 flag (AVX512_BF16/AMX), not the machine.
    if "openvino" not in runtime.available_runtimes():
        pytest.skip("openvino is not installed (pip install 'vswin[cpu]')")
    if not runtime.openvino_runs_bf16():
        pytest.skip("OpenVINO does not compute bf16 on this CPU (no BF16 capability)")
    model = tiny()
    x = torch.randn(2, 3, *CLIP)
    with torch.inference_mode():
        expected = model(x)
    model_bf16 = tiny().to(torch.bfloat16)  # as the Tagger passes it on a bf16 CPU run
    run = runtime.load_runtime(model_bf16, "openvino", clip_shape=CLIP, precision="bf16", cache_dir=tmp_path)
    assert run.runtime == "openvino"
    with torch.inference_mode():
        ours_bf16 = model_bf16(x.bfloat16()).float()
        got = run(x.bfloat16())
    assert got.dtype == torch.float32
    scale = expected.abs().max().item()
    # bf16 keeps 8 bits of mantissa: both bf16 paths land within about 2% of the largest fp32 logit.
    torch.testing.assert_close(got, expected, rtol=0, atol=0.03 * scale)
    torch.testing.assert_close(ours_bf16, expected, rtol=0, atol=0.03 * scale)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # and it really computed in bf16 (OpenVINO stays in fp32 silently where it cannot): off fp32 by more
    # than fp32 rounding.
    assert (got - expected).abs().max().item() > 1e-4 * scale


def test_the_exported_file_is_cached_and_reused(tmp_path, monkeypatch):
    if "onnxruntime" not in runtime.available_runtimes():
        pytest.skip("onnxruntime is not installed (pip install 'vswin[cpu]')")
    from vswin_cli import export

    model = tiny()
    runtime.load_runtime(model, "onnxruntime", clip_shape=CLIP, cache_dir=tmp_path)
    (first,) = tmp_path.glob("*.onnx")
    calls = []
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: calls.append(a))
    runtime.load_runtime(model, "onnxruntime", clip_shape=CLIP, cache_dir=tmp_path)
    assert calls == []  # paid once
    with torch.no_grad():
        model.head.bias.add_(1.0)  # other weights: another file
    with pytest.raises(Exception):
        runtime.load_runtime(model, "onnxruntime", clip_shape=CLIP, cache_dir=tmp_path)
    assert len(calls) == 1 and calls[0][1] != first


def test_tune_allocator_applies_on_glibc_only():
    import platform
    import sys

    applied = runtime.tune_allocator()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert applied == glibc


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precision_follows_native_bf16(monkeypatch, native):
    from models import kernels

    monkeypatch.setattr(kernels, "cpu_has_native_bf16", lambda: native)
    assert runtime.cpu_precision("auto") == ("bf16" if native else "fp32", None)
    assert runtime.cpu_precision("fp32") == ("fp32", None)
    precision, warning = runtime.cpu_precision("bf16")
    assert precision == "bf16"
    if native:
        assert warning is None
    else:
        assert "slower than fp32" in warning and "--precision fp32" in warning


AGREEMENT_VIDEOS = ["bikes.mp4", "chaplin.mp4", "cockatoo.mp4", "demo.mp4", "codec_vp9.webm"]


@pytest.mark.parametrize("name,precision", [("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")])
def test_vswin_tag_on_every_runtime_gives_the_top_labels_of_pytorch(tmp_path, monkeypatch, name, precision):
    """Real clips (../shared/videos), the whole CLI: each segment's top label and scores as on PyTorch
    (the same precision: PyTorch's bf16 model where bf16 is asked)."""
    import json

    from typer.testing import CliRunner

    from conftest import save_tiny_model, shared_path
    from vswin_cli.app import app

    if name not in runtime.available_runtimes():
        pytest.skip(f"{name} is not installed (pip install 'vswin[cpu]')")
    if precision == "bf16" and not runtime.openvino_runs_bf16():
        pytest.skip("OpenVINO does not compute bf16 on this CPU (no BF16 capability)")
    videos = [str(shared_path("videos", v)) for v in AGREEMENT_VIDEOS]
    options = [*save_tiny_model(tmp_path / "model"), "--workers", "0", "--views", "fast", "--top-k", "5",
               "--precision", precision]

    def tag(runtime_name):
        monkeypatch.setenv("VSWIN_RUNTIME", runtime_name)
        result = CliRunner().invoke(app, ["tag", *videos, *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if '"segment"' in line]

    reference, got = tag("torch"), tag(name)
    assert len(got) == len(reference) >= len(videos)
    for ours, theirs in zip(reference, got):
        assert (theirs["video"], theirs["start"]) == (ours["video"], ours["start"])
        assert theirs["top"][0]["label"] == ours["top"][0]["label"]
        tolerance = 1e-4 if precision == "fp32" else 0.02  # probabilities; bf16 keeps 8 mantissa bits
        for a, b in zip(ours["top"], theirs["top"]):
            assert abs(a["score"] - b["score"]) <= tolerance


def test_compile_on_the_cpu_warns_with_its_measured_cost_and_uses_pytorch(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from conftest import save_tiny_model
    from test_tag_cli import make_video
    from vswin_cli import inference
    from vswin_cli.app import app

    monkeypatch.setenv("VSWIN_RUNTIME", "openvino")
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "openvino"])
    monkeypatch.setattr(runtime, "load_runtime", lambda *a, **k: pytest.fail("--compile must run on PyTorch"))
    monkeypatch.setattr(inference.torch, "compile", lambda fn, **k: fn)  # the warning is the point, not inductor
    video = make_video(tmp_path / "a.mp4", 70)
    result = CliRunner().invoke(app, ["tag", str(video), *save_tiny_model(tmp_path / "m"), "--workers", "0",
                                      "--compile", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert "warning: --compile on the CPU" in result.stderr and "0.59x" in result.stderr


# --- the notice about the cpu extra (issue 22) ----------------------------------------------------------------


@pytest.mark.parametrize("flags, precision, figure", [
    ({"avx2", "avx512f", "amx_bf16"}, "bf16", "1.9-2x faster in bf16"),
    ({"avx2", "avx512f"}, "fp32", "1.2-1.3x faster in fp32"),
    ({"avx2"}, "fp32", "1.2x faster in fp32"),
])  # fmt: skip
def test_the_cpu_extra_notice_names_the_speed_up_measured_on_such_cpus(flags, precision, figure, monkeypatch):
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch"])
    notice = runtime.cpu_extra_notice("cpu", precision, cpu_flags=flags)
    assert notice.startswith("note: pip install 'vswin[cpu]'") and figure in notice and "docs/benchmarks.md" in notice
    assert "\n" not in notice


def test_no_cpu_extra_notice_where_it_does_not_apply(monkeypatch):
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch"])
    assert runtime.cpu_extra_notice("cuda", "bf16", cpu_flags={"amx_bf16"}) is None
    assert runtime.cpu_extra_notice("cpu", "bf16", cpu_flags={"avx512f"}) is None  # no bf16 measurement there
    assert runtime.cpu_extra_notice("cpu", "fp32", cpu_flags=set()) is None  # e.g. an Arm CPU: not measured
    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch", "onnxruntime", "openvino"])
    assert runtime.cpu_extra_notice("cpu", "fp32", cpu_flags={"avx512f"}) is None  # the extra is installed


def test_tag_says_it_once_and_not_with_q(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from conftest import save_tiny_model
    from test_tag_cli import make_video
    from vswin_cli.app import app

    monkeypatch.setattr(runtime, "available_runtimes", lambda: ["torch"])
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setenv("VSWIN_RUNTIME", "auto")
    model = save_tiny_model(tmp_path / "model")
    make_video(tmp_path / "v" / "a.mp4", 20)
    make_video(tmp_path / "v" / "b.mp4", 20)
    args = ["tag", str(tmp_path / "v"), *model, "--workers", "0", "--precision", "fp32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("note: pip install 'vswin[cpu]'") == 1, result.stderr
    quiet = CliRunner().invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0 and "vswin[cpu]" not in quiet.stderr
