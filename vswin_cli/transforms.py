"""Test-time preprocessing: resize, crops, normalisation and the (V, 3, T, H, W) layout, in torch.

Reproduces Resize(scale=(-1, 224)) -> ThreeCrop(224) -> Normalize -> FormatShape('NCTHW') of the
official Video Swin test pipeline (SwinTransformer/Video-Swin-Transformer @ db018fb, mmaction 0.15.0,
`mmaction/datasets/pipelines/augmentations.py` and `formating.py`, Apache-2.0; details in
`../shared/spec/pipeline.md` sections 5-9). Every op takes torch tensors on any device, so a batch can
be preprocessed on the GPU; numpy arrays are accepted too.

The official resize is OpenCV's `cv2.resize(INTER_LINEAR)` on uint8 frames. `resize_short_side`
re-implements its fixed-point arithmetic (11-bit weights, integer horizontal pass, rounded vertical
pass) with integer tensor ops instead of depending on OpenCV; resizing in uint8 before converting to
float is also the cheap order (3 bytes per pixel instead of 12).
"""

from __future__ import annotations

import torch

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)

_COEF_BITS = 11  # OpenCV INTER_RESIZE_COEF_BITS: weights are integers summing to 2048
_COEF_SCALE = 1 << _COEF_BITS


def as_uint8_tensor(frames) -> torch.Tensor:
    """uint8 (T, H, W, 3) as a torch tensor (numpy arrays are wrapped without a copy)."""
    tensor = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(frames)
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor


