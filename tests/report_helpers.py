"""Helpers shared by the report and annotate tests: a tiny tagging model, browser-playable test videos,
and a `vswin tag` run that produces real results files without a released checkpoint."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from typer.testing import CliRunner

from conftest import LABELS, save_tiny_model  # noqa: F401  (LABELS: used by the report tests)
from vswin_cli.app import app

def tiny_model_args(folder: Path) -> list[str]:
    """`vswin tag` options loading a seeded tiny model from an official-layout checkpoint in `folder`."""
    return [*save_tiny_model(folder), "--workers", "0", "--quiet"]


def make_video(path: Path, num_frames: int, fps: int = 25, height: int = 72, width: int = 96, seed: int = 0,
               audio: bool = False, codec: str = "libx264") -> Path:
    """Encode a smooth moving pattern (H.264, playable in Chromium), optionally with an AAC tone."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width * 2]
    base = np.stack([(xx * 3) % 256, (yy * 4) % 256, np.full_like(xx, rng.integers(0, 256))], axis=-1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "bf": "0"}
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i in range(num_frames):
            shift = (i * 2) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if sound is not None:
            samples = int(16000 * num_frames / fps)
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)[None]
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode())
    return path


def tag(args: list[str], stdin: str | None = None):
    """Run `vswin tag` in-process; returns the CliRunner result."""
    return CliRunner().invoke(app, ["tag", *args], input=stdin)
