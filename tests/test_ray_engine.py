"""`vswin tag --engine ray` (issue 23): the same bytes as `--engine local`, on loopback, through faults.

One Ray head per module (`ray start --head --block` on 127.0.0.1, 2 CPUs, a 200 MB object store) is
joined by each run with `--ray-address`; one test lets `vswin tag` start its own local instance. Every
Ray process is started here in a new session and stopped by its process group id. Skipped without Ray.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray engine needs the vswin[ray] extra (ray[data])")

from test_tag_cli import make_video, tiny  # noqa: E402,F401  (tiny is a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(session: int) -> set[int]:
    """Processes in session `session` (every process a `start_new_session` child started)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    pids.add(int(entry))
            except OSError:
                pass
    return pids


def _listeners(pids: set[int]) -> list[str]:
    """Local addresses of TCP/UDP sockets listening in processes `pids` (from `ss -ltunp`)."""
    out = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.append(line.split()[4])
    return found


def _stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """End a process started in its own session, and everything it started, by its process group id."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_node(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(["ray", "start", "--block", "--disable-usage-stats", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="module")
def head():
    """The address of a Ray head on 127.0.0.1 for this module."""
    port = _free_port()
    proc = _start_node(["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                        f"--object-store-memory={200 << 20}", "--include-dashboard=false"], RAY_ENV)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while _alive_nodes(address) < 1:
            assert proc.poll() is None, "ray start --head ended"
            assert time.monotonic() < deadline, "the Ray head did not come up in 180 s"
            time.sleep(1)
        yield address, proc
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Mixed videos: two frame rates, one shorter than a window, a longer one, one unreadable."""
    root = tmp_path_factory.mktemp("ray-videos")
    make_video(root / "a.mp4", 150, fps=25, seed=1)
    make_video(root / "b.mp4", 40, fps=20, seed=2)
    make_video(root / "c" / "long.mp4", 1800, fps=30, seed=3)  # 28 segments: time to act mid-run
    (root / "d.mp4").write_bytes(b"not a video")
    return root


