"""Resize, crops, normalisation and layout on synthetic frames (golden comparisons: test_video_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vswin_cli.transforms import (
    MEAN_RGB,
    STD_RGB,
    center_crop_offset,
    crop_views,
    gather_views,
    make_views,
    normalize,
    normalize_views,
    resize_bilinear_cv2,
    resize_short_side,
    resized_size,
    three_crop_offsets,
)


def _random_frames(t, h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8))


def test_resized_size_spec_examples():
    assert resized_size(256, 340) == (224, 298)
    assert resized_size(720, 1280) == (224, 398)
    assert resized_size(568, 320) == (398, 224)
    assert resized_size(72, 1280) == (224, 3982)
    assert resized_size(224, 224) == (224, 224)


def test_three_crop_offsets_spec_examples():
    assert three_crop_offsets(224, 298) == [(0, 0), (0, 74), (0, 37)]  # left, right, middle
    assert three_crop_offsets(398, 224) == [(0, 0), (174, 0), (87, 0)]  # top, bottom, middle
    assert three_crop_offsets(224, 275) == [(0, 0), (0, 50), (0, 25)]  # odd leftover: right stops 1 short
    assert three_crop_offsets(224, 224) == [(0, 0)] * 3
    with pytest.raises(ValueError):
        three_crop_offsets(300, 300)
    assert center_crop_offset(256, 341) == (16, 58)


def test_resize_same_size_is_a_copy():
    frames = _random_frames(2, 224, 300)
    assert torch.equal(resize_short_side(frames), frames)


def test_resize_2x_shrink_is_the_2x2_mean():
    frames = _random_frames(1, 448, 600)
    out = resize_bilinear_cv2(frames, 224, 300).int()
    quads = frames.int().view(1, 224, 2, 300, 2, 3)
    assert torch.equal(out, (quads.sum(dim=(2, 4)) + 2) // 4)


@pytest.mark.parametrize("src,dst", [((120, 160), (224, 298)), ((720, 1280), (224, 398)), ((17, 33), (224, 435)),
                                     ((1, 1), (224, 224))])
def test_resize_close_to_float_bilinear(src, dst):
    """OpenCV's fixed-point bilinear is within one grey level of exact half-pixel bilinear (no antialias)."""
    frames = _random_frames(2, *src, seed=1)
    ours = resize_bilinear_cv2(frames, *dst).int()
    ref = F.interpolate(frames.permute(0, 3, 1, 2).double(), size=dst, mode="bilinear", align_corners=False,
                        antialias=False).permute(0, 2, 3, 1)
    assert (ours - ref).abs().max() <= 1.0
    assert ours.shape == (2, *dst, 3)


def test_resize_constant_image_stays_constant():
    frames = torch.full((1, 90, 160, 3), 200, dtype=torch.uint8)
    assert (resize_short_side(frames) == 200).all()


def test_normalize_matches_formula():
    pixels = torch.tensor([[[0, 128, 255]]], dtype=torch.uint8)
    expected = (np.array([0, 128, 255], np.float32) - np.float32(MEAN_RGB)) / np.float32(STD_RGB)
    assert np.array_equal(normalize(pixels).numpy().reshape(-1), expected)


def test_make_views_layout_is_crop_major():
    """Frame value = its sampled position; each view must hold its clip's frames from its crop."""
    num_clips, clip_len = 2, 3
    positions = np.arange(num_clips * clip_len)
    frames = np.zeros((len(positions), 224, 300, 3), np.uint8)
    frames[..., 0] = positions[:, None, None] * 10  # R = 10 * position
    frames[..., 1] = np.arange(300, dtype=np.uint8)[None, None, :] // 2  # G encodes x
    views = make_views(frames, num_clips, clip_len, num_crops=3)
    assert views.shape == (6, 3, clip_len, 224, 224) and views.dtype == torch.float32
    red = views[:, 0, :, 0, 0] * STD_RGB[0] + MEAN_RGB[0]  # (V, T)
    green_left = views[:, 1, 0, 0, 0] * STD_RGB[1] + MEAN_RGB[1]  # first column of each crop
    for view in range(6):
        crop, clip = divmod(view, num_clips)
        assert torch.allclose(red[view], torch.tensor([10.0 * (clip * clip_len + t) for t in range(clip_len)]),
                              atol=1e-3)
        assert green_left[view].item() == pytest.approx([0, 76, 38][crop] // 2, abs=1e-3)  # x = 0, 76, 38


def test_make_views_order_reuses_frames():
    frames = _random_frames(4, 120, 160, seed=2)
    order = np.array([0, 1, 1, 3, 3, 2])
    direct = make_views(frames[torch.from_numpy(order)], 2, 3)
    shared = make_views(frames, 2, 3, order=order)
    assert torch.equal(direct, shared)


def test_make_views_center_crop():
    frames = _random_frames(2, 256, 256, seed=3)
    views = make_views(frames, 1, 2, num_crops=1, short_side=256)
    assert views.shape == (1, 3, 2, 224, 224)
    assert torch.equal(views[0].permute(1, 2, 3, 0), normalize(frames[:, 16:240, 16:240]))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError):
        resize_short_side(torch.zeros((2, 8, 8), dtype=torch.uint8))
    with pytest.raises(ValueError):
        make_views(_random_frames(5, 64, 64), 2, 3)


