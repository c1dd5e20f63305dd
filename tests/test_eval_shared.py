"""`vswin eval` over every file in ../shared/videos with a tiny model: broken files are listed with their
reason and counted, every readable video is scored, the run completes and exits 1."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import shared_path
from models import VideoSwin, get_config, save_checkpoint
from vswin_cli.app import app


@pytest.mark.slow
def test_eval_on_the_shared_videos_reports_failures_and_completes(tmp_path):
    videos = shared_path("videos")
    catalogue = json.loads((videos / "catalogue.json").read_text())["files"]
    expected = {info["name"]: info["expected"] for info in catalogue}
    names = sorted(p.name for p in videos.iterdir() if p.name != "catalogue.json")
    assert set(names) == set(expected)

    with (tmp_path / "list.csv").open("w", newline="") as f:  # CSV: one name has spaces and quotes
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([name, i % 3] for i, name in enumerate(names))
    torch.manual_seed(0)
    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                                             window_size=(2, 4, 4), num_classes=3))
    weights = save_checkpoint(tmp_path / "tiny.pt", model, ["a", "b", "c"],
                              protocol={"sampling": "kinetics", "clip_len": 4, "frame_interval": 2, "num_clips": 2,
                                        "num_crops": 3, "crop_size": 32, "resize_short": 32})

    out = tmp_path / "m.json"
    preds = tmp_path / "p.jsonl"
    args = ["eval", "--dataset", str(tmp_path / "list.csv"), "--data-root", str(videos), "--weights", str(weights),
            "-o", str(out), "--predictions", str(preds), "--workers", "2", "--batch-views", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # some inputs failed, after all others were done
    metrics = json.loads(out.read_text())
    failed = {f["video"]: f["reason"] for f in metrics["failed"]}
    assert metrics["num_videos_listed"] == len(names)
    assert metrics["num_videos_used"] + metrics["num_videos_failed"] == len(names)
    assert metrics["num_videos_failed"] == len(failed)
    for name, what in expected.items():
        if what.startswith("clear error"):
            assert name in failed and failed[name], name
            assert f"failed: {name}" in result.output
        if what.startswith("decode OK") and " or " not in what:
            assert name not in failed, (name, failed.get(name))
    assert metrics["protocol"]["num_clips"] == 2 and metrics["protocol"]["crop_size"] == 32
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert sorted(r["video"] for r in records) == names
    assert {r["video"] for r in records if "error" in r} == set(failed)

    # --resume keeps the records already written and evaluates nothing again.
    result = CliRunner().invoke(app, args + ["--resume"])
    assert result.exit_code == 1
    again = json.loads(out.read_text())
    assert again["num_videos_resumed"] == len(names)
    assert {k: again[k] for k in ("top1", "top5", "failed")} == {k: metrics[k] for k in ("top1", "top5", "failed")}
