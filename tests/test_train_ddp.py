"""DDP via torchrun on CPU (gloo): 2 processes x batch 2 reach the weights of 1 process x batch 4, and a
2-process `vswin eval` gathers every video (and its probabilities, `--scores`) on rank 0."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from test_train_data import make_motion_dataset
from test_train_resume import assert_same_weights, cli_args, config, weights
from vswin_cli.metrics import metrics_from_scores_file
from vswin_cli.train import train

NO_DROPOUT = dict(patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 4, 4],
                  drop_path_rate=0.0, head_dropout=0.0, num_classes=4)

pytestmark = pytest.mark.slow  # two torchrun processes train and evaluate


def torchrun(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vswin_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def test_two_processes_equal_one_process_with_the_whole_batch(tmp_path):
    data = tmp_path / "data"
    make_motion_dataset(data, {"train": 3, "val": 2}, seed=2)
    (data / "tiny.json").write_text(json.dumps(NO_DROPOUT))
    single = config(data, tmp_path / "single", epochs=2, batch_size=4, val_list=None)
    train(single, log=lambda msg: None)

    ddp = dataclasses.replace(single, out_dir=str(tmp_path / "ddp"), batch_size=2)
    out = torchrun(*cli_args(ddp))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "world size 2" in out.stderr
    assert_same_weights(weights(tmp_path / "ddp" / "last.pt"), weights(tmp_path / "single" / "last.pt"))
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["epoch"] == 2

    preds = tmp_path / "preds.jsonl"
    out = torchrun("eval", "--dataset", str(data / "val.txt"), "--weights", str(tmp_path / "ddp" / "last.pt"),
                   "-o", str(tmp_path / "m.json"), "--predictions", str(preds), "--workers", "0", "-q",
                   "--scores", str(tmp_path / "s.npz"))
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_videos_used"] == 8 and metrics["num_videos_listed"] == 8
    listed = [line.split()[0] for line in (data / "val.txt").read_text().splitlines()]
    videos = sorted(json.loads(line)["video"] for line in preds.read_text().splitlines())
    assert videos == sorted(listed)
    # Rank 0 gathered every video's probabilities into one scores file, in list order.
    recomputed = metrics_from_scores_file(tmp_path / "s.npz").summary()
    assert recomputed == {key: metrics[key] for key in recomputed}
    with np.load(tmp_path / "s.npz") as scores:
        assert scores["videos"].tolist() == listed and not scores["failed"].any()