RESIZE_CASES = [((120, 160), (224, 298)), ((720, 1280), (224, 398)), ((17, 33), (224, 435)), ((1, 1), (224, 224)),
                ((360, 640), (224, 398)), ((1080, 1920), (224, 398)), ((257, 301), (224, 262)), ((48, 64), (224, 299)),
                ((448, 796), (224, 398))]  # the last: an exact 2x shrink (the 2x2-mean shortcut)


@pytest.mark.parametrize("src,dst", RESIZE_CASES)
def test_resize_cpu_path_equals_torch_ops(src, dst):
    """The CPU path (numpy, or OpenCV where installed and exact) gives the bytes of the torch-ops path
    that other devices run."""
    from vswin_cli.transforms import _resize_torch

    frames = _random_frames(3, *src, seed=4)
    assert torch.equal(resize_bilinear_cv2(frames, *dst), _resize_torch(frames, *dst))


def test_resize_without_opencv_equals_with(monkeypatch):
    """VSWIN_RESIZE=numpy (or no OpenCV) changes nothing but speed."""
    frames = _random_frames(2, 360, 640, seed=5)
    default = resize_short_side(frames)
    monkeypatch.setenv("VSWIN_RESIZE", "numpy")
    assert torch.equal(resize_short_side(frames), default)


def test_opencv_is_used_only_for_exact_shrinks(monkeypatch):
    from vswin_cli import transforms

    monkeypatch.setattr(transforms, "_CV2_CHECKED", True)
    assert transforms._use_cv2(360, 640, 224, 398)
    assert not transforms._use_cv2(48, 64, 224, 299)  # enlarging: OpenCV 5 differs by a grey level in places
    monkeypatch.setattr(transforms, "_CV2_CHECKED", False)
    assert not transforms._use_cv2(360, 640, 224, 398)  # failed the bit-exactness check
    monkeypatch.setattr(transforms, "_CV2_CHECKED", True)
    monkeypatch.setenv("VSWIN_RESIZE", "numpy")
    assert not transforms._use_cv2(360, 640, 224, 398)


def test_resize_of_a_numpy_view_and_a_single_frame():
    frames = _random_frames(4, 90, 160, seed=6)
    strided = frames.numpy()[::2]  # a non-contiguous batch
    assert torch.equal(resize_short_side(strided.copy()), resize_short_side(frames[::2].contiguous()))
    assert torch.equal(resize_short_side(frames[1:2])[0], resize_short_side(frames)[1])


@pytest.mark.parametrize("num_crops,size_hw", [(1, (24, 41)), (3, (24, 41)), (3, (37, 24))])
def test_gather_views_equals_cropping_gathered_clips(num_crops, size_hw):
    """What a decode worker sends (crops gathered from the chunk's frames) equals cropping whole clips
    gathered first, repeated frames and several clips included."""
    frames = _random_frames(10, *size_hw, seed=7)
    rows = torch.tensor([[0, 2, 2, 5], [3, 4, 8, 9]])
    expected = crop_views(frames[rows], 24, num_crops)
    got = gather_views(frames, rows, 24, num_crops)
    assert got.shape == (num_crops * 2, 4, 24, 24, 3) and got.is_contiguous()
    assert torch.equal(got, expected)
    if num_crops == 3:  # crop-major: view 1 is the first crop (left or top) of the second clip
        assert torch.equal(got[1], frames[rows[1]][:, :24, :24])


def test_normalize_views_is_normalize_laid_out_channels_first():
    """The fused channels-first normalisation gives exactly the bytes of `normalize` then a permute."""
    views = _random_frames(6, 5, 5, seed=8).view(2, 3, 5, 5, 3)  # (V, T, S, S, 3)
    got = normalize_views(views)
    assert got.shape == (2, 3, 3, 5, 5) and got.dtype == torch.float32 and got.is_contiguous()
    assert torch.equal(got, normalize(views).permute(0, 4, 1, 2, 3))
