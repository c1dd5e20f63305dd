"""Nothing lost under faults (issue 12) and long videos streamed and resumed inside (issue 15).

Each test runs the real `vswin tag` (in a child process where it must be killed) with the tiny model of
test_tag_cli on generated videos. The child's decoder is patched to hang (or die) at a chosen video or
segment, so the parent can act at a known point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_tag_cli import jsonl, make_video, run, tiny  # noqa: F401  (tiny is a fixture)

# `vswin tag` whose decoder hangs (or kills its own process) when it reaches video HANG_VIDEO after
# yielding HANG_AFTER segments of it. HANG_ACTION is "sleep" or "kill".
PATCHED_TAG = """
import os, signal, sys, time
import vswin_cli.segments as segments
real = segments.segment_views
def patched(pos, video, *args):
    count = 0
    for item in real(pos, video, *args):
        if os.path.basename(video.key) == os.environ["HANG_VIDEO"] and count >= int(os.environ.get("HANG_AFTER", "0")):
            if os.environ.get("HANG_ACTION") == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        count += isinstance(item, segments.SegmentViews)
        yield item
segments.segment_views = patched
from vswin_cli.app import app
app(["tag", *sys.argv[1:]], prog_name="vswin")
"""


def _start(args, hang_video: str, hang_after: int = 0, action: str = "sleep", **popen):
    env = {**os.environ, "HANG_VIDEO": hang_video, "HANG_AFTER": str(hang_after), "HANG_ACTION": action}
    return subprocess.Popen([sys.executable, "-c", PATCHED_TAG, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **popen)


def _wait_for(path, predicate, proc, timeout: float = 120.0) -> None:
    """Wait until the complete lines of `path` satisfy `predicate` (the child may be mid-write)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if path.exists():
            lines = path.read_bytes().split(b"\n")[:-1]
            if predicate([json.loads(line) for line in lines]):
                return
        time.sleep(0.1)
    raise AssertionError(f"{path} never got what the test waits for")


def _records(kind: str, count: int):
    return lambda records: sum(r["record"] == kind for r in records) >= count


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six videos with an undecodable one second in input order."""
    root = tmp_path_factory.mktemp("faults-in")
    for i, frames in enumerate([70, 30, 100, 40, 64]):
        make_video(root / f"{i}.mp4", frames, seed=i)
    (root / "0_bad.mp4").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A 40 s video of 16 segments at the default window (64 frames at 25 fps)."""
    return make_video(tmp_path_factory.mktemp("long") / "long.mp4", 1000, height=24, width=32)


ARGS = ["--batch-views", "1", "--top-k", "2", "--merge"]


def test_a_second_run_on_the_same_output_is_refused_at_once(tiny, folder, tmp_path):
    out = tmp_path / "out.jsonl"
    first = _start([str(folder), *tiny, *ARGS, "-o", str(out)], "3.mp4")
    try:
        _wait_for(out.with_name("out.jsonl.part"), _records("video", 2), first)
        second = run([str(folder), *tiny, *ARGS, "-o", str(out)])
        assert second.exit_code == 1
        assert f"another vswin run (process {first.pid}) is writing this output" in second.stderr
        assert first.poll() is None  # the first run is untouched
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("hang_video", [pytest.param("1.mp4", marks=pytest.mark.slow), "3.mp4"])
def test_resume_after_a_kill_past_a_failed_video_keeps_input_order(tiny, folder, tmp_path, hang_video):
    full = run([str(folder), *tiny, *ARGS, "-o", str(tmp_path / "full.jsonl")])
    assert full.exit_code == 1  # 0_bad.mp4
    expected = (tmp_path / "full.jsonl").read_bytes()
    out = tmp_path / "out.jsonl"
    proc = _start([str(folder), *tiny, *ARGS, "-o", str(out)], hang_video)
    try:
        _wait_for(out.with_name("out.jsonl.part"), _records("error", 1), proc)  # past the bad file
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    resumed = run([str(folder), *tiny, *ARGS, "-o", str(out), "--resume"])
    assert resumed.exit_code == 1
    assert out.read_bytes() == expected
    again = run([str(folder), *tiny, *ARGS, "-o", str(out), "--resume"])  # over a complete file, as the README suggests
    assert again.exit_code == 1 and out.read_bytes() == expected


