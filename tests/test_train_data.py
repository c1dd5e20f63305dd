"""A synthetic action dataset for the train/eval tests, and checks of it.

Each video shows a square moving left, right, up or down over a noisy background; position, colours
and speed are random, so the class is only visible in the motion, never in a single frame.
Other test files import `make_motion_dataset` from here.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from vswin_cli.datasets import parse_list, read_frames

MOTIONS = ("left", "right", "up", "down")
_STEP = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def motion_frames(motion: str, rng: np.random.Generator, num_frames: int = 16, size: int = 32) -> np.ndarray:
    """(num_frames, size, size, 3) uint8: a square of side size/4 moving 2-3 px per frame, wrapping around."""
    side = size // 4
    speed = int(rng.integers(2, 4))
    dy, dx = (speed * d for d in _STEP[motion])
    y, x = (int(v) for v in rng.integers(0, size, 2))
    background = rng.integers(0, 60, 3)
    square = rng.integers(150, 256, 3)
    texture = np.clip(background + rng.normal(0, 8, (size, size, 3)), 0, 255)  # static: only the square moves
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = texture.copy()
        rows = (np.arange(side) + y + t * dy) % size
        cols = (np.arange(side) + x + t * dx) % size
        frame[np.ix_(rows, cols)] = square
        frames[t] = frame.astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: int = 8) -> None:
    """Encode (T, H, W, 3) uint8 frames as near-lossless H.264 with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "4", "preset": "ultrafast"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def make_motion_dataset(root: Path, per_class: dict[str, int], seed: int, num_frames: int = 16) -> dict[str, Path]:
    """Write videos under root/videos and one list file per split (official `path label` format).

    Args:
        root: folder to write into.
        per_class: split name -> videos per class (e.g. {"train": 20, "val": 8}).
        seed: random seed of the videos.

    Returns:
        split name -> list file path; also root/labels.txt (one motion per line).
    """
    rng = np.random.default_rng(seed)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(m + "\n" for m in MOTIONS))
    lists = {}
    for split, count in per_class.items():
        lines = []
        for label, motion in enumerate(MOTIONS):
            for i in range(count):
                rel = f"videos/{split}_{motion}_{i:03d}.mp4"
                write_video(root / rel, motion_frames(motion, rng, num_frames))
                lines.append(f"{rel} {label}\n")
        lists[split] = root / f"{split}.txt"
        lists[split].write_text("".join(lines))
    return lists


def test_motion_videos_decode_and_show_the_motion(tmp_path):
    lists = make_motion_dataset(tmp_path, {"train": 1}, seed=0)
    entries = parse_list(lists["train"], tmp_path)
    assert [e.label for e in entries] == [0, 1, 2, 3]
    for entry, motion in zip(entries, MOTIONS):
        frames = read_frames(entry.path, lambda n: np.arange(n)).astype(np.float32)
        assert frames.shape == (16, 32, 32, 3)
        # The bright square in frame 1 is the one of frame 0 shifted (with wrap-around) in the named direction.
        mask = frames.mean(axis=3) > 120
        mismatch = {
            m: min(np.sum(np.roll(mask[0], (speed * dy, speed * dx), axis=(0, 1)) != mask[1]) for speed in (2, 3))
            for m, (dy, dx) in _STEP.items()
        }
        assert min(mismatch, key=mismatch.get) == motion, mismatch
