"""`vswin train --resume`: a run stopped (or killed) after k epochs and resumed reaches the same weights as
an uninterrupted run; plus the schedule, parameter groups and the guards around resuming."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from test_train_data import make_motion_dataset
from vswin_cli.app import app
from vswin_cli.errors import ConfigError
from vswin_cli.train import TrainConfig, lr_factor, param_groups, train

# Drop path and head dropout are on so that the RNG handling is exercised too.
TINY = dict(patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 4, 4],
            drop_path_rate=0.2, head_dropout=0.5, num_classes=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-data")
    make_motion_dataset(root, {"train": 3, "val": 1}, seed=1)
    (root / "tiny.json").write_text(json.dumps(TINY))
    return root


def config(data: Path, out_dir: Path, **changes) -> TrainConfig:
    base = TrainConfig(train_list=str(data / "train.txt"), val_list=str(data / "val.txt"), data_root=str(data),
                       labels=str(data / "labels.txt"), arch=str(data / "tiny.json"), epochs=3, batch_size=4,
                       warmup_epochs=1, clip_len=4, frame_interval=2, crop_size=16, workers=0, out_dir=str(out_dir))
    return dataclasses.replace(base, **changes)


def cli_args(cfg: TrainConfig) -> list[str]:
    """The `vswin train` command line of a TrainConfig."""
    args = ["train"]
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if value is None or value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    rows = train(config(data, out), log=lambda msg: None)
    return out, rows


@pytest.mark.slow
def test_stop_then_resume_from_the_cli_equals_an_uninterrupted_run(data, uninterrupted, tmp_path):
    full_dir, full_rows = uninterrupted
    cfg = config(data, tmp_path / "run")
    train(cfg, stop_after_epoch=2, log=lambda msg: None)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2
    result = CliRunner().invoke(app, cli_args(cfg) + ["--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    assert_same_weights(weights(tmp_path / "run" / "last.pt"), weights(full_dir / "last.pt"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for mine, theirs in zip(rows, full_rows):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
        assert mine["val_top1"] == theirs["val_top1"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(data, uninterrupted, tmp_path):
    """SIGKILL a real `vswin train` process once it has written an epoch, then --resume (with 2 workers:
    the augmentation does not depend on how many decoding processes there are)."""
    full_dir, _ = uninterrupted
    cfg = config(data, tmp_path / "run")
    command = [sys.executable, "-m", "vswin_cli", *cli_args(cfg)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "epoch_001.pt").exists() and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # only the process group this test started
        process.wait()
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # atomic: always a whole file
    assert 1 <= last["epoch"] <= 3
    result = CliRunner().invoke(app, cli_args(dataclasses.replace(cfg, workers=2)) + ["--resume"])
    assert result.exit_code == 0, result.output
    assert_same_weights(weights(tmp_path / "run" / "last.pt"), weights(full_dir / "last.pt"))


def test_resume_guards(data, uninterrupted, tmp_path):
    full_dir, _ = uninterrupted
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(config(data, full_dir), log=lambda msg: None)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config(data, tmp_path / "empty", resume=True), log=lambda msg: None)
    with pytest.raises(ConfigError, match=r"these differ: lr: 0.001 in the checkpoint, 0.002 now"):
        train(config(data, full_dir, resume=True, lr=2e-3), log=lambda msg: None)


def test_checkpoint_loads_as_a_model_for_tag_and_eval(uninterrupted):
    from models import VideoSwin, config_from_dict, load_checkpoint

    full_dir, _ = uninterrupted
    saved = torch.load(full_dir / "best.pt", weights_only=True)
    model = VideoSwin.from_config(config_from_dict(saved["config"]))
    report = load_checkpoint(model, full_dir / "best.pt")  # strict
    assert report.format == "vswin" and report.labels == ["left", "right", "up", "down"]
    assert saved["protocol"] == {"sampling": "kinetics", "clip_len": 4, "frame_interval": 2, "num_clips": 4,
                                 "num_crops": 3, "crop_size": 16, "resize_short": 16}


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1 * (0.5 * (1 + 1)))  # warmup starts at 0.1 x
    assert lr_factor(5, 100, 10) == pytest.approx((1 - 0.5 * 0.9) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.05)).item()))
    assert lr_factor(10, 100, 10) == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.1)).item()))
    assert lr_factor(50, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_param_groups_no_decay_on_norms_biases_and_position_tables():
    from models import VideoSwin, get_config

    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, depths=(1, 1), num_heads=(1, 2), num_classes=3))
    groups = param_groups(model, lr=1e-3, weight_decay=0.05, backbone_lr_mult=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        group_names = [names[id(p)] for p in group["params"]]
        is_head = all(n.startswith("head.") for n in group_names)
        assert group["lr"] == pytest.approx(1e-3 if is_head else 1e-4)
        no_decay = [n for n in group_names if n.endswith("bias") or "norm" in n or "relative_position_bias_table" in n]
        assert (group["weight_decay"] == 0.0) == (len(no_decay) == len(group_names)), group_names
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_an_unreadable_training_video_stops_with_its_name_and_line(data, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    lines = (data / "train.txt").read_text().splitlines()
    bad_list = tmp_path / "train.txt"
    bad_list.write_text("\n".join(f"{data}/{line}" for line in lines[:3]) + f"\n{tmp_path}/broken.mp4 0\n")
    cfg = config(data, tmp_path / "run", train_list=str(bad_list), val_list=None, data_root="/", workers=2, epochs=1)
    with pytest.raises(ConfigError, match=r"cannot be decoded: line 4: .*broken.mp4"):
        train(cfg, log=lambda msg: None)


def test_fine_tuning_keeps_the_backbone_and_replaces_a_head_of_another_size(data, uninterrupted, tmp_path):
    from vswin_cli.train import build_model

    full_dir, _ = uninterrupted
    source = weights(full_dir / "best.pt")
    for cfg in (config(data, tmp_path, model=str(full_dir / "best.pt"), arch=None),
                config(data, tmp_path, init=str(full_dir / "best.pt"))):
        model, pretrained = build_model(cfg, num_classes=3)
        assert pretrained and model.head.out_features == 3
        state = model.state_dict()
        backbone = [k for k in source if not k.startswith("head.")]
        assert backbone and all(torch.equal(state[k], source[k]) for k in backbone)
        groups = param_groups(model, 1e-3, 0.05, 0.1)
        assert sorted({g["lr"] for g in groups}) == pytest.approx([1e-4, 1e-3])
