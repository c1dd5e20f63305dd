"""From a video file to the network's input views: the official test pipeline in one call.

`sample_test_views(path, protocol)` = DecordInit -> SampleFrames(test_mode) -> DecordDecode ->
Resize(-1, 224) -> ThreeCrop(224) -> Normalize -> FormatShape('NCTHW') of the Video Swin test configs
(SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; `../shared/spec/pipeline.md`). The
pieces it is built from (`TestProtocol`, `clip_indices`, `views_from_reader`) are public so the tagger
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
class TestProtocol:
    """How the official test configs sample and crop a video.

    Attributes:
        sampling: "kinetics" (evenly spaced clips, wrap) or "uniform" (Something-Something, one clip).
        clip_len: frames per clip.
        frame_interval: step between frames of a clip (kinetics only).
        num_clips: clips per video.
        num_crops: 3 (ThreeCrop) or 1 (CenterCrop).
    """

    sampling: str
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    num_crops: int = 3

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops


PROTOCOLS = {
    "k400": TestProtocol("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "k600": TestProtocol("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "sthv2": TestProtocol("uniform", clip_len=32, frame_interval=2, num_clips=1, num_crops=3),
}


def get_protocol(protocol: str | TestProtocol) -> TestProtocol:
    """A `TestProtocol` from its name ("k400", "k600", "sthv2") or itself."""
    if isinstance(protocol, TestProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ConfigError(f"unknown test protocol {protocol!r}", f"choose one of: {', '.join(PROTOCOLS)}") from None


def clip_indices(num_frames: int, protocol: str | TestProtocol) -> np.ndarray:
    """Sampled frame indices of a video (or a segment) of `num_frames` frames.

    Returns:
        int64 (num_clips, clip_len).
    """
    spec = get_protocol(protocol)
    if spec.sampling == "kinetics":
        return kinetics_test_indices(num_frames, spec.clip_len, spec.frame_interval, spec.num_clips)
    if spec.sampling == "uniform":
        return uniform_test_indices(num_frames, spec.clip_len)
    raise ConfigError(f"unknown sampling {spec.sampling!r}", "use 'kinetics' or 'uniform'")


def views_from_reader(reader: VideoReader, indices: np.ndarray, protocol: str | TestProtocol,
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


def sample_test_views(path: str | os.PathLike, protocol: str | TestProtocol = "k400", backend: str = "auto",
                      device: torch.device | str | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """The official test-time input of one video.

    Args:
        path: the video file.
        protocol: "k400" / "k600" (4 clips x 3 crops) or "sthv2" (1 uniform clip x 3 crops), or a
            `TestProtocol`.
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
