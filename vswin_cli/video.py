"""From a video file to the network's input views: the official test pipeline in one call.

`sample_test_views(path, protocol)` = DecordInit -> SampleFrames(test_mode) -> DecordDecode ->
Resize(-1, 224) -> ThreeCrop(224) -> Normalize -> FormatShape('NCTHW') of the Video Swin test configs
(SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; `../shared/spec/pipeline.md`). The
pieces are `protocol.ClipSpec`, `sampling.clip_indices`, `decode.open_video` and the decode workers' own
`VideoReader.read(..., resize_short)` -> `transforms.gather_views` -> `normalize_views`, the path every view of
`vswin tag` and `vswin eval` takes.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from vswin_cli.decode import VideoReader, open_video
from vswin_cli.errors import VideoDecodeError
from vswin_cli.protocol import ClipSpec, get_protocol
from vswin_cli.sampling import clip_indices
from vswin_cli.transforms import gather_views, normalize_views


def views_from_reader(reader: VideoReader, indices: np.ndarray, protocol: str | ClipSpec,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Decode `indices` from an open reader and build the views, as the decode workers of `vswin tag` do
    (each distinct frame decoded and resized once, as it is decoded; crops gathered; normalised).

    Args:
        reader: an open `VideoReader`.
        indices: int (num_clips, clip_len) frame indices, as from `clip_indices`.
        protocol: the crops to take (`num_crops`) and their size.
        device: where to normalise (default: CPU).

    Returns:
        float32 (num_crops*num_clips, 3, clip_len, 224, 224) on `device`, crop-major.
    """
    spec = get_protocol(protocol)
    indices = np.asarray(indices)
    distinct = np.unique(indices.reshape(-1))
    frames = torch.from_numpy(reader.read(distinct, resize_short=spec.resize_short))  # (F, h, w, 3) uint8
    rows = torch.from_numpy(np.searchsorted(distinct, indices))  # (num_clips, clip_len) rows of `frames`
    views = gather_views(frames, rows, spec.crop_size, spec.num_crops)  # (V, T, S, S, 3) uint8, crop-major
    return normalize_views(views.to(device) if device is not None else views)


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
