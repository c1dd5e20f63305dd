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
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert not records or records[0]["record"] == "run"  # what produced the output comes first
    return result.exit_code, records[1:], result.stderr


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


def wait_listening(port: int, timeout: float = 30.0, listening: bool = True) -> None:
    """Wait until something listens on 127.0.0.1:port (read from /proc: a probe connection would be the
    feeder's one client), or with `listening=False` until nothing does (the feeder took its client)."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see the feeder listening")
    wanted = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        if any(fields[1] == wanted and fields[3] == "0A" for fields in lines) == listening:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port}: {'nothing listening' if listening else 'still listening'}")


def vswin(args) -> list[str]:
    return [sys.executable, "-m", "vswin_cli", "tag", *args]


def read_lines(proc: subprocess.Popen) -> list[tuple[float, dict]]:
    """(arrival time, record) of each line of the run's stdout, as it comes."""
    lines = []
    for line in proc.stdout:
        record = json.loads(line)
        if record["record"] != "run":  # what produced the output, written before the stream is read
            lines.append((time.time(), record))
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
    # (scored only at the end of the stream, the second segment's would be 2.84 s at least: 7.96 s - 5.12 s)
    assert all(0 < lag < 2.5 for lag in latencies[1:]), latencies


def test_the_python_front_door_yields_a_streams_segments_as_they_are_scored(tiny, recording, file_records, tmp_path):
    """`Tagger.segments(url)`: each segment (record and probabilities) while the stream still runs, then the
    stream's `VideoResult`; the same records as the CLI gives the recording."""
    import torch

    import vswin_cli
    from vswin_cli.records import VideoResult
    from vswin_cli.scoring import ScoredSegment

    option = dict(zip(tiny[0:6:2], tiny[1:6:2]))  # --weights, --arch, --labels
    tagger = vswin_cli.load(weights=option["--weights"], arch=option["--arch"], labels=option["--labels"], runtime="torch")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp_path / "sent.txt"
    feeder = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1", "--log", str(log)])
    try:
        wait_listening(port)
        items = [(time.time(), item) for item in tagger.segments(url, crop_size=32, workers=0)]
        assert feeder.wait(timeout=10) == 0
    finally:
        stop(feeder)
    segments = [item for _, item in items if isinstance(item, ScoredSegment)]
    [result] = [item for _, item in items if isinstance(item, VideoResult)]
    assert isinstance(items[-1][1], VideoResult) and result.video == url
    assert without_key(result.records()) == without_key(file_records)
    assert [s.result for s in segments] == list(result.segments)
    assert all(s.probs.shape == (5,) and abs(float(s.probs.sum()) - 1) < 1e-5 for s in segments)
    assert all(isinstance(s.probs, torch.Tensor) for s in segments)
    # the first segments came while the feeder was still sending (it sends 8 s in real time)
    last_sent = max(sent_times(log).values())
    assert items[0][0] < last_sent - 2.0, (items[0][0], last_sent)


# --- the stages on their own -----------------------------------------------------------------------------


def test_online_planner_gives_plan_segments_of_the_whole_recording():
    from vswin_cli.live_planner import OnlinePlanner
    from vswin_cli.sampling import plan_segments

    rng = np.random.default_rng(0)
    for trial in range(600):
        n = int(rng.integers(1, 120))
        if trial % 3 == 0:
            ts = np.arange(n) / 25.0 + rng.choice([0.0, 1.4])  # constant rate, any start
        elif trial % 3 == 1:
            ts = np.cumsum(rng.uniform(0.01, 0.2, n))  # variable frame rate
        else:
            ts = np.sort(rng.choice(np.arange(200) * 0.04, n, replace=False))  # dropped frames
        window = float(rng.choice([0.04, 0.1, 1.0, 2.56, 10.0, rng.uniform(0.01, 3)]))
        stride = float(rng.choice([window, window / 2, window * 2, 0.01, rng.uniform(0.01, 3)]))
        planner = OnlinePlanner(window, stride)
        online, kept = [], 0
        for t in ts:
            online += planner.push(float(t))
            kept = max(kept, len(planner.ts))
        online += planner.finish()
        assert online == plan_segments(ts, window, stride), (trial, window, stride)
        assert kept <= (window + stride) * 25 + 3 or n < 5 or window > 3  # only the open windows' frames


