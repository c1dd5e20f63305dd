"""Interrupted runs: a real `vswin tag` process stopped midway (SIGKILL, or SIGINT = Ctrl-C), then
`--resume`, gives exactly the output of an uninterrupted run; no partial video is ever kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_tag_cli import jsonl, make_video, run, tiny  # noqa: F401  (tiny is a fixture)

# Runs `vswin tag` in a child process whose decoding of "3.mp4" hangs, so the parent can stop it at a
# known point: after videos 0-2 are written, before 3 is.
HANGING_TAG = """
import sys, time
import vswin_cli.segments as segments
real = segments.segment_views
def hang_on_3(pos, video, *args):
    if video.key == "3.mp4":
        time.sleep(600)
    yield from real(pos, video, *args)
segments.segment_views = hang_on_3
from vswin_cli.app import app
app(["tag", *sys.argv[1:]], prog_name="vswin")
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-in")
    for i, frames in enumerate([70, 30, 100, 40, 64, 25]):
        make_video(root / f"{i}.mp4", frames, seed=i)
    (root / "5_bad.mp4").write_text("not a video")
    return root


def _wait_for_videos(part, count: int, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if part.exists():
            # the child may be mid-write: count only whole lines
            lines = part.read_text(encoding="utf-8").split("\n")[:-1]
            if sum(json.loads(line)["record"] in ("video", "error") for line in lines) >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"{part} did not get {count} videos in {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_resume_after_a_killed_run_gives_the_uninterrupted_output(tiny, folder, tmp_path, how):
    args = [str(folder), *tiny, "--batch-views", "1", "--top-k", "2", "--merge"]
    full = run([*args, "-o", str(tmp_path / "full.jsonl")])
    assert full.exit_code == 1  # 5_bad.mp4 fails; every other video is tagged
    expected = (tmp_path / "full.jsonl").read_text(encoding="utf-8")

    out = tmp_path / "out.jsonl"
    part = tmp_path / "out.jsonl.part"
    proc = subprocess.Popen([sys.executable, "-c", HANGING_TAG, *args, "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        _wait_for_videos(part, 3, proc)
        proc.send_signal(how)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    if how == signal.SIGINT:  # Ctrl-C: clean stop, the finished videos published as the output
        assert proc.returncode == 130 and "rerun with --resume" in proc.stderr.read()
        assert proc.stdout.read() == ""  # with -o FILE nothing at all goes to stdout
        assert out.exists() and not part.exists()
        kept = out.read_text(encoding="utf-8")
    else:  # killed: nothing published, the .part file holds complete videos (and maybe a torn line)
        assert proc.returncode == -signal.SIGKILL and not out.exists()
        kept = part.read_text(encoding="utf-8")
    assert expected.startswith("".join(line + "\n" for line in kept.splitlines()[:-1]))
    assert {r["video"] for r in jsonl(kept) if r["record"] == "video"} == {"0.mp4", "1.mp4", "2.mp4"}

    resumed = run([*args, "-o", str(out), "--resume"])
    assert resumed.exit_code == 1, resumed.stderr
    assert "3 already done" in resumed.stderr
    assert out.read_text(encoding="utf-8") == expected and not part.exists()
