"""Long test videos made fast: a short H.264 segment of distinct frames, encoded once, then its packets
muxed again and again with shifted timestamps (no re-encoding), so an hour of video takes seconds."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

BITS = 12  # frame ids 0..4095 written as a barcode on the top row
CELL = 4  # barcode cell size: 12 cells fit a 48-pixel-wide frame


def id_frame(frame_id: int, height: int, width: int) -> np.ndarray:
    """uint8 (height, width, 3): `frame_id` in binary on the top cells, a gradient below."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (np.arange(width, dtype=np.uint8) * 3)[None, :, None]
    frame[..., 1] = (frame_id * 7) % 256
    for bit in range(BITS):
        frame[:CELL, bit * CELL:(bit + 1) * CELL] = 255 if (frame_id >> bit) & 1 else 0
    return frame


def read_id(frame: np.ndarray) -> int:
    """The id written by `id_frame` (full-size frames only)."""
    return sum(1 << bit for bit in range(BITS) if frame[CELL // 2, int((bit + 0.5) * CELL)].mean() > 127)


def write_long_video(path: Path, seconds: float, height: int = 48, width: int = 64, fps: int = 25,
                     unit_frames: int = 1000, gop: int = 250) -> Path:
    """An H.264 MP4 of `seconds` at `fps`: frame i shows id i % unit_frames (a new unit starts with a
    keyframe every `unit_frames` frames). Returns `path`."""
    assert unit_frames % gop == 0 and unit_frames <= 1 << BITS
    unit = path.with_suffix(".unit.mp4")
    with av.open(str(unit), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12", "bframes": "0", "g": str(gop),
                          "keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(unit_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(id_frame(i, height, width), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    total = int(round(seconds * fps))
    with av.open(str(unit)) as source, av.open(str(path), "w") as out:
        in_stream = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in source.demux(in_stream) if p.size]
        step = packets[1][1] - packets[0][1]  # pts units per frame
        out_stream = out.add_stream_from_template(in_stream)
        written = 0
        while written < total:
            offset = (written // unit_frames) * unit_frames * step
            for data, pts, dts, key in packets:
                if written == total:
                    break
                packet = av.Packet(data)
                packet.pts, packet.dts = pts + offset, dts + offset
                packet.is_keyframe = key
                packet.time_base = in_stream.time_base
                packet.stream = out_stream
                out.mux(packet)
                written += 1
    unit.unlink()
    return path