def test_online_planner_hands_out_each_segment_two_frames_after_its_last():
    from vswin_cli.live_planner import OnlinePlanner

    planner = OnlinePlanner(2.56, 2.56)
    out_at, kept = {}, 0
    for i in range(100_000):  # more than an hour at 25 fps: memory stays flat
        for segment in planner.push(i / 25):
            out_at[segment.index] = (i, segment.end_frame)
        kept = max(kept, len(planner.ts))
    assert all(i == end + 1 for i, end in out_at.values())  # frame `end` gives its end time, then one more
    assert kept <= 2 * 64 + 2 and len(out_at) == 100_000 // 64  # the last and the next window at most


def test_frame_clock_undoes_mpegts_wrap_around_and_repairs_jumps():
    from vswin_cli.live_planner import FrameClock

    clock = FrameClock(1 / 90000, from_zero=True, wraps=True)
    start = (1 << 33) - 3 * 3600  # three frames before the 33-bit counter wraps
    pts = [(start + i * 3600) % (1 << 33) for i in range(6)]
    assert [round(clock.seconds(p), 6) for p in pts] == [0.0, 0.04, 0.08, 0.12, 0.16, 0.2]
    assert clock.discontinuities == 0
    # a splice: the clock jumps back, then forward by an hour; time goes on one frame step later each time
    assert round(clock.seconds(1000), 6) == 0.24 and round(clock.seconds(4600), 6) == 0.28
    assert round(clock.seconds(4600 + 3600 * 90000), 6) == 0.32
    assert clock.discontinuities == 2
    clock.resume_after(5.0)  # a reconnect after 5 s: the gap stays visible
    assert round(clock.seconds(123), 6) == round(0.32 + 0.04 + 5.0, 6)

    file_clock = FrameClock(1 / 12800, from_zero=False, wraps=False)  # a remote file keeps its own clock
    assert file_clock.seconds(17920) == 17920 * (1 / 12800)


def test_inputs_are_classified_and_urls_kept_as_given(tmp_path):
    from vswin_cli.errors import UsageError
    from vswin_cli.sources import StreamInput, find_sources

    (tmp_path / "a.mp4").write_bytes(b"x")
    found = find_sources(["rtsp://cam.local/live", str(tmp_path / "a.mp4"), "pipe:0", "https://h/x.mp4",
                          "/dev/video0"], reconnect=True)
    assert [type(s).__name__ for s in found] == ["VideoInput", "StreamInput", "StreamInput", "StreamInput",
                                                "StreamInput"]
    streams = {s.key: s for s in found if isinstance(s, StreamInput)}
    assert streams["rtsp://cam.local/live"].url == "rtsp://cam.local/live"  # not rtsp:/cam.local/live
    assert streams["rtsp://cam.local/live"].reconnect and not streams["pipe:0"].reconnect
    assert streams["https://h/x.mp4"].kind == "remote" and streams["/dev/video0"].format == "v4l2"
    for bad in (["gopher://x"], ["pipe:3"], ["pipe:0", "pipe:0"]):
        with pytest.raises(UsageError):
            find_sources(bad)


# --- drops, reconnects, a model that falls behind ----------------------------------------------------------


def test_a_feeder_killed_mid_stream_ends_it_with_the_records_so_far(tiny, recording, file_records):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    feeder = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1", "--stop-after", "3.2"])
    try:
        wait_listening(port)
        run = subprocess.run(vswin([url, *tiny]), capture_output=True, text=True, timeout=60)
    finally:
        stop(feeder)
    assert feeder.returncode == 9  # it died without closing the stream properly
    assert "Traceback" not in run.stderr
    records = [r for r in map(json.loads, run.stdout.splitlines()) if r["record"] != "run"]
    assert run.returncode == 0, run.stderr  # over TCP a dead feeder looks like the end of the stream
    assert without_key(records[:1]) == without_key(file_records[:1])  # the segment before the drop, as the file's
    video = records[-1]
    assert video["record"] == "video" and 70 <= video["num_frames"] <= 80 and video["num_segments"] == 2


