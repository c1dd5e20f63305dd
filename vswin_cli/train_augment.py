"""Training-time sampling and augmentation, after the official train pipelines (spec/pipeline.md section 11).

Source: SwinTransformer/Video-Swin-Transformer @ db018fb (mmaction 0.15.0 fork, Apache-2.0):
`SampleFrames` (train mode), `UniformSampleFrames`-style frame_uniform sampling, `RandomResizedCrop`,
`Resize`, `Flip`. Every random draw comes from a `numpy.random.Generator` passed in, so a clip's
augmentation depends only on (seed, epoch, video index): resumed and multi-worker runs see the same clips.
Not reproduced: the SSv2 recipe's RandAugment and RandomErasing (see README).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from vswin_cli import transforms


def kinetics_train_indices(num_frames: int, clip_len: int, frame_interval: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one training clip, mmaction `SampleFrames(clip_len, frame_interval, 1)` in train mode.

    Args:
        num_frames: N, frames in the video (> 0).
        clip_len: L frames per clip.
        frame_interval: s, step between sampled frames.
        rng: random source.

    Returns:
        (L,) int64 indices in [0, N), wrapped modulo N.
    """
    window = clip_len * frame_interval
    num_clips = 1
    avg = (num_frames - window + 1) // num_clips
    if avg > 0:
        start = int(rng.integers(0, avg))  # k*avg + randint(0, avg-1) with k = 0
    elif num_frames > max(num_clips, window):
        start = int(rng.integers(0, num_frames - window + 1))
    else:
        start = 0  # avg == 0 gives round(0) = 0; a short video starts at 0 and wraps
    return (start + np.arange(clip_len) * frame_interval) % num_frames


def uniform_train_indices(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one SSv2-style clip: one random frame from each of L equal segments.

    Args:
        num_frames: N (> 0).
        clip_len: L.
        rng: random source.

    Returns:
        (L,) int64 indices (short videos repeat indices).
    """
    seg = (num_frames - 1) / clip_len
    bounds = np.round(seg * np.arange(clip_len + 1)).astype(np.int64)  # numpy rounds half to even, as the spec
    return np.array([rng.integers(bounds[i], bounds[i + 1] + 1) for i in range(clip_len)], dtype=np.int64)


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_tries: int = 10,
) -> tuple[int, int, int, int]:
    """A crop box as mmaction `RandomResizedCrop`: random area and log-uniform aspect, else a centre square.

    Returns:
        (top, left, crop_height, crop_width).
    """
    area = height * width
    for _ in range(max_tries):
        target_area = rng.uniform(*area_range) * area
        aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if crop_w <= width and crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def train_clip(frames: np.ndarray, crop_size: int, flip: bool, rng: np.random.Generator, min_crop_area: float = 0.08) -> torch.Tensor:
    """Augment one decoded clip: resize short side to 256/224 * crop, random resized crop, flip, normalize.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        crop_size: output side S (224 in the official recipe).
        flip: allow a horizontal flip with probability 0.5 (False for direction-sensitive labels).
        rng: random source; one crop and one flip decision for the whole clip.
        min_crop_area: smallest crop area as a fraction of the frame (official 0.08).

    Returns:
        (3, T, S, S) float32, normalized.
    """
    resized = transforms.resize_short_side(frames, round(crop_size * 256 / 224))  # (T, H', W', 3) uint8
    top, left, crop_h, crop_w = random_resized_crop_box(resized.shape[1], resized.shape[2], rng, area_range=(min_crop_area, 1.0))
    patch = resized[:, top : top + crop_h, left : left + crop_w].contiguous()
    patch = transforms.resize_bilinear_cv2(patch, crop_size, crop_size)  # (T, S, S, 3) uint8, as mmcv's cv2 resize
    if flip and rng.random() < 0.5:
        patch = patch.flip(2)  # horizontal: the W axis
    clip = transforms.normalize(patch)  # (T, S, S, 3) float32
    return clip.permute(3, 0, 1, 2).contiguous()  # (3, T, S, S)


_DIRECTION_WORDS = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def is_direction_sensitive(class_names: list[str]) -> bool:
    """True when a label names a horizontal direction (SSv2-like: "... from left to right"); then never flip."""
    return any(_DIRECTION_WORDS.search(name) for name in class_names)
