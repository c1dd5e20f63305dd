"""Frames resized as they are decoded (issue 12 item 4): same pixels as resizing afterwards, memory
bounded by one full-size frame, and a large-frame video read under an address-space limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from conftest import shared_path
from test_video_helpers import write_barcode_video
from vswin_cli import decode
from vswin_cli.decode import DECODE_MEMORY_BUDGET, open_video
from vswin_cli.transforms import resize_short_side

HAVE_DECORD = decode.decord_version() is not None
BACKENDS = ["pyav"] + (["decord"] if HAVE_DECORD else [])


@pytest.fixture(scope="module")
def barcode(tmp_path_factory):
    return write_barcode_video(tmp_path_factory.mktemp("v") / "cfr.mp4", 90, height=72, width=136, gop=10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [224, 48, 72])  # up, down, unchanged
def test_resize_as_decoded_equals_resize_after(barcode, backend, size):
    indices = np.array([80, 3, 3, 41, 0, 89, 12, 13, 40])  # backwards, repeats, across keyframes
    with open_video(barcode, backend=backend) as reader:
        full = reader.read(indices)
        small = reader.read(indices, resize_short=size)
        assert small.shape == (len(indices), *reader.frame_size(size), 3) and small.dtype == np.uint8
        assert np.array_equal(small, resize_short_side(full, size).numpy())
        assert reader.read([], resize_short=size).shape == (0, *reader.frame_size(size), 3)


def test_resize_as_decoded_after_a_reduced_decode(barcode):
    """short_side (decoder scaling) and resize_short together: the resize starts from the scaled frame."""
    with open_video(barcode, short_side=36) as reader:
        assert np.array_equal(reader.read([5, 7], resize_short=36), reader.read([5, 7]))
        assert np.array_equal(reader.read([5, 7], resize_short=100),
                              resize_short_side(reader.read([5, 7]), 100).numpy())


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_resize_as_decoded_rotated_file(backend):
    """Rotation comes before the resize, as in the official pipeline (decord rotates, then Resize)."""
    path = shared_path("videos", "video_90.mov")
    with open_video(path, backend=backend) as reader:
        assert reader.rotation in (90, 270)
        indices = [2, 0, 1]
        small = reader.read(indices, resize_short=224)
        assert small.shape == (3, 398, 224, 3)
        assert np.array_equal(small, resize_short_side(reader.read(indices), 224).numpy())


def test_concealed_frames_are_resized_neighbours(tmp_path):
    data = bytearray(write_barcode_video(tmp_path / "ok.mp4", 90, gop=30).read_bytes())
    start = len(data) // 2
    data[start:start + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with open_video(damaged, backend="pyav") as reader:
        full = reader.read(np.arange(90))
        concealed = reader.concealed_frames
        small = reader.read(np.arange(90), resize_short=32)
        assert concealed and reader.concealed_frames == concealed
        assert np.array_equal(small, resize_short_side(full, 32).numpy())


def test_budget_helpers(barcode):
    with open_video(barcode) as reader:
        assert reader.frame_size() == (72, 136) and reader.frame_size(224) == (224, 423)
        assert reader.output_bytes(10, 224) == 10 * 224 * 423 * 3
        assert reader.max_frames_for(224) == DECODE_MEMORY_BUDGET // (224 * 423 * 3)
        assert reader.max_frames_for(224, budget_bytes=1) == 1
        with pytest.raises(ValueError):
            reader.read([1], resize_short=0)


def _write_large(path, size: int, num_frames: int):
    """MJPEG frames of size x size (intra-only, fast to encode), each with its index as a barcode."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuvj420p"
        base = np.full((size, size, 3), 64, np.uint8)
        base[512:, :, 2] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
        for i in range(num_frames):
            for bit in range(8):  # the barcode of test_video_helpers, cells of 512 pixels
                base[:512, bit * 512:(bit + 1) * 512] = 255 if (i >> bit) & 1 else 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(base, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# Opens the video, warms the decoder and torch up, then caps the address space at what is mapped now plus
# LIMIT_MIB and reads every frame resized to 224: the old way (decode all, then resize) or as decoded.
LIMITED_SCRIPT = r"""
import json, resource, sys
import numpy as np
from vswin_cli.decode import open_video
from vswin_cli.transforms import resize_short_side
path, how, limit_mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
reader = open_video(path, backend="pyav")
reader.read([0], resize_short=224)  # decoder threads and torch's pool exist before the cap
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + limit_mib * 2**20, resource.RLIM_INFINITY))
indices = np.arange(reader.num_frames)
try:
    if how == "old":
        frames = resize_short_side(reader.read(indices), 224).numpy()
    else:
        frames = reader.read(indices, resize_short=224)
    result = {"ok": True, "shape": list(frames.shape)}
except MemoryError as err:
    result = {"ok": False, "error": "MemoryError"}
print(json.dumps(result))
"""

LARGE, LARGE_FRAMES, LIMIT_MIB = 4096, 16, 600  # all frames at full size: 16 x 48 MiB = 768 MiB (x2 stacked)


@pytest.mark.slow
def test_large_frames_under_a_memory_limit(tmp_path):
    """4096x4096 frames under a 600 MiB address-space cap: decoding everything before resizing (the old
    path) runs out of memory; resizing each frame as decoded reads them all, with the same pixels as
    a smaller unlimited read."""
    path = _write_large(tmp_path / "large.avi", LARGE, LARGE_FRAMES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}

    def run(how):
        done = subprocess.run([sys.executable, "-c", LIMITED_SCRIPT, str(path), how, str(LIMIT_MIB)],
                              capture_output=True, text=True, timeout=180, env=env)
        lines = done.stdout.splitlines()
        assert lines, done.stderr[-2000:]
        return json.loads(lines[-1])

    assert run("old") == {"ok": False, "error": "MemoryError"}
    new = run("new")
    assert new["ok"] and new["shape"] == [LARGE_FRAMES, 224, 224, 3], new
    with open_video(path) as reader:
        picks = [0, 5, 15]
        small = reader.read(picks, resize_short=224)
        cell = 224 * 512 // LARGE  # a 512-pixel barcode cell after the resize
        assert [sum(1 << b for b in range(8) if f[cell // 2, int((b + 0.5) * cell)].mean() > 127)
                for f in small] == picks
        assert np.array_equal(small, resize_short_side(reader.read(picks), 224).numpy())
