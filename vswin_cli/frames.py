"""Frames already in memory (a numpy array or tensor) as a video the engine can tag.

`Frames(array, fps)` stands where a file path would (`vswin_cli.load(...).tag(Frames(...))`); the decode
stage opens it with `Frames.open`, which gives the same reader interface as `decode.open_video`
(`num_frames`, `fps`, `duration`, `timestamps`, `read(indices, resize_short)`), so segments, views and
records are made exactly as for a file holding those frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vswin_cli.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Frames:
    """A video held in memory.

    Attributes:
        array: uint8 (T, H, W, 3) RGB frames (numpy, or a CPU tensor, which is viewed as numpy).
        fps: frames per second (the frame times are i / fps).
        name: the key the video gets in the records.
    """

    array: np.ndarray
    fps: float
    name: str = "frames"

    def __post_init__(self):
        array = self.array.numpy() if hasattr(self.array, "numpy") and not isinstance(self.array, np.ndarray) else self.array
        array = np.asarray(array)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) == 0:
            raise ConfigError(f"{self.name}: frames must be a non-empty uint8 (T, H, W, 3) RGB array, "
                              f"got {array.dtype} {tuple(array.shape)}",
                              hint="give 8-bit RGB frames, shaped (frames, height, width, 3)")
        if not self.fps > 0:
            raise ConfigError(f"{self.name}: fps must be a positive number, got {self.fps}")
        object.__setattr__(self, "array", np.ascontiguousarray(array))

    def __str__(self) -> str:
        return self.name

    def open(self) -> FramesReader:
        """A reader over the frames (what `decode.open_video` gives for a file)."""
        return FramesReader(self)


class FramesReader:
    """The `decode.VideoReader` interface over in-memory frames."""

    backend = "memory"
    rotation = 0

    def __init__(self, frames: Frames):
        self.path = frames.name
        self._array = frames.array
        self.num_frames = len(frames.array)
        self.fps = float(frames.fps)
        self.timestamps = np.arange(self.num_frames, dtype=np.float64) / self.fps
        self.duration = self.num_frames / self.fps
        self.height, self.width = frames.array.shape[1:3]

    def __enter__(self) -> FramesReader:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def max_frames_for(self, resize_short: int | None = None, budget_bytes: int | None = None) -> int:
        """No decode budget: the frames are in memory already."""
        return self.num_frames

    def read(self, indices, resize_short: int | None = None) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed), resized as a decoded file's would be.

        Returns:
            uint8 (T, h, w, 3).
        """
        from vswin_cli.transforms import resize_short_side

        frames = self._array[np.asarray(indices, dtype=np.int64).reshape(-1)]
        if resize_short is None:
            return frames
        return resize_short_side(frames, resize_short).numpy()