def _tag(args: list[str], **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "vswin_cli", "tag", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise
    return proc.returncode, err


@pytest.fixture(scope="module")
def local_output(tiny, folder, tmp_path_factory):
    """The local engine's output and exit status on `folder` (what every Ray run must reproduce)."""
    out = tmp_path_factory.mktemp("local") / "tags.jsonl"
    code, err = _finish(_tag([str(folder), *tiny, "-o", str(out)]))
    assert code == 1, err  # the unreadable video
    return out.read_bytes(), code


def _wait_for_segments(path: Path, proc: subprocess.Popen, count: int, timeout: float = 240) -> None:
    """Wait until `path` (or its .part) holds `count` segment records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended first: {proc.stderr.read()}"
        for candidate in (path, path.with_name(path.name + ".part")):
            if candidate.exists() and candidate.read_bytes().count(b'"record": "segment"') >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"{path} never got {count} segments")


def test_ray_output_equals_local_byte_for_byte(tiny, folder, local_output, head, tmp_path):
    out = tmp_path / "tags.jsonl"
    code, err = _finish(_tag([str(folder), *tiny, "-o", str(out), "--engine", "ray", "--ray-address", head[0]]))
    assert (out.read_bytes(), code) == local_output, err
    assert "d.mp4" in err and "streaming_executor" not in err # Ray Data's own lines stay quiet without -v


def test_a_local_instance_is_started_on_loopback_only(tiny, folder, local_output, tmp_path):
    out = tmp_path / "tags.jsonl"
    proc = _tag([str(folder), *tiny, "-o", str(out), "--engine", "ray"], start_new_session=True)
    seen = set()
    while proc.poll() is None:
        seen.update(_listeners(_session_pids(proc.pid)))
        time.sleep(0.5)
    code, err = _finish(proc)
    assert out.exists(), err
    assert (out.read_bytes(), code) == local_output, err
    assert seen, "no listening socket of the Ray instance was seen"
    hosts = {addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:") for addr in seen}
    assert hosts <= {"127.0.0.1", "::1"}, sorted(seen)


def _ray_workers(head_proc: subprocess.Popen, name: str) -> list[int]:
    """Ray worker processes of the module's head whose command line holds `name`."""
    found = []
    for pid in _session_pids(head_proc.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith("ray::") and name in cmdline:
            found.append(pid)
    return found


@pytest.mark.slow
def test_killed_ray_workers_cost_nothing(tiny, folder, local_output, head, tmp_path):
    """SIGKILL the model actor and a decode task's worker mid-run: Ray restarts and retries them."""
    out = tmp_path / "tags.jsonl"
    proc = _tag([str(folder), *tiny, "-o", str(out), "--engine", "ray", "--ray-address", head[0]])
    _wait_for_segments(out, proc, 1)
    killed = []
    for name in ("MapBatches(_ModelActor)", "FlatMap(_decode_row)"):
        for pid in _ray_workers(head[1], name)[:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(name)
    assert "MapBatches(_ModelActor)" in killed
    code, err = _finish(proc)
    assert (out.read_bytes(), code) == local_output, err


@pytest.mark.slow
def test_resume_after_an_interrupted_ray_run(tiny, folder, local_output, head, tmp_path):
    out = tmp_path / "tags.jsonl"
    args = [str(folder), *tiny, "-o", str(out), "--engine", "ray", "--ray-address", head[0]]
    proc = _tag(args)
    _wait_for_segments(out, proc, 2)
    proc.kill()  # the driver: the cluster stays, the output stays a .part
    proc.wait(30)
    assert not out.exists() and out.with_name(out.name + ".part").exists()
    code, err = _finish(_tag([*args, "--resume"]))
    assert (out.read_bytes(), code) == local_output, err


@pytest.fixture(scope="module")
def long_run(tiny, tmp_path_factory):
    """Two long videos and their local output, one segment per model call: segments trickle out rather than
    arrive in batches, so the run is still going when a signal comes after its first records."""
    root = tmp_path_factory.mktemp("ray-long")
    make_video(root / "a.mp4", 4500, fps=30, seed=4)
    make_video(root / "b.mp4", 4500, fps=30, seed=5)
    out = root.parent / (root.name + "-local.jsonl")
    options = [*tiny, "--batch-views", "1"]
    code, err = _finish(_tag([str(root), *options, "-o", str(out)]))
    assert code == 0, err
    return root, options, out.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_a_ray_run_and_keep_what_is_finished(long_run, head, tmp_path, sig):
    folder, options, local = long_run
    out = tmp_path / "tags.jsonl"
    args = [str(folder), *options, "-o", str(out), "--engine", "ray", "--ray-address", head[0]]
    proc = _tag(args)
    _wait_for_segments(out, proc, 2)
    proc.send_signal(sig)
    code, err = _finish(proc, timeout=120)
    # as on the local engine: exit 130, what is written published (not left in .part), no stack dump
    assert code == 130, err
    assert "interrupted: the finished videos are kept" in err and "Traceback" not in err and "***" not in err
    assert out.exists() and not out.with_name(out.name + ".part").exists()
    written = out.read_bytes()
    assert local.startswith(written) and len(written) < len(local)
    code, err = _finish(_tag([*args, "--resume"]))
    assert (out.read_bytes(), code) == (local, 0), err


# `ray start --address` for a second node of the loopback head: `ray start` refuses worker nodes with
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with 1 it swaps 127.0.0.1 for the machine's address, where
# the head does not listen; so the swap is switched off here (the node's own sockets: --node-ip-address).
SECOND_NODE = """
import sys
import ray._private.services as services
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_a_second_node_killed_mid_run_costs_nothing(tiny, folder, local_output, head, tmp_path):
    log = tmp_path / "node.log"
    node = subprocess.Popen(
        [sys.executable, "-c", SECOND_NODE, "start", "--block", "--disable-usage-stats", f"--address={head[0]}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", f"--object-store-memory={100 << 20}"],
        env={**os.environ, **RAY_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"},
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _alive_nodes(head[0]) < 2:
            assert node.poll() is None, f"the second node did not start: {log.read_text()}"
            assert time.monotonic() < deadline, "the second node did not join in 120 s"
            time.sleep(1)
        hosts = {a.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:") for a in _listeners(_session_pids(node.pid))}
        assert hosts <= {"127.0.0.1", "::1"}, hosts
        out = tmp_path / "tags.jsonl"
        proc = _tag([str(folder), *tiny, "-o", str(out), "--engine", "ray", "--ray-address", head[0]])
        _wait_for_segments(out, proc, 1)
        _stop(node, timeout=10)  # the whole node: raylet, object store, its workers
        code, err = _finish(proc)
        assert (out.read_bytes(), code) == local_output, err
    finally:
        _stop(node)


def _alive_nodes(address: str) -> int:
    """Live nodes of the cluster at `address` (0 while it is not up)."""
    probe = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR');"
                            "print(sum(n['Alive'] for n in ray.nodes()))", address],
                           capture_output=True, text=True, timeout=120, env={**os.environ, **RAY_ENV})
    return int(probe.stdout.strip() or 0) if probe.returncode == 0 else 0


def test_without_ray_the_engine_is_a_clear_error(monkeypatch):
    import importlib.util

    from vswin_cli.checks import check_engine
    from vswin_cli.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        check_engine("ray")
    assert "vswin[ray]" in err.value.hint
    check_engine("local")  # the local engine needs nothing more


def test_engine_ray_refuses_streams_and_missing_ray_before_loading_a_model(tmp_path):
    """Both answer at once, from the command line check, without PyTorch."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, "-m", "vswin_cli", "tag", "rtsp://127.0.0.1:9/cam", "--engine", "ray",
                          "--arch", "swin-t"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and "--engine ray reads files" in run.stderr and "--engine local" in run.stderr
    hide_ray = "import importlib.util as u, sys; real = u.find_spec; u.find_spec = lambda n, *a: None if n == 'ray' else real(n, *a); "
    video = tmp_path / "a.mp4"
    video.write_bytes(b"")
    script = (hide_ray + "sys.argv = ['vswin', 'tag', sys.argv[1], '--engine', 'ray']\n"
              "from vswin_cli.app import main\ntry:\n    main()\nfinally:\n    print('torch loaded:', 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script, str(video)], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1 and "vswin[ray]" in run.stderr, run.stderr
    assert "torch loaded: False" in run.stdout



def test_parquet_read_back_by_pandas_equals_the_json_lines(tiny, folder, local_output, head, tmp_path):
    import pandas as pd

    out = tmp_path / "tags.parquet"
    code, err = _finish(_tag([str(folder), *tiny, "-o", str(out), "--engine", "ray", "--ray-address", head[0]]))
    assert code == local_output[1], err
    rows = pd.read_parquet(out).to_dict("records")
    records = [json.loads(line) for line in local_output[0].splitlines()]
    assert [(r["record"], r.get("video")) for r in records] == [(r["record"], r["video"] if r["record"] != "run" else None)
                                                               for r in rows]
    for record, row in zip(records, rows):
        if record["record"] == "run":
            assert json.loads(row["run"]) == record
        elif record["record"] == "error":
            assert (row["error_type"], row["error_message"]) == (record["error"]["type"], record["error"]["message"])
        else:
            assert list(row["labels"]) == [t["label"] for t in record["top"]]
            assert list(row["scores"]) == [t["score"] for t in record["top"]]
            assert list(row["indices"]) == [t["index"] for t in record["top"]]
            assert row["views"] == record["views"] and row["model"] == record["model"]
            if record["record"] == "segment":
                assert [row[k] for k in ("segment", "start", "end", "start_frame", "end_frame")] == \
                       [record[k] for k in ("segment", "start", "end", "start_frame", "end_frame")]
            else:
                assert [row[k] for k in ("num_segments", "duration", "num_frames", "fps")] == \
                       [record[k] for k in ("num_segments", "duration", "num_frames", "fps")]


@pytest.mark.slow
def test_eval_on_ray_gives_the_local_metrics_and_predictions(tiny, folder, head, tmp_path):
    (tmp_path / "val.txt").write_text("a.mp4 archery\nb.mp4 bowling\nc/long.mp4 cooking\nd.mp4 dancing\n")
    outputs = []
    for engine in (["--engine", "local"], ["--engine", "ray", "--ray-address", head[0]]):
        out = tmp_path / engine[1]
        out.mkdir()
        proc = subprocess.run([sys.executable, "-m", "vswin_cli", "eval", "--dataset", str(tmp_path / "val.txt"),
                               "--data-root", str(folder), *tiny, "--views", "2x1", "-o", str(out / "m.json"),
                               "--predictions", str(out / "p.jsonl"), *engine],
                              capture_output=True, text=True, timeout=300)
        outputs.append((proc.returncode, (out / "m.json").read_bytes(), (out / "p.jsonl").read_bytes()))
    assert outputs[0][0] == 1, "the unreadable video fails"
    assert outputs[1] == outputs[0]


def test_what_a_retried_task_sends_again_is_dropped():
    import numpy as np
    import torch

    from vswin_cli.aggregate import VideoError
    from vswin_cli.engines.ray import SegmentScores, _take
    from vswin_cli.sampling import Segment, SegmentPlan
    from vswin_cli.scoring import VideoScores
    from vswin_cli.segments import VideoDecoded, VideoFailed

    def scores(index: int, value: float) -> SegmentScores:
        plan = SegmentPlan(Segment(index, index * 10, index * 10 + 10, index * 1.0, index + 1.0),
                           np.zeros((1, 2), np.int64), np.ones(1, np.float32))
        return SegmentScores(0, plan, torch.full((3,), value))

    state = VideoScores()
    for item in (scores(0, 0.1), scores(1, 0.2), scores(1, 0.9)):  # a retry sends segment 1 again
        _take(state, item)
    assert sorted(state.probs) == [0, 1] and state.probs[1][0].item() == pytest.approx(0.2)
    state.probs.pop(0), state.plans.pop(0)
    state.emitted = 1  # segment 0 was written
    _take(state, scores(0, 0.5))
    assert 0 not in state.probs
    _take(state, VideoDecoded(0, 2, 20, 10.0, 2.0))
    assert state.finished()
    _take(state, VideoFailed(0, VideoError("v", "X", "first")))
    _take(state, VideoFailed(0, VideoError("v", "X", "second")))
    assert state.failed.message == "first"
