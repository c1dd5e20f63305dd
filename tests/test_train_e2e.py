"""End to end on a synthetic action dataset: `vswin train` a tiny model on CPU, `vswin eval` it on a
held-out split, and `vswin tag` a long video made of clips of known classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from test_train_data import MOTIONS, make_motion_dataset, motion_frames, write_video
from vswin_cli.app import app

TINY = dict(patch_size=[2, 4, 4], embed_dim=48, depths=[1, 1], num_heads=[1, 2], window_size=[2, 4, 4],
            drop_path_rate=0.0, head_dropout=0.0, num_classes=4)
pytestmark = pytest.mark.slow  # trains 8 epochs; the default run trains in test_train_resume and test_first_ten_minutes

CLIP = ["--clip-len", "8", "--frame-interval", "1", "--crop-size", "32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(dataset root, run folder, train output) after training the tiny model once for the module."""
    root = tmp_path_factory.mktemp("motion")
    make_motion_dataset(root, {"train": 24, "val": 4}, seed=0)
    (root / "tiny.json").write_text(json.dumps(TINY))
    run = root / "run"
    args = ["train", "--train-list", str(root / "train.txt"), "--val-list", str(root / "val.txt"),
            "--data-root", str(root), "--labels", str(root / "labels.txt"), "--arch", str(root / "tiny.json"),
            "--epochs", "8", "--batch-size", "8", "--lr", "1e-3", "--warmup-epochs", "1", "--min-crop-area", "0.5",
            "--workers", "2", "--out-dir", str(run), *CLIP]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return root, run, result


def test_train_writes_checkpoints_and_metrics(trained):
    root, run, result = trained
    assert {"best.pt", "last.pt", "epoch_008.pt", "epoch_007.pt", "metrics.jsonl", "metrics.csv"} <= {p.name for p in run.iterdir()}
    assert not (run / "epoch_006.pt").exists()  # --keep-checkpoints 2
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert all(0.0 <= r["val_top1"] <= 1.0 and r["val_top5"] == 1.0 for r in rows)  # 4 classes: top-5 is always right
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,lr,val_top1") and len(csv_lines) == 9
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["format"] == "vswin" and checkpoint["labels"] == list(MOTIONS) and checkpoint["epoch"] == 8
    assert {"optimizer", "scheduler", "rng", "train_config", "config", "model"} <= set(checkpoint)
    best = max(r["val_top1"] for r in rows)
    assert torch.load(run / "best.pt", weights_only=True)["best_top1"] == best
    assert checkpoint["train_config"]["flip"] == "auto" and "left" in checkpoint["labels"]  # flips were off


def test_eval_on_held_out_videos_is_well_above_chance(trained, tmp_path):
    root, run, _ = trained
    held_out = make_motion_dataset(tmp_path, {"test": 8}, seed=123)["test"]
    out = tmp_path / "metrics.json"
    preds = tmp_path / "preds.jsonl"
    result = CliRunner().invoke(app, ["eval", "--dataset", str(held_out), "--weights", str(run / "best.pt"),
                                      "-o", str(out), "--predictions", str(preds), "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    print(f"held-out top-1 {metrics['top1']:.3f} (chance 0.25)")
    assert metrics["num_videos_used"] == 32 and metrics["num_videos_failed"] == 0 and metrics["failed"] == []
    assert metrics["protocol"] == {"sampling": "kinetics", "clip_len": 8, "frame_interval": 1, "num_clips": 4,
                                   "num_crops": 3, "crop_size": 32}
    assert metrics["top1"] >= 0.6  # chance is 0.25
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(records) == 32 and sum(r["correct"] for r in records) == round(metrics["top1"] * 32)
    per_class = (tmp_path / "metrics.per_class.csv").read_text().splitlines()
    assert per_class[0] == "index,name,count,correct,accuracy" and per_class[1].startswith("0,left,8,")


def test_tag_labels_each_segment_of_a_concatenated_video(trained, tmp_path):
    root, run, _ = trained
    tag = pytest.importorskip("vswin_cli.commands.tag")  # lands with issue 6
    del tag
    rng = np.random.default_rng(7)
    order = ["right", "down", "left", "up"]
    write_video(tmp_path / "long.mp4", np.concatenate([motion_frames(m, rng, 16) for m in order]), fps=8)
    result = CliRunner().invoke(app, ["tag", str(tmp_path / "long.mp4"), "--weights", str(run / "best.pt"),
                                      "--window", "2", "--clip-len", "8", "--frame-interval", "1", "--crop-size", "32",
                                      "--views", "paper", "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    segments = [r for r in map(json.loads, result.stdout.splitlines()) if "segment" in r]
    assert len(segments) == 4
    predicted = [s["top"][0]["label"] for s in sorted(segments, key=lambda s: s["segment"])]
    print(f"tag on the concatenated video: {predicted} for {order}")
    assert sum(p == m for p, m in zip(predicted, order)) >= 3, predicted
