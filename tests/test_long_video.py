"""Long videos (issue 15): memory of the decode path flat in the video's length, frames exact.

The videos are made in seconds by `long_video.write_long_video` (one 40 s unit of 64x48 H.264 with
distinct frames, its packets muxed again with shifted timestamps). decord2 mis-seeks on such files
when the machine is busy ("Failed to skip frames effectively ... skipped 41", then frames that are not
the ones asked for), which is why `auto` reads with PyAV and why decord's log is watched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from long_video import read_id, write_long_video
from vswin_cli import decode
from vswin_cli.decode import open_video
from vswin_cli.errors import VideoDecodeError

HAVE_DECORD = decode.decord_version() is not None
UNIT = 1000  # frames per repeated unit: frame i shows id i % UNIT

# The decode path as `vswin tag` drives it: 24 windows of 32 frames 2 apart spread over the whole file,
# each frame resized as decoded (short side 224). Prints the peak RSS in MiB.
MEMORY_SCRIPT = r"""
import json, resource, sys
import numpy as np
from vswin_cli.decode import open_video
with open_video(sys.argv[1], backend=sys.argv[2]) as reader:
    for start in np.linspace(0, reader.num_frames - 64, 24).astype(int):
        frames = reader.read(np.arange(start, start + 64, 2), resize_short=224)
        assert frames.shape == (32, 224, 299, 3)
    backend = reader.backend
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "backend": backend}))
"""


class _Talking:
    """Wraps a decord reader: each get_batch first writes `line` to file descriptor 2, as native code does."""

    def __init__(self, reader, line: bytes):
        self.reader, self.line = reader, line

    def get_batch(self, indices):
        os.write(2, self.line)
        return self.reader.get_batch(indices)


def _talking_decord(monkeypatch, line: bytes) -> None:
    original = decode._DecordSource.read_sorted

    def read_sorted(self, wanted, store):
        if not isinstance(self.reader, _Talking):
            self.reader = _Talking(self.reader, line)
        return original(self, wanted, store)

    monkeypatch.setattr(decode._DecordSource, "read_sorted", read_sorted)


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    return {minutes: write_long_video(root / f"{minutes}min.mp4", minutes * 60) for minutes in (10, 60)}


def _peak_mib(path, backend) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), backend], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_long_video_metadata(long_videos):
    with open_video(long_videos[60]) as reader:
        assert reader.num_frames == 90_000 and reader.fps == pytest.approx(25.0)
        assert reader.duration == pytest.approx(3600.0)
        assert reader.backend == "pyav"  # auto reads long files (all files) with PyAV


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_decode_memory_does_not_grow_with_length(long_videos, backend):
    """Peak RSS of the decode path for a 60-minute file within 16 MiB of a 10-minute one (6x the frames).

    Before the fix `auto` read such files with decord, which grows by about 30 MiB at 64x48 (more at
    larger sizes), and returned wrong frames when its seeks failed; PyAV's index costs 17 bytes a frame.
    """
    short, long = _peak_mib(long_videos[10], backend), _peak_mib(long_videos[60], backend)
    assert short["backend"] == long["backend"] == "pyav"
    assert long["peak_mib"] - short["peak_mib"] < 16, (short, long)


def _sequential_frames(path, wanted: set[int]) -> dict[int, np.ndarray]:
    """Frames at `wanted` indices of a plain sequential PyAV decode (frame i = i-th decoded frame)."""
    out = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(wanted):
                break
    return out


@pytest.mark.slow
def test_auto_on_a_long_file_equals_a_sequential_decode(long_videos):
    path = long_videos[10]
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(15_000 - 64, 30, replace=False))
    indices = np.concatenate([np.arange(s, s + 64, 2) for s in starts] + [[0, 14_999, 999, 1000]])
    reference = _sequential_frames(path, set(indices.tolist()))
    with open_video(path) as reader:
        frames = reader.read(indices)
        assert reader.backend == "pyav" and not reader.concealed_frames
    for index, frame in zip(indices.tolist(), frames):
        assert read_id(frame) == index % UNIT, index
        assert np.array_equal(frame, reference[index]), index


def test_decord_skip_failure_is_detected(tmp_path, monkeypatch):
    """decord's "Failed to skip frames" line (written by native code to fd 2) makes "auto" switch to PyAV
    and an explicit decord backend fail, instead of returning frames that may be the wrong ones."""
    if not HAVE_DECORD:
        pytest.skip("decord is not installed")
    path = write_long_video(tmp_path / "short.mp4", 60, unit_frames=500)
    _talking_decord(monkeypatch, b"[12:00:00] video_reader.cc:711: Failed to skip frames effectively at frame 33251. "
                                 b"Aborting skip operation. Attempted to skip 1 frames, skipped 0.\n")
    monkeypatch.setattr(decode, "_auto_uses_decord", lambda index: True)
    indices = np.array([10, 700, 1499])
    with open_video(path) as reader:
        assert reader.backend == "decord"
        assert [read_id(f) for f in reader.read(indices)] == [10, 200, 499]
        assert reader.backend == "pyav"
    with open_video(path, backend="decord") as reader, pytest.raises(VideoDecodeError, match="seek exactly"):
        reader.read(indices)


def test_decord_log_is_captured_not_printed(tmp_path, monkeypatch, capfd):
    """Native stderr written during a decord call does not reach the terminal unless verbose."""
    if not HAVE_DECORD:
        pytest.skip("decord is not installed")
    path = write_long_video(tmp_path / "short.mp4", 20, unit_frames=250)
    _talking_decord(monkeypatch, b"[h264 @ 0x1234] Invalid NAL unit size (simulated)\n")
    for verbose in (False, True):
        decode.set_decoder_logging(verbose)
        try:
            with open_video(path, backend="decord") as reader:
                assert read_id(reader.read([5])[0]) == 5
        finally:
            decode.set_decoder_logging(False)
        assert ("Invalid NAL unit size" in capfd.readouterr().err) == verbose