@pytest.mark.parametrize("tail", [b'{"record": "segment", "video": "\xe6\x97', b"\xff\xfe\x00garbage", b'{"rec'])
def test_a_torn_or_invalid_utf8_tail_is_discarded(tiny, folder, tmp_path, tail):
    full = run([str(folder), *tiny, *ARGS, "-o", str(tmp_path / "full.jsonl")])
    expected = (tmp_path / "full.jsonl").read_bytes()
    lines = expected.split(b"\n")
    part = tmp_path / "out.jsonl.part"
    part.write_bytes(b"\n".join(lines[:7]) + b"\n" + tail)  # a full disk cut the last line anywhere
    resumed = run([str(folder), *tiny, *ARGS, "-o", str(tmp_path / "out.jsonl"), "--resume"])
    assert full.exit_code == resumed.exit_code == 1, resumed.stderr
    assert (tmp_path / "out.jsonl").read_bytes() == expected


def test_a_killed_decode_worker_costs_only_its_video(tiny, folder, tmp_path):
    out = tmp_path / "out.jsonl"
    args = [str(folder), *[a if a != "0" else "1" for a in tiny], *ARGS, "-o", str(out)]  # --workers 1
    proc = _start(args, "2.mp4", action="kill")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    records = jsonl(out.read_text(encoding="utf-8"))
    errors = {r["video"]: r["error"]["message"] for r in records if r["record"] == "error"}
    assert set(errors) == {"0_bad.mp4", "2.mp4"}
    assert "decoder process was killed" in errors["2.mp4"]
    assert {r["video"] for r in records if r["record"] == "video"} == {"0.mp4", "1.mp4", "3.mp4", "4.mp4"}


