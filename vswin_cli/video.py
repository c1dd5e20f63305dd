"""From a video file to the network's input views: the official test pipeline in one call.

`sample_test_views(path, protocol)` = DecordInit -> SampleFrames(test_mode) -> DecordDecode ->
Resize(-1, 224) -> ThreeCrop(224) -> Normalize -> FormatShape('NCTHW') of the Video Swin test configs
(SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; `../shared/spec/pipeline.md`). The
pieces it is built from (`ClipSpec`, `clip_indices`, `views_from_reader`) are public so the tagger
can open a video once and decode the frames of many segments together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from vswin_cli.decode import VideoReader, open_video
from vswin_cli.errors import ConfigError, VideoDecodeError
from vswin_cli.sampling import kinetics_test_indices, uniform_test_indices
from vswin_cli.transforms import make_views


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and cropped: a model's test protocol, the views `tag` takes of a segment,
    and the clip shape for training.

    Attributes:
        sampling: "kinetics" (`num_clips` clips of `clip_len` frames `frame_interval` apart, spread
            evenly, wrapping; official SampleFrames test mode) or "uniform" (one clip of `clip_len`
            frames spread over the whole video or segment: the SSv2 protocol).
        clip_len, frame_interval, num_clips: 32, 2, 4 for the released Kinetics models.
        num_crops: 3 (ThreeCrop: left, right, middle) or 1 (CenterCrop).
        crop_size: crop side (224 for the released models).
        resize_short: short side before cropping; None (the default) = the crop size, as the official
            test pipeline does.
    """

    sampling: str = "kinetics"
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    num_crops: int = 3
    crop_size: int = 224
    resize_short: int | None = None

    def __post_init__(self):
        if self.resize_short is None:
            object.__setattr__(self, "resize_short", self.crop_size)
        if self.sampling not in ("kinetics", "uniform"):
            raise ConfigError(f"unknown sampling {self.sampling!r}", hint="use 'kinetics' or 'uniform'")
        if self.num_crops not in (1, 3):
            raise ConfigError(f"{self.num_crops} crops per clip is not supported", hint="use 1 (centre) or 3 crops")
        if self.sampling == "uniform" and self.num_clips != 1:
            raise ConfigError("uniform (SSv2) sampling takes one clip", hint="use 1 clip")
        for name in ("clip_len", "frame_interval", "num_clips", "crop_size", "resize_short"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.resize_short < self.crop_size:
            raise ConfigError(f"resize_short {self.resize_short} is smaller than the crop size {self.crop_size}")
        if self.num_crops == 3 and self.resize_short != self.crop_size:
            raise ConfigError("three crops need the short side resized to the crop size (ThreeCrop)")

    @property
    def num_views(self) -> int:
        """Views per video or segment as the protocol counts them (identical ones included)."""
        return self.num_clips * self.num_crops

    @property
    def span_frames(self) -> int:
        """Frames one Kinetics-style clip spans: the default segment length of `tag`."""
        return self.clip_len * self.frame_interval


PROTOCOLS = {
    "k400": ClipSpec("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "k600": ClipSpec("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "sthv2": ClipSpec("uniform", clip_len=32, frame_interval=2, num_clips=1, num_crops=3),
}


def get_protocol(protocol: str | ClipSpec) -> ClipSpec:
    """A `ClipSpec` from its name ("k400", "k600", "sthv2") or itself."""
    if isinstance(protocol, ClipSpec):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ConfigError(f"unknown test protocol {protocol!r}", f"choose one of: {', '.join(PROTOCOLS)}") from None


def clip_indices(num_frames: int, protocol: str | ClipSpec) -> np.ndarray:
    """Sampled frame indices of a video (or a segment) of `num_frames` frames.

    Returns:
        int64 (num_clips, clip_len).
    """
    spec = get_protocol(protocol)
    if spec.sampling == "kinetics":
        return kinetics_test_indices(num_frames, spec.clip_len, spec.frame_interval, spec.num_clips)
    return uniform_test_indices(num_frames, spec.clip_len)  # "uniform": ClipSpec admits no other


def views_from_reader(reader: VideoReader, indices: np.ndarray, protocol: str | ClipSpec,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Decode `indices` from an open reader and build the views (each distinct frame decoded and resized once).

    Args:
        reader: an open `VideoReader`.
        indices: int (num_clips, clip_len) frame indices, as from `clip_indices`.
        protocol: the crops to take (`num_crops`).
        device: where to resize and normalise (default: CPU).

    Returns:
        float32 (num_crops*num_clips, 3, clip_len, 224, 224) on `device`, crop-major.
    """
    spec = get_protocol(protocol)
    indices = np.asarray(indices)
    distinct, order = np.unique(indices.reshape(-1), return_inverse=True)
    frames = torch.from_numpy(reader.read(distinct))
    if device is not None:
        frames = frames.to(device)
    return make_views(frames, indices.shape[0], indices.shape[1], spec.num_crops, order=order.reshape(-1))


def sample_test_views(path: str | os.PathLike, protocol: str | ClipSpec = "k400", backend: str = "auto",
                      device: torch.device | str | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """The official test-time input of one video.

    Args:
        path: the video file.
        protocol: "k400" / "k600" (4 clips x 3 crops) or "sthv2" (1 uniform clip x 3 crops), or a
            `ClipSpec`.
        backend: "auto", "decord" or "pyav" (see `vswin_cli.decode.open_video`).
        device: where to resize and normalise (default: CPU).

    Returns:
        (frame_indices, views): int64 (num_clips*clip_len,) sampled indices clip by clip, and float32
        (num_crops*num_clips, 3, clip_len, 224, 224), crop-major (view = crop_index*num_clips + clip).

    Raises:
        VideoDecodeError: the file cannot be read as a video.
    """
    spec = get_protocol(protocol)
    with open_video(path, backend=backend) as reader:
        indices = clip_indices(reader.num_frames, spec)
        try:
            views = views_from_reader(reader, indices, spec, device)
        except ValueError as err:  # e.g. a frame too small to crop after the resize
            raise VideoDecodeError(path, f"cannot build the views ({err})") from None
    return indices.reshape(-1), views
