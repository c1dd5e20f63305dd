"""Test videos made on the fly with PyAV (every frame carries its own index as a barcode), and their own tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 12  # frame indices up to 4095
CELL = 8  # barcode cell size in pixels (survives lossy encoding and a 2x downscale)


def barcode_frame(index: int, height: int, width: int) -> np.ndarray:
    """uint8 (height, width, 3): the top row of cells spells `index` in binary (white = 1)."""
    frame = np.full((height, width, 3), 64, np.uint8)
    frame[CELL:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]  # some picture below the code
    for bit in range(BITS):
        if (index >> bit) & 1:
            frame[:CELL, bit * CELL:(bit + 1) * CELL] = 255
        else:
            frame[:CELL, bit * CELL:(bit + 1) * CELL] = 0
    return frame


def read_barcode(frame: np.ndarray, cell: float = CELL) -> int:
    """The index written by `barcode_frame` (frame possibly scaled by cell/CELL)."""
    value = 0
    for bit in range(BITS):
        y, x = int(cell / 2), int((bit + 0.5) * cell)
        if frame[y, x].mean() > 127:
            value |= 1 << bit
    return value


def write_barcode_video(path: Path, num_frames: int, height: int = 64, width: int = 128, fps: int = 25,
                        codec: str = "libx264", pts: list[int] | None = None, time_base: Fraction | None = None,
                        container_format: str | None = None, gop: int = 12, options: dict | None = None) -> Path:
    """Encode a barcode video. `pts` (in `time_base` units) makes a variable frame rate; `options` replace
    the libx264 defaults (no B-frames, intra-heavy)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        if codec == "libx264":
            stream.options = options or {"crf": "10", "preset": "ultrafast", "bframes": "2"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(barcode_frame(i, height, width), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        samples = np.zeros((2, 1024), np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            frame.sample_rate = 44100
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def sequential_frames(path, stream_index: int) -> list[np.ndarray]:
    """Every frame of a stream as a plain sequential PyAV decode gives it (RGB, unrotated)."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        for packet in container.demux(stream):
            try:
                frames.extend(f.to_ndarray(format="rgb24") for f in packet.decode())
            except av.FFmpegError:
                continue
    return frames


def sequential_frames_by_pts(path, stream_index: int) -> dict[int, np.ndarray]:
    """{pts: RGB frame} of a plain sequential PyAV decode (undecodable packets skipped)."""
    frames = {}
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        for packet in container.demux(stream):
            try:
                frames.update((f.pts, f.to_ndarray(format="rgb24")) for f in packet.decode())
            except av.FFmpegError:
                continue
    return frames


def test_barcode_round_trips():
    for index in (0, 1, 77, 4095):
        assert read_barcode(barcode_frame(index, 64, 128)) == index


def test_barcode_survives_encoding(tmp_path):
    path = write_barcode_video(tmp_path / "b.mp4", 30)
    frames = sequential_frames(path, 0)
    assert [read_barcode(f) for f in frames] == list(range(30))