def test_segments_are_streamed_before_the_video_ends(tiny, long_video):
    proc = _start([str(long_video), *tiny, *ARGS], "long.mp4", hang_after=5)
    try:
        assert json.loads(proc.stdout.readline())["record"] == "run"  # what produced the output comes first
        lines = [proc.stdout.readline() for _ in range(3)]  # stdout: JSON Lines as they are scored
        assert [json.loads(line)["segment"] for line in lines] == [0, 1, 2]
        assert proc.poll() is None  # the decoder still hangs at segment 5 of 16
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("kill_after", [pytest.param(1, marks=pytest.mark.slow), 6, pytest.param(11, marks=pytest.mark.slow)])
def test_resume_inside_a_long_video_gives_the_uninterrupted_output(tiny, long_video, tmp_path, kill_after):
    full = run([str(long_video), *tiny, *ARGS, "-o", str(tmp_path / "full.jsonl")])
    assert full.exit_code == 0, full.stderr
    expected = (tmp_path / "full.jsonl").read_bytes()
    out = tmp_path / "out.jsonl"
    proc = _start([str(long_video), *tiny, *ARGS, "-o", str(out)], "long.mp4", hang_after=kill_after)
    try:
        _wait_for(out.with_name("out.jsonl.part"), _records("segment", kill_after), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert not out.exists()
    resumed = run([str(long_video), *tiny, *ARGS, "-o", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.stderr
    assert out.read_bytes() == expected
    assert not (tmp_path / ".out.jsonl.probs").exists()  # the resume log goes when the run completes


def test_sigterm_to_the_process_group_stops_cleanly(tiny, folder, tmp_path):
    out = tmp_path / "out.jsonl"
    args = [str(folder), *[a if a != "0" else "2" for a in tiny], *ARGS, "-o", str(out)]  # --workers 2
    proc = _start(args, "3.mp4", start_new_session=True)
    try:
        _wait_for(out.with_name("out.jsonl.part"), _records("video", 2), proc)
        os.killpg(proc.pid, signal.SIGTERM)  # what a batch scheduler does
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "rerun with --resume" in stderr


def test_output_problems_are_reported_before_any_work(tiny, folder, tmp_path):
    (tmp_path / "adir").mkdir()
    is_dir = run([str(folder), *tiny, "-o", str(tmp_path / "adir")])
    assert is_dir.exit_code == 2 and "is a folder" in is_dir.stderr and "Hint:" in is_dir.stderr
    missing = run([str(folder), *tiny, "-o", str(tmp_path / "nope" / "x.jsonl")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr and "mkdir -p" in missing.stderr
    proc = run([str(folder), *tiny, "-o", "/proc/x.jsonl"])
    assert proc.exit_code == 2 and proc.stderr.startswith("Error: -o /proc/x.jsonl: cannot write in /proc: the folder does not accept new files")
    for result in (is_dir, missing, proc):
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_longest_valid_output_name_works(tiny, folder, tmp_path):
    out = tmp_path / ("n" * 249 + ".jsonl")  # 255 bytes: no room for a ".part.tmp" suffix
    result = run([str(folder), *tiny, "-o", str(out)])
    assert result.exit_code == 1  # the bad video
    assert sum(r["record"] == "video" for r in jsonl(out.read_text(encoding="utf-8"))) == 5
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [out.name]


FULL_DISK = """
import errno, sys
import vswin_cli.writers as writers
real = writers.JsonlWriter._write_records
def full(self, records):
    if any(r["record"] == "video" for r in records) and getattr(self, "_videos", 0) >= 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    self._videos = getattr(self, "_videos", 0) + any(r["record"] == "video" for r in records)
    real(self, records)
writers.JsonlWriter._write_records = full
from vswin_cli.app import app
app(["tag", *sys.argv[1:]], prog_name="vswin")
"""


def test_a_full_disk_is_an_error_and_keeps_the_finished_videos(tiny, folder, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(folder), *tiny, *ARGS, "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Error: No space left on device" in proc.stderr and "Hint: free some space" in proc.stderr
    assert "Traceback" not in proc.stderr
    kept = jsonl(out.with_name("out.jsonl.part").read_text(encoding="utf-8"))
    assert [r["video"] for r in kept if r["record"] in ("video", "error")] == ["0.mp4", "0_bad.mp4", "1.mp4"]


def test_folder_scans_say_what_they_skip(tiny, tmp_path):
    root = tmp_path / "in"
    make_video(root / "a" / "1.mp4", 30)
    os.mkfifo(root / "a" / "pipe.mp4")
    (root / "a" / "loop").symlink_to(root)  # a link back up: searched once, then reported
    linked = make_video(tmp_path / "elsewhere" / "2.mp4", 30)
    (root / "b").symlink_to(linked.parent)  # a symlinked folder is searched
    fd = os.open(root, os.O_RDONLY)
    for _ in range(18):  # a folder deeper than PATH_MAX (4096 bytes) cannot be searched
        os.mkdir("d" * 250, dir_fd=fd)
        fd = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
    result = run([str(root), *tiny])
    assert result.exit_code == 0, result.stderr
    assert {r["video"] for r in jsonl(result.stdout) if r["record"] == "video"} == {"a/1.mp4", "b/2.mp4"}
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped")]
    assert any("pipe.mp4: not a regular file" in w for w in warnings)
    assert any("loop: a link back" in w for w in warnings)
    assert any("File name too long" in w for w in warnings)
    assert f"{len(warnings)} path(s) skipped while scanning" in result.stderr


def test_finding_no_videos_is_an_error(tiny, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run([str(tmp_path / "empty"), *tiny])
    assert result.exit_code == 1
    assert "Error: no video files with a video extension" in result.stderr and "Hint:" in result.stderr
