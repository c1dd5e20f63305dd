"""Checkpoint formats, conversions, layouts of the released files, configs, and the errors users see."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch

from models import (
    VARIANTS,
    CheckpointError,
    Swin3DConfig,
    UnknownArchError,
    VideoSwin,
    config_from_dict,
    get_config,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from models.convert import from_mmaction, from_torchvision, to_mmaction, to_torchvision
from tests.conftest import shared_path

LAYOUTS = {
    "swin_tiny_patch244_window877_kinetics400_1k": (get_config("swin-t"), 28_158_070),
    "swin_small_patch244_window877_kinetics400_1k": (get_config("swin-s"), 49_816_678),
    "swin_base_patch244_window877_kinetics400_1k": (get_config("swin-b"), 88_048_984),
    "swin_base_patch244_window877_kinetics400_22k": (get_config("swin-b", drop_path_rate=0.2), 88_048_984),
    "swin_base_patch244_window877_kinetics600_22k": (get_config("swin-b", num_classes=600), 88_253_984),
    "swin_base_patch244_window1677_sthv2": (
        get_config("swin-b", num_classes=174, window_size=(16, 7, 7), drop_path_rate=0.4),
        88_834_038,
    ),
}
TINY = dict(embed_dim=8, depths=(1, 2), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=5)


def read_layout(name: str) -> list[tuple[str, ...]]:
    """Rows of a layout file: (key, shape, dtype[, official key])."""
    text = shared_path("fixtures", "layouts", f"{name}.txt").read_text()
    return [tuple(line.split("\t")) for line in text.splitlines() if line and not line.startswith("#")]


def layout_rows(state: dict) -> list[tuple[str, str, str]]:
    return [(k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]


def meta_model(cfg: Swin3DConfig) -> VideoSwin:
    with torch.device("meta"):  # shapes and dtypes only: full-size models build instantly
        return VideoSwin.from_config(cfg)


@pytest.mark.parametrize("name", LAYOUTS)
def test_export_has_the_official_layout_and_parameter_count(name):
    cfg, num_params = LAYOUTS[name]
    model = meta_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == num_params
    assert layout_rows(to_mmaction(model.state_dict())) == [row[:3] for row in read_layout(name)]


@pytest.mark.parametrize("arch", ["t", "s", "b"])
def test_torchvision_export_has_the_torchvision_layout(arch):
    model = meta_model(get_config(f"swin-{arch}"))
    rows = read_layout(f"torchvision_swin3d_{arch}")
    ours = model.state_dict()
    assert layout_rows(to_torchvision(ours)) == [row[:3] for row in rows]
    # The layout's 4th column is the official key: the two conversions agree key by key.
    assert list(to_mmaction(ours)) == [row[3] for row in rows]
    assert list(from_torchvision(to_torchvision(ours))) == list(ours)
    assert list(from_mmaction(to_mmaction(ours))) == list(ours)


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------


def official_case():
    folder = shared_path("fixtures", "official", "a_standard")
    config = json.loads((folder / "config.json").read_text())
    return folder, config


def logits_of(model, folder):
    x = torch.load(folder / "input.pt", weights_only=True)
    with torch.no_grad():
        return model.eval()(x)


def test_mmaction_with_module_prefix_and_extra_top_level_keys(tmp_path):
    folder, config = official_case()
    ckpt = torch.load(folder / "checkpoint.pth", weights_only=True)
    wrapped = {
        "meta": ckpt["meta"],
        "state_dict": {"module." + k: v for k, v in ckpt["state_dict"].items()},
        "optimizer": {"state": {}, "param_groups": []},
        "amp": {"loss_scaler0": {"loss_scale": 512.0}},
    }
    torch.save(wrapped, tmp_path / "ddp.pth")
    model = VideoSwin(**config)
    report = load_checkpoint(model, tmp_path / "ddp.pth")
    assert report.format == "mmaction" and report.missing_keys == () and report.dropped_keys == ()
    assert len(report.loaded_keys) == len(model.state_dict())
    golden = torch.load(folder / "logits.pt", weights_only=True)
    assert (logits_of(model, folder).double() - golden).abs().max() <= 1e-4 * golden.abs().max()


def test_vswin_round_trip_is_atomic_and_keeps_labels(tmp_path):
    model = VideoSwin(**TINY)
    labels = [f"class {i}" for i in range(5)]
    path = save_checkpoint(tmp_path / "sub" / "model.pth", model, labels=labels, epoch=3)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pth"]  # no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "vswin" and raw["epoch"] == 3 and raw["config"] == model.config.to_dict()

    fresh = VideoSwin(**raw["config"])
    report = load_checkpoint(fresh, path)
    assert report.format == "vswin" and report.labels == labels and report.config == model.config.to_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    rebuilt, report = load_model(path)
    assert rebuilt.config == model.config and report.labels == labels and not rebuilt.training
    with pytest.raises(CheckpointError, match="no stored config"):
        load_model(shared_path("fixtures", "official", "a_standard", "checkpoint.pth"))
    with pytest.raises(ValueError, match="3 labels for a model with 5 classes"):
        save_checkpoint(tmp_path / "bad.pth", model, labels=labels[:3])


def test_save_failure_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "model.pth", VideoSwin(**TINY))
    assert list(tmp_path.iterdir()) == []


def test_vswin_file_from_another_arch_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pth", VideoSwin(**TINY))
    other = VideoSwin(**{**TINY, "window_size": (2, 5, 5)})
    with pytest.raises(CheckpointError, match=r"different architecture \(window_size: file \(2, 3, 3\)"):
        load_checkpoint(other, path)


def test_format_override(tmp_path):
    folder, config = official_case()
    model = VideoSwin(**config)
    assert load_checkpoint(model, folder / "checkpoint.pth", format="mmaction").format == "mmaction"
    with pytest.raises(CheckpointError, match=r"not Video Swin weight names in the vswin format \(wrong format=\?\)"):
        load_checkpoint(model, folder / "checkpoint.pth", format="vswin")
    with pytest.raises(CheckpointError, match="not a Video Swin checkpoint"):
        load_checkpoint(model, folder / "checkpoint.pth", format="imagenet2d")
    # A 3D state_dict wrapped as {"model": ...} (common in training scripts) is found too.
    ckpt = torch.load(folder / "checkpoint.pth", weights_only=True)
    torch.save({"model": ckpt["state_dict"], "epoch": 3}, tmp_path / "wrapped.pth")
    assert load_checkpoint(model, tmp_path / "wrapped.pth").format == "mmaction"
    with pytest.raises(ValueError, match="format must be one of"):
        load_checkpoint(model, folder / "checkpoint.pth", format="onnx")


# ---------------------------------------------------------------------------------------------
# Strictness and the errors users see
# ---------------------------------------------------------------------------------------------


def test_wrong_head_names_the_cause_and_drop_head_replaces_it():
    folder, config = official_case()
    model = VideoSwin(**{**config, "num_classes": 600})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, folder / "checkpoint.pth")
    message = str(info.value)
    assert "400-class head loaded into a 600-class model" in message
    assert "head.weight file (400, 96) vs model (600, 96)" in message and info.value.hint

    head_before = model.head.weight.clone()
    report = load_checkpoint(model, folder / "checkpoint.pth", drop_head=True)
    assert report.dropped_keys == ("head.weight", "head.bias")
    assert set(report.missing_keys) == {"head.weight", "head.bias"}
    assert torch.equal(model.head.weight, head_before)
    assert "dropped head.weight, head.bias" in report.summary()
    reference = VideoSwin(**config)
    load_checkpoint(reference, folder / "checkpoint.pth")
    assert torch.equal(model.norm.weight, reference.norm.weight)


def test_non_strict_load_reports_what_did_not_fit():
    folder, config = official_case()
    model = VideoSwin(**{**config, "depths": (2, 2, 1, 2), "num_classes": 10})
    report = load_checkpoint(model, folder / "checkpoint.pth", strict=False)
    assert "head.weight" in report.dropped_keys
    assert any(k.startswith("layers.2.blocks.1.") for k in report.dropped_keys)
    assert report.missing_keys == ()


def test_wrong_arch_error_names_widths_and_depths():
    folder, config = official_case()
    model = VideoSwin(**{**config, "embed_dim": 16, "depths": (2, 2, 4, 2), "head_in_channels": None})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, folder / "checkpoint.pth")
    message = str(info.value)
    assert "embedding width 12 in the file vs 16 in the model" in message
    assert "blocks per stage (2, 2, 2, 2) in the file vs (2, 2, 4, 2) in the model" in message
    assert "missing from the file: layers.2.blocks.2." in message


def test_window_16_file_into_window_8_model(tmp_path):
    big = VideoSwin(**{**TINY, "window_size": (4, 3, 3)})
    path = save_checkpoint(tmp_path / "w4.pth", big)
    raw = torch.load(path, weights_only=True)
    torch.save(raw["model"], tmp_path / "bare.pth")  # a bare state_dict: no config to compare
    with pytest.raises(CheckpointError, match="different window size"):
        load_checkpoint(VideoSwin(**TINY), tmp_path / "bare.pth")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is a text file, not weights\n", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
        (b"\x00" + random.Random(0).randbytes(2047), "not a PyTorch checkpoint"),
        (b"PK\x03\x04" + random.Random(1).randbytes(500), "not a readable PyTorch checkpoint"),
        (b"\x80\x02" + random.Random(2).randbytes(500), "refused to load|not a readable PyTorch checkpoint"),
    ],
    ids=["text", "empty", "random-bytes", "broken-zip", "broken-pickle"],
)
def test_files_that_are_not_checkpoints(tmp_path, content, reason):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason) as info:
        load_checkpoint(VideoSwin(**TINY), path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint(tmp_path):
    folder, config = official_case()
    data = (folder / "checkpoint.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: not a readable PyTorch checkpoint"):
        load_checkpoint(VideoSwin(**config), path)


def test_missing_file_and_wrong_content(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(VideoSwin(**TINY), tmp_path / "absent.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="not a Video Swin checkpoint"):
        load_checkpoint(VideoSwin(**TINY), tmp_path / "odd.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a Video Swin checkpoint"):
        load_checkpoint(VideoSwin(**TINY), tmp_path / "list.pth")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": _RunsCode(marker)}}, path)
    with pytest.raises(CheckpointError, match="refused to load") as info:
        load_checkpoint(VideoSwin(**TINY), path)
    assert not marker.exists()
    assert "weights-only" in info.value.hint
    assert "os.makedirs" in str(info.value)  # the reason: what the file wanted to call


def test_mmcv_file_with_numpy_values_in_meta_loads(tmp_path):
    # As mmcv saved the released files: numpy scalars, dtypes and arrays in `meta`, tensors in state_dict.
    np = pytest.importorskip("numpy")
    model = VideoSwin(**TINY)
    from models.convert import to_mmaction

    meta = {
        "hook_msgs": {"best_score": np.float64(0.8), "best_epoch": np.int64(30), "last_ckpt": "epoch_30.pth"},
        "CLASSES": np.array(["abseiling", "air drumming", "zumba"]),
        "dtype": np.dtype("float32"),
        "curve": np.linspace(0.0, 1.0, 5),
        "flags": np.array([True, False]),
        "epoch": 30,
    }
    path = tmp_path / "mmcv.pth"
    torch.save({"meta": meta, "state_dict": to_mmaction(model.state_dict())}, path)
    fresh = VideoSwin(**TINY)
    report = load_checkpoint(fresh, path)
    assert report.format == "mmaction" and not report.missing_keys
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # The numpy values come back as numpy values, and the allow-list is scoped to our loads.
    from models.checkpoint import read_checkpoint

    loaded = read_checkpoint(path)["meta"]
    assert loaded["hook_msgs"]["best_score"] == np.float64(0.8) and loaded["dtype"] == np.dtype("float32")
    assert list(loaded["CLASSES"]) == ["abseiling", "air drumming", "zumba"]
    with pytest.raises(Exception, match="numpy"):
        torch.load(path, weights_only=True)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def test_variants_and_overrides():
    assert set(VARIANTS) == {"swin-t", "swin-s", "swin-b"}
    assert VARIANTS["swin-b"].head_in_channels == 1024 and VARIANTS["swin-t"].head_in_channels == 768
    ssv2 = get_config("swin-b", window_size=[16, 7, 7], num_classes=174)
    assert ssv2.window_size == (16, 7, 7) and ssv2.num_classes == 174 and ssv2.embed_dim == 128
    with pytest.raises(UnknownArchError, match="valid names: swin-t, swin-s, swin-b"):
        get_config("swin-l")


def test_config_json_round_trip(tmp_path):
    folder, config = official_case()
    cfg = get_config(str(folder / "config.json"))
    assert cfg.embed_dim == 12 and cfg.head_in_channels == 96
    assert config_from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert get_config(path, num_classes=7).num_classes == 7
    assert config_from_dict({k: v for k, v in config.items() if k != "num_classes"}).num_classes == 400


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(num_heads=(3, 6, 12)), "num_heads"),
        (dict(window_size=(8, 7)), "window_size"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(num_heads=(5, 6, 12, 24)), r"num_heads\[0\]"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(head_in_channels=512), "head_in_channels"),
        (dict(qkv_bias="yes"), "qkv_bias"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        Swin3DConfig(**overrides)


def test_unknown_config_key():
    with pytest.raises(ValueError, match=r"unknown config keys \['window'\]"):
        VideoSwin(window=(8, 7, 7))