def test_reconnect_resumes_a_dropped_stream_and_shows_the_gap(tiny, recording, monkeypatch):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    first = second = None
    env = {**os.environ, "VSWIN_RECONNECT_GIVE_UP_S": "3"}
    try:
        first = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1", "--stop-after", "3.2"])
        wait_listening(port)
        run = start(vswin([url, "--reconnect", *tiny]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    env=env)
        wait_listening(port, listening=False)  # the run is connected: the next feeder waits on the same port
        second = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1"])  # the camera, back
        first.wait(timeout=60)
        out, err = run.communicate(timeout=90)
    finally:
        for proc in (first, second, run):
            if proc is not None:
                stop(proc)
    assert run.returncode == 0, err
    assert "Traceback" not in err and "reconnected after" in err
    records = [r for r in map(json.loads, out.splitlines()) if r["record"] != "run"]
    segments = [r for r in records if r["record"] == "segment"]
    assert [s["segment"] for s in segments] == list(range(len(segments)))
    # the second connection's 8 s come after the first's 3.2 s and the gap between them
    assert records[-1]["record"] == "video" and records[-1]["duration"] > 3.2 + 8.0
    # the video record names the stream time lost: one gap, from the first connection's last frame on
    [(gap_from, gap_to)] = records[-1]["gaps"]
    assert 3.0 < gap_from < 3.3 and gap_to > gap_from and "skipped" not in records[-1]
    # the window across the gap lasts its 2.56 s but holds half a second of frames fewer (at least)
    frames = [s["end_frame"] - s["start_frame"] for s in segments]
    assert frames[0] == 64 and min(frames) < 64 - 12 and frames.count(64) == len(frames) - 1
    full = [s for s, n in zip(segments, frames) if n == 64]
    assert all(abs(s["end"] - s["start"] - 2.56) < 0.01 for s in full)


def _read_slowly(policy: str, recording: Path, seconds_per_segment: float):
    """Read a real-time TCP stream with `live_items` and a model that needs `seconds_per_segment`."""
    from vswin_cli.live import LIVE_STATS, live_items
    from vswin_cli.protocol import PROTOCOLS, ClipSpec
    from vswin_cli.segments import DecodeOptions, SegmentViews, VideoDecoded
    from vswin_cli.sources import StreamInput

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    feeder = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1"])
    spec = ClipSpec.for_views(PROTOCOLS["k400"], 1, 1, crop_size=32)
    source = StreamInput(url, f"{url}/{policy}", "live", policy=policy, queue_segments=1)
    items = []
    try:
        wait_listening(port)
        for item in live_items(0, source, spec, DecodeOptions(window_s=0.8)):
            items.append(item)
            if isinstance(item, SegmentViews):
                time.sleep(seconds_per_segment)
    finally:
        stop(feeder)
    segments = [i.plan.segment for i in items if isinstance(i, SegmentViews)]
    assert isinstance(items[-1], VideoDecoded) and items[-1].num_segments == len(segments)
    return segments, LIVE_STATS[source.key], items[-1]


def test_a_model_that_cannot_keep_up_keeps_every_segment_and_reports_the_lag(recording):
    from vswin_cli.sampling import plan_segments

    segments, stats, decoded = _read_slowly("keep", recording, 1.0)
    planned = plan_segments(np.arange(200) / FPS, 0.8, 0.8)  # all 10, as planned for the file
    assert [(s.index, s.start_frame, s.end_frame) for s in segments] == [(s.index, s.start_frame, s.end_frame)
                                                                         for s in planned]
    assert stats.skipped == 0 and stats.lag_s > 1.0  # 10 s of work for 8 s of stream: behind, and it says so
    assert decoded.skipped == () and decoded.gaps == ()  # the video record has neither


def test_a_model_that_cannot_keep_up_skips_segments_to_stay_live(recording, capfd):
    from vswin_cli.sampling import plan_segments

    segments, stats, decoded = _read_slowly("skip", recording, 1.0)
    assert 0 < stats.skipped and len(segments) + stats.skipped == 10
    # the video record names each dropped segment's times: with the kept ones, the whole plan
    planned = {(round(s.t_start, 3), round(s.t_end, 3)) for s in plan_segments(np.arange(200) / FPS, 0.8, 0.8)}
    kept = {(round(s.t_start, 3), round(s.t_end, 3)) for s in segments}
    assert len(decoded.skipped) == stats.skipped and set(decoded.skipped) == planned - kept
    assert [s.index for s in segments] == list(range(len(segments)))  # kept segments numbered in order
    assert any(b.t_start > a.t_end for a, b in zip(segments, segments[1:]))  # the skipped time shows as a gap
    assert stats.lag_s < 1.5  # stays live
    assert capfd.readouterr().err.count("skipped the segment") == stats.skipped


def test_sigterm_ends_a_live_stream_there_with_its_last_segment_and_summary(tiny, recording, file_records):
    feeder = start([sys.executable, str(FEEDER), str(recording), "pipe:1"], stdout=subprocess.PIPE,
                   stderr=subprocess.DEVNULL)
    run = start(vswin(["pipe:0", *tiny]), stdin=feeder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
    feeder.stdout.close()
    try:
        assert json.loads(run.stdout.readline())["record"] == "run"  # written before the stream is read
        first = run.stdout.readline()  # the first segment is out: the stream is being tagged
        run.send_signal(signal.SIGTERM)
        rest, err = run.communicate(timeout=30)
    finally:
        stop(feeder)
        stop(run)
    assert run.returncode == 0, err
    assert "stopping: ending pipe:0 here" in err and "Traceback" not in err
    records = [r for r in map(json.loads, [first, *rest.splitlines()]) if r["record"] != "run"]
    assert without_key(records[:1]) == without_key(file_records[:1])
    video = records[-1]
    assert video["record"] == "video" and 64 < video["num_frames"] < 200
    assert video["num_segments"] == len(records) - 1


def test_report_and_annotate_take_a_streams_records(file_records, tmp_path):
    results = tmp_path / "camera.jsonl"
    url = "rtsp://127.0.0.1:8554/camera"
    results.write_text("".join(json.dumps({**r, "video": url}) + "\n" for r in file_records))
    report = CliRunner().invoke(app, ["report", str(results), "-o", str(tmp_path / "camera.html")])
    assert report.exit_code == 0, report.output
    assert "1 video(s), 4 segment(s), 0 error record(s), 0 playable" in report.stderr  # a page without a player
    assert url in (tmp_path / "camera.html").read_text()
    annotate = CliRunner().invoke(app, ["annotate", str(results), "--out", str(tmp_path / "drawn")])
    assert annotate.exit_code == 1
    assert f"failed: {url}: a stream, not a file, so it cannot be read again" in annotate.stderr


def test_streams_that_cannot_be_opened_get_clear_error_records(tiny):
    port = free_port()  # nothing listens there
    inputs = ["/dev/video63", f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{port}/clip.mp4"]
    code, records, stderr = tag_cli([*inputs, *tiny])
    assert code == 1 and "Traceback" not in stderr
    assert [r["video"] for r in records] == inputs and all(r["record"] == "error" for r in records)
    messages = [r["error"]["message"] for r in records]
    assert messages[0].startswith("/dev/video63: cannot open it") and "No such file" in messages[0]
    assert all("Connection refused" in m for m in messages[1:])


def test_pipe0_needs_a_stream_on_stdin():
    from vswin_cli.errors import UsageError
    from vswin_cli.sources import check_stdin_use

    check_stdin_use(["pipe:0"], stdin_is_terminal=False)
    check_stdin_use(["-"], stdin_is_terminal=True)  # `-` keeps its meaning: a list of paths
    with pytest.raises(UsageError, match="both read standard input"):
        check_stdin_use(["-", "pipe:0"], stdin_is_terminal=False)
    with pytest.raises(UsageError, match="which is a terminal"):
        check_stdin_use(["pipe:0"], stdin_is_terminal=True)
    code, _, stderr = tag_cli(["-", "pipe:0", "--weights", "x.pth"])
    assert code == 2 and "both read standard input" in stderr


def test_reconnect_waits_for_a_stream_that_is_not_up_yet(recording, capfd):
    from vswin_cli.live import _open_first
    from vswin_cli.sources import StreamInput

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    feeder = None

    def camera_comes_up():
        nonlocal feeder
        time.sleep(1.0)
        feeder = start([sys.executable, str(FEEDER), str(recording), url + "?listen=1"])

    later = threading.Thread(target=camera_comes_up)
    later.start()
    try:
        container, stream = _open_first(StreamInput(url, url, "live", reconnect=True), threading.Event())
        kind = stream.type
        container.close()
    finally:
        later.join()
        stop(feeder)
    assert kind == "video"
    assert "cannot open it yet" in capfd.readouterr().err
