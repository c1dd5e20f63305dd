"""URLs and live streams end to end: an http file, real-time streams on a pipe and on loopback TCP.

Every stream is served by a feeder the test starts (tests/live_feeder.py: the packets of a test-made
MPEG-TS file, paced in real time), with a timeout, stopped by pid; nothing leaves 127.0.0.1. The
records of a stream are compared with those of the same file tagged as a file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import save_tiny_model
from http_server import FileServer
from vswin_cli.app import app

FEEDER = Path(__file__).with_name("live_feeder.py")
FPS = 25


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return [*save_tiny_model(tmp_path_factory.mktemp("tiny-model")), "--workers", "0", "-q"]


def make_ts(path: Path, num_frames: int, seed: int = 0, height: int = 48, width: int = 64) -> Path:
    """An H.264 MPEG-TS file of moving noise at 25 fps whose first frame is at 0 s (as a recording of a stream)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mpegts", options={"mpegts_copyts": "1"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "bframes": "0", "crf": "20"}
        stream.gop_size = FPS
        for i in range(num_frames):
            shift = (i * 3) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + width]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """An 8-second stream recorded to a file: 200 frames, three 2.56 s windows and the last moved back to the end."""
    return make_ts(tmp_path_factory.mktemp("live") / "recording.ts", 200)


def tag_cli(args) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(app, ["tag", *args])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def without_key(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "video"} for r in records]


@pytest.fixture(scope="module")
def file_records(tiny, recording):
    code, records, _ = tag_cli([str(recording), *tiny])
    assert code == 0 and [r["record"] for r in records] == ["segment"] * 4 + ["video"]
    return records


def start(args, **kwargs) -> subprocess.Popen:
    """A subprocess in its own process group (killed by pid at the end)."""
    return subprocess.Popen(args, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port (read from /proc: a probe connection would be the
    feeder's one client)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see the feeder listening")
    wanted = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return
        time.sleep(0.05)
    raise AssertionError(f"the feeder is not listening on port {port}")


def vswin(args) -> list[str]:
    return [sys.executable, "-m", "vswin_cli", "tag", *args]


def read_lines(proc: subprocess.Popen) -> list[tuple[float, dict]]:
    """(arrival time, record) of each line of the run's stdout, as it comes."""
    lines = []
    for line in proc.stdout:
        lines.append((time.time(), json.loads(line)))
    return lines


def sent_times(log: Path) -> dict[int, float]:
    """Frame number -> the wall-clock time the feeder sent it."""
    times = {}
    for line in log.read_text().splitlines():
        t, sent = map(float, line.split())
        times[round(t * FPS)] = sent
    return times


def test_an_http_url_gives_the_files_records(tiny, recording, file_records, tmp_path):
    mp4 = tmp_path / "clip.mp4"  # an MP4 with its index at the end: the demuxer seeks over HTTP
    with av.open(str(recording)) as source, av.open(str(mp4), "w") as out:
        target = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = target
                out.mux(packet)
    code, expected, _ = tag_cli([str(mp4), *tiny])
    assert code == 0
    with FileServer() as server:
        server.add("/clip.mp4", mp4.read_bytes(), drop_after=3000)  # the first GET is cut off: resumed by Range
        url = server.url("/clip.mp4")
        code, records, stderr = tag_cli([url, *tiny])
        assert code == 0, stderr
        assert len(server.gets("/clip.mp4")) >= 2  # the cut-off download went on in a new request
    assert {r["video"] for r in records} == {url}  # the key is the URL as given, not a mangled path
    assert without_key(records) == without_key(expected)
    assert without_key(expected) == without_key(file_records)  # the same frames as the TS recording


@pytest.mark.parametrize("transport", ["pipe", "tcp"])
def test_a_real_time_stream_gives_the_recorded_files_records_as_it_goes(tiny, recording, file_records, tmp_path,
                                                                        transport):
    log = tmp_path / "sent.txt"
    if transport == "pipe":
        feeder = start([sys.executable, str(FEEDER), str(recording), "pipe:1", "--log", str(log)],
                       stdout=subprocess.PIPE)
        run = start(vswin(["pipe:0", *tiny]), stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
        feeder.stdout.close()
        url = "pipe:0"
    else:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        feeder = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1", "--log", str(log)])
        wait_listening(port)
        run = start(vswin([url, *tiny]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reader = threading.Thread(target=lambda: lines.extend(read_lines(run)))
        lines: list[tuple[float, dict]] = []
        reader.start()
        reader.join(timeout=60)
        assert run.wait(timeout=10) == 0, run.stderr.read()
        assert feeder.wait(timeout=10) == 0
    finally:
        stop(feeder)
        stop(run)
    records = [r for _, r in lines]
    assert {r["video"] for r in records} == {url}
    assert without_key(records) == without_key(file_records)
    # The segments came out as the stream went, each shortly after the feeder sent its last frame (the
    # first may wait for the run to start: a pipe holds what the feeder sent meanwhile).
    sent = sent_times(log)
    latencies = [arrived - sent[r["end_frame"] - 1] for arrived, r in lines[:3]]
    assert all(0 < lag < 2.0 for lag in latencies[1:]), latencies
    assert lines[2][0] < sent[len(sent) - 1]  # the third window was out before the stream's last frame was sent
