"""DDP on CPU (gloo): 2 processes x batch 2 reach the weights of 1 process x batch 4, and a 2-process
`vswin eval` gathers every video (and its probabilities, `--scores`) on rank 0.

The ranks are started as torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT, and the
agent's store, TORCHELASTIC_USE_AGENT_STORE), but from the test: torchrun's stores listen on every
interface, and a test may open sockets on 127.0.0.1 only. Here the store listens on a socket bound to
127.0.0.1 and gloo on `lo`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist

from test_train_data import make_motion_dataset
from test_train_resume import assert_same_weights, cli_args, config, weights
from vswin_cli.metrics import metrics_from_scores_file
from vswin_cli.train import train

NO_DROPOUT = dict(patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 4, 4],
                  drop_path_rate=0.0, head_dropout=0.0, num_classes=4)

pytestmark = pytest.mark.slow  # two processes train and evaluate


def torchrun(*args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 -m vswin_cli ARGS`, every socket on 127.0.0.1.

    Returns rank 0's exit status with every rank's stderr (ranks that fail are reported by theirs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=240), master_listen_fd=listener.detach())  # the store owns it
    processes = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks),
                   LOCAL_WORLD_SIZE=str(ranks), GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   TORCHELASTIC_USE_AGENT_STORE="True", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
        processes.append(subprocess.Popen([sys.executable, "-m", "vswin_cli", *args], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        del store  # the ranks' store lives until every rank is done
    codes = [process.returncode for process in processes]
    return subprocess.CompletedProcess(args, max(codes, key=abs), outputs[0][0],
                                       "".join(err for _, err in outputs))


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