def resized_size(height: int, width: int, short_side: int = 224) -> tuple[int, int]:
    """Size after Resize(scale=(-1, short_side)): factor short_side/min(h, w), round half up.

    Args:
        height, width: frame size.
        short_side: length of the short side after the resize.

    Returns:
        (new_height, new_width).
    """
    factor = short_side / min(height, width)
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _linear_taps(src: int, dst: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenCV INTER_LINEAR source positions and fixed-point weights along one axis.

    Returns:
        (first, second, weight_first, weight_second), each int32 (dst,): output pixel d is
        (src[first]*weight_first + src[second]*weight_second) / 2048.
    """
    scale = 1.0 / (dst / src)  # OpenCV computes the inverse of its inverse scale, in double precision
    pos = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    first = torch.floor(pos)
    frac = pos - first
    first = first.to(torch.int64)
    # Half-pixel centres reach outside the image at the borders; OpenCV clamps to the edge pixel.
    low, high = first < 0, first >= src - 1
    frac = torch.where(low | high, torch.zeros_like(frac), frac)
    first = first.clamp(0, src - 1)
    second = (first + 1).clamp(max=src - 1)
    weight_second = torch.round(frac * _COEF_SCALE)  # saturate_cast<short>: round half to even
    weight_first = torch.round((1.0 - frac) * _COEF_SCALE)
    return tuple(t.to(device=device, dtype=torch.int32 if t.is_floating_point() else torch.int64)
                 for t in (first, second, weight_first, weight_second))


def resize_bilinear_cv2(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize uint8 frames as `cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)`.

    Horizontal pass in exact integers, then the vertical pass as OpenCV's SIMD path computes it:
    ((row0 >> 4) * w0 >> 16) + ((row1 >> 4) * w1 >> 16), + 2, >> 2. No antialiasing when
    shrinking (OpenCV has none). An exact 2x shrink takes OpenCV's INTER_AREA shortcut (2x2 mean).

    Args:
        frames: uint8 (T, H, W, 3).
        height, width: output size.

    Returns:
        uint8 (T, height, width, 3) on the same device.
    """
    frames = as_uint8_tensor(frames)
    src_h, src_w = frames.shape[1:3]
    if (src_h, src_w) == (height, width):
        return frames.clone()
    if src_h == 2 * height and src_w == 2 * width:
        quads = frames.view(-1, height, 2, width, 2, 3).to(torch.int32)  # (T, h, 2, w, 2, 3)
        return ((quads.sum(dim=(2, 4)) + 2) >> 2).to(torch.uint8)
    device = frames.device
    x0, x1, wx0, wx1 = _linear_taps(src_w, width, device)
    y0, y1, wy0, wy1 = _linear_taps(src_h, height, device)
    # Each source row the vertical pass needs goes through the horizontal pass once.
    needed, where = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    row0, row1 = where[:height], where[height:]
    wx0, wx1 = wx0.view(1, 1, -1, 1), wx1.view(1, 1, -1, 1)
    wy0, wy1 = wy0.view(1, -1, 1, 1), wy1.view(1, -1, 1, 1)
    out = torch.empty((frames.shape[0], height, width, 3), dtype=torch.uint8, device=device)
    chunk = max(1, (1 << 24) // max(1, len(needed) * width * 3))  # bound the int32 temporaries
    for start in range(0, frames.shape[0], chunk):
        rows = frames[start:start + chunk][:, needed]  # (t, R, src_w, 3)
        # (t, R, width, 3) in units of 1/2048, exact; OpenCV's vertical pass drops its 4 low bits.
        # In-place ops: these temporaries are the bulk of the work on the CPU.
        horizontal = rows[:, :, x0].to(torch.int32).mul_(wx0)
        horizontal.add_(rows[:, :, x1].to(torch.int32).mul_(wx1)).bitwise_right_shift_(4)
        vertical = horizontal[:, row0].mul_(wy0).bitwise_right_shift_(16)
        vertical.add_(horizontal[:, row1].mul_(wy1).bitwise_right_shift_(16))
        out[start:start + chunk] = vertical.add_(2).bitwise_right_shift_(2).clamp_(0, 255)
    return out


def resize_short_side(frames, size: int = 224) -> torch.Tensor:
    """Resize so the short side is `size` (the official Resize(scale=(-1, size)), keep ratio).

    Args:
        frames: uint8 (T, H, W, 3), numpy or torch.

    Returns:
        uint8 (T, H', W', 3) with min(H', W') == size (see `resized_size` for the rounding).
    """
    frames = as_uint8_tensor(frames)
    height, width = resized_size(frames.shape[1], frames.shape[2], size)
    return resize_bilinear_cv2(frames, height, width)


def three_crop_offsets(height: int, width: int, crop: int = 224) -> list[tuple[int, int]]:
    """(top, left) of ThreeCrop's crops: left, right, middle (or top, bottom, middle when tall).

    One side must already equal `crop`. When the leftover is odd the "right" crop stops one pixel
    short of the edge, as in the official code.
    """
    if height == crop:
        step = (width - crop) // 2
        return [(0, 0), (0, 2 * step), (0, step)]
    if width == crop:
        step = (height - crop) // 2
        return [(0, 0), (2 * step, 0), (step, 0)]
    raise ValueError(f"ThreeCrop({crop}) needs one side of {crop} pixels, got {height}x{width}")


def center_crop_offset(height: int, width: int, crop: int = 224) -> tuple[int, int]:
    """(top, left) of CenterCrop: ((h - crop) // 2, (w - crop) // 2)."""
    if height < crop or width < crop:
        raise ValueError(f"CenterCrop({crop}) needs at least {crop}x{crop} pixels, got {height}x{width}")
    return (height - crop) // 2, (width - crop) // 2


def normalize(frames: torch.Tensor, mean=MEAN_RGB, std=STD_RGB) -> torch.Tensor:
    """uint8 (..., 3) RGB -> float32 (x - mean) / std, channel last (pixel units, as the official code)."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device)
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device)
    return (frames.to(torch.float32) - mean_t) / std_t


def crop_corners(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int]]:
    """(top, left) of each crop: the official ThreeCrop's left, right, middle, or the centre crop alone."""
    if num_crops == 3:
        return three_crop_offsets(height, width, size)
    if num_crops == 1:
        return [center_crop_offset(height, width, size)]  # equals ThreeCrop's middle crop on these frames
    raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")


def crop_views(clips: torch.Tensor, size: int, num_crops: int) -> torch.Tensor:
    """The crops of resized clips, crop-major as the official FormatShape (view = crop * K + clip).

    Args:
        clips: uint8 (K, T, h, w, 3), resized (one side equal to `size` for three crops).
        size: crop side.
        num_crops: 1 (centre) or 3 (ThreeCrop).

    Returns:
        uint8 (num_crops * K, T, size, size, 3), contiguous.
    """
    corners = crop_corners(clips.shape[2], clips.shape[3], size, num_crops)
    return torch.cat([clips[:, :, y:y + size, x:x + size] for y, x in corners]).contiguous()


def normalize_views(views: torch.Tensor) -> torch.Tensor:
    """uint8 views to the model's input, float32 (x - mean) / std as the official Normalize, channels first.

    Args:
        views: uint8 (V, T, S, S, 3) RGB, on any device.

    Returns:
        float32 (V, 3, T, S, S) on the same device.
    """
    return normalize(views).permute(0, 4, 1, 2, 3).contiguous()  # (V, T, S, S, 3) -> (V, 3, T, S, S)


def make_views(frames, num_clips: int, clip_len: int, num_crops: int = 3, order=None,
               short_side: int = 224, crop: int = 224) -> torch.Tensor:
    """The network input for one video: resize, crop, normalise, lay out crop-major.

    Each row of `frames` is resized once however many clips use it; `order` then picks the rows in
    sampled order.

    Args:
        frames: uint8 (N, H, W, 3) decoded frames (numpy or torch, any device).
        num_clips: K clips.
        clip_len: L frames per clip.
        num_crops: 3 (ThreeCrop: left, right, middle) or 1 (CenterCrop).
        order: int (K*L,) row of `frames` for each sampled position, clip by clip; None when `frames`
            is already the K*L frames in sampled order.
        short_side: Resize(-1, short_side) before cropping.
        crop: crop size.

    Returns:
        float32 (num_crops*K, 3, L, crop, crop); view v = crop_index*K + clip.
    """
    resized = resize_short_side(frames, short_side)
    if order is not None:
        order = torch.as_tensor(order, dtype=torch.int64, device=resized.device).reshape(-1)
        resized = resized.index_select(0, order)
    if resized.shape[0] != num_clips * clip_len:
        raise ValueError(f"expected {num_clips}x{clip_len} frames, got {resized.shape[0]}")
    clips = resized.view(num_clips, clip_len, *resized.shape[1:])  # (K, L, H', W', 3)
    return normalize_views(crop_views(clips, crop, num_crops))
