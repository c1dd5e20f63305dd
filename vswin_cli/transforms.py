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

import functools
import os

import numpy as np
import torch

from vswin_cli.protocol import resized_size  # noqa: F401  (the size rule; re-exported)

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


def _linear_taps(src: int, dst: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """OpenCV INTER_LINEAR source positions and fixed-point weights along one axis (on the CPU).

    Returns:
        (first, second, weight_first, weight_second): int64, int64, int32, int32, each (dst,): output
        pixel d is (src[first]*weight_first + src[second]*weight_second) / 2048.
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
    return first, second, weight_first.to(torch.int32), weight_second.to(torch.int32)


@functools.lru_cache(maxsize=32)
def _resize_plan(src_h: int, src_w: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Taps of both axes for one (source, output) size, computed once: a video resizes every frame
    with the same plan, and `VideoReader.read(resize_short=...)` resizes one frame at a time.

    Returns:
        (x0, x1, wx0, wx1, needed, row0, row1, wy0, wy1) on the CPU: horizontal taps (width*3,) into a
        flattened row and weights (1, width*3); `needed` (R,) the source rows the vertical pass reads
        (each goes through the horizontal pass once); row0/row1 (height,) rows of `needed`; weights
        (1, height, 1).
    """
    x0, x1, wx0, wx1 = _linear_taps(src_w, width)
    y0, y1, wy0, wy1 = _linear_taps(src_h, height)
    needed, where = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    # Horizontal taps over a row flattened to (src_w * 3,) values: a plain 2-D gather is much faster
    # than indexing the pixel axis of (..., src_w, 3), and the weights repeat for the 3 channels.
    channel = torch.arange(3)
    x0, x1 = (x0 * 3)[:, None] + channel, (x1 * 3)[:, None] + channel  # (width, 3)
    return (x0.reshape(-1), x1.reshape(-1), wx0.repeat_interleave(3).view(1, -1), wx1.repeat_interleave(3).view(1, -1),
            needed, where[:height].contiguous(), where[height:].contiguous(), wy0.view(1, -1, 1), wy1.view(1, -1, 1))


def resize_bilinear_cv2(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize uint8 frames as `cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)`.

    Horizontal pass in exact integers, then the vertical pass as OpenCV's SIMD path computes it:
    ((row0 >> 4) * w0 >> 16) + ((row1 >> 4) * w1 >> 16), + 2, >> 2. No antialiasing when
    shrinking (OpenCV has none). An exact 2x shrink takes OpenCV's INTER_AREA shortcut (2x2 mean).

    On the CPU each frame goes through the same arithmetic in numpy (cheaper than torch's integer ops
    on small per-frame tensors), or through OpenCV itself when it is
    installed, the resize shrinks both sides, and OpenCV passed a bit-exactness check against the
    numpy code in this process (`_use_cv2`); `VSWIN_RESIZE=numpy` turns OpenCV off. Other devices
    use torch ops. All paths give the same bytes (tests/test_transforms.py).

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
    if frames.device.type == "cpu":
        out = np.empty((frames.shape[0], height, width, 3), np.uint8)
        for i, frame in enumerate(frames.numpy()):
            resize_frame_into(frame, out[i])
        return torch.from_numpy(out)
    if src_h == 2 * height and src_w == 2 * width:
        return _shrink_2x(frames)
    return _resize_torch(frames, height, width)


def _shrink_2x(frames: torch.Tensor) -> torch.Tensor:
    """OpenCV's exact-2x INTER_LINEAR shortcut (INTER_AREA: the rounded 2x2 mean), uint8 (T, 2h, 2w, 3) -> (T, h, w, 3)."""
    count, src_h, src_w = frames.shape[:3]
    quads = frames.reshape(count, src_h // 2, 2, src_w // 2, 2, 3).to(torch.int32)  # (T, h, 2, w, 2, 3)
    return ((quads.sum(dim=(2, 4)) + 2) >> 2).to(torch.uint8)


def resize_frame_into(frame: np.ndarray, out: np.ndarray) -> None:
    """`resize_bilinear_cv2` of one uint8 (H, W, 3) numpy frame, written into `out` (h, w, 3) (a decoder
    resizes each frame straight into its slot of the read's output: no second copy)."""
    src_h, src_w = frame.shape[:2]
    height, width = out.shape[:2]
    if (src_h, src_w) == (height, width):
        out[...] = frame
    elif src_h == 2 * height and src_w == 2 * width:
        out[...] = _shrink_2x(torch.from_numpy(frame)[None])[0].numpy()
    elif _use_cv2(src_h, src_w, height, width):
        _cv2_resize(frame, out)
    else:
        _resize_frame_numpy(frame, out)


def _resize_torch(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`resize_bilinear_cv2`'s arithmetic in torch integer ops (any device), uint8 (T, H, W, 3) in and out."""
    src_h, src_w = frames.shape[1:3]
    device = frames.device
    plan = _resize_plan(src_h, src_w, height, width)
    x0, x1, wx0, wx1, needed, row0, row1, wy0, wy1 = (t.to(device) for t in plan)
    out = torch.empty((frames.shape[0], height, width, 3), dtype=torch.uint8, device=device)
    chunk = max(1, (1 << 24) // max(1, len(needed) * width * 3))  # bound the int32 temporaries
    for start in range(0, frames.shape[0], chunk):
        rows = frames[start:start + chunk].index_select(1, needed)  # (t, R, src_w, 3)
        num = rows.shape[0]
        rows = rows.reshape(num * len(needed), src_w * 3)  # (t*R, src_w*3)
        # (t*R, width*3) in units of 1/2048, exact; OpenCV's vertical pass drops its 4 low bits.
        # index_select on 2-D views and in-place ops: advanced indexing, broadcasting over the channel
        # axis and temporaries dominated the CPU time.
        horizontal = rows.index_select(1, x0).to(torch.int32).mul_(wx0)
        horizontal.add_(rows.index_select(1, x1).to(torch.int32).mul_(wx1)).bitwise_right_shift_(4)
        horizontal = horizontal.view(num, len(needed), width * 3)  # (t, R, width*3)
        vertical = horizontal.index_select(1, row0).mul_(wy0).bitwise_right_shift_(16)  # (t, height, width*3)
        vertical.add_(horizontal.index_select(1, row1).mul_(wy1).bitwise_right_shift_(16))
        out[start:start + chunk] = vertical.add_(2).bitwise_right_shift_(2).clamp_(0, 255).view(num, height, width, 3)
    return out


def _resize_frame_numpy(frame: np.ndarray, out: np.ndarray) -> None:
    """`resize_bilinear_cv2`'s arithmetic on one uint8 (H, W, 3) frame into `out` (h, w, 3), in numpy."""
    src_h, src_w = frame.shape[:2]
    height, width = out.shape[:2]
    x0, x1, wx0, wx1, needed, row0, row1, wy0, wy1 = _resize_plan_numpy(src_h, src_w, height, width)
    rows = frame[needed].reshape(len(needed), src_w * 3)  # (R, src_w*3) the rows the vertical pass reads
    horizontal = np.take(rows, x0, axis=1).astype(np.int32)  # (R, width*3)
    horizontal *= wx0
    second = np.take(rows, x1, axis=1).astype(np.int32)
    second *= wx1
    horizontal += second
    horizontal >>= 4  # exact sum in 1/2048 units; OpenCV's vertical pass drops the 4 low bits
    vertical = horizontal[row0]  # (height, width*3)
    vertical *= wy0
    vertical >>= 16
    second = horizontal[row1]
    second *= wy1
    second >>= 16
    vertical += second
    vertical += 2
    vertical >>= 2
    np.clip(vertical, 0, 255, out=vertical)
    out[...] = vertical.reshape(height, width, 3)


@functools.lru_cache(maxsize=32)
def _resize_plan_numpy(src_h: int, src_w: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """`_resize_plan` as numpy arrays, vertical weights shaped (height, 1)."""
    x0, x1, wx0, wx1, needed, row0, row1, wy0, wy1 = (t.numpy() for t in _resize_plan(src_h, src_w, height, width))
    return x0, x1, wx0, wx1, needed, row0, row1, wy0.reshape(-1, 1), wy1.reshape(-1, 1)


_CV2_CHECKED: bool | None = None  # whether OpenCV's resize gave our bytes on the probe frames


def _use_cv2(src_h: int, src_w: int, height: int, width: int) -> bool:
    """Use OpenCV for this resize: installed, allowed, a shrink of both sides, and bit-exact here.

    OpenCV 5.0's INTER_LINEAR matches the official (4.5.5) bytes when shrinking but differs by one grey
    level in places when enlarging, so enlargements always take the numpy path. The check runs once per
    process on random frames of shrinking sizes, including odd ones.
    """
    global _CV2_CHECKED
    if height > src_h or width > src_w or os.environ.get("VSWIN_RESIZE", "").lower() == "numpy":
        return False
    if _CV2_CHECKED is None:
        _CV2_CHECKED = _check_cv2()
    return _CV2_CHECKED


def _check_cv2() -> bool:
    try:
        import cv2
    except Exception:  # not installed, or a broken binary wheel
        return False
    rng = np.random.default_rng(0)
    for (src_h, src_w), (height, width) in [((360, 640), (224, 398)), ((1080, 1920), (224, 398)),
                                            ((257, 301), (224, 262)), ((240, 320), (37, 53))]:
        frame = rng.integers(0, 256, (src_h, src_w, 3), dtype=np.uint8)
        ours = np.empty((height, width, 3), np.uint8)
        _resize_frame_numpy(frame, ours)
        if not np.array_equal(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR), ours):
            return False
    return True


def _cv2_resize(frame: np.ndarray, out: np.ndarray) -> None:
    import cv2

    cv2.resize(frame, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_LINEAR)


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
    num_clips, clip_len = clips.shape[:2]
    rows = torch.arange(num_clips * clip_len, device=clips.device).view(num_clips, clip_len)
    return gather_views(clips.reshape(num_clips * clip_len, *clips.shape[2:]), rows, size, num_crops)


def gather_views(frames: torch.Tensor, rows: torch.Tensor, size: int, num_crops: int) -> torch.Tensor:
    """`crop_views(frames[rows], size, num_crops)`, copying only the crops' pixels, once.

    A decode worker holds a chunk's distinct frames; each segment's clips are rows of it. Gathering
    whole frames first and then cropping copied every pixel twice, through a slow strided index.

    Args:
        frames: uint8 (F, h, w, 3), resized.
        rows: int64 (K, T), the frames of each clip.
        size, num_crops: as `crop_views`.

    Returns:
        uint8 (num_crops * K, T, size, size, 3), contiguous.
    """
    num_clips, clip_len = rows.shape
    corners = crop_corners(frames.shape[1], frames.shape[2], size, num_crops)
    out = torch.empty((len(corners) * num_clips, clip_len, size, size, 3), dtype=frames.dtype, device=frames.device)
    flat = rows.reshape(-1).to(frames.device)
    for i, (y, x) in enumerate(corners):
        # index_select into the output: one contiguous copy per frame row of the crop
        torch.index_select(frames[:, y:y + size, x:x + size], 0, flat,
                           out=out[i * num_clips:(i + 1) * num_clips].view(-1, size, size, 3))
    return out


def normalize_views(views: torch.Tensor) -> torch.Tensor:
    """uint8 views to the model's input, float32 (x - mean) / std as the official Normalize, channels first.

    Args:
        views: uint8 (V, T, S, S, 3) RGB, on any device.

    Returns:
        float32 (V, 3, T, S, S) on the same device.
    """
    # One pass to convert and lay out channels first, then the same subtraction and division as `normalize`
    # in place: the same bytes with a quarter of the memory traffic.
    out = torch.empty((views.shape[0], 3, *views.shape[1:4]), dtype=torch.float32, device=views.device)
    out.copy_(views.permute(0, 4, 1, 2, 3))  # (V, T, S, S, 3) -> (V, 3, T, S, S)
    mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=views.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(STD_RGB, dtype=torch.float32, device=views.device).view(1, 3, 1, 1, 1)
    return out.sub_(mean).div_(std)


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
