"""The CUDA path, each check parametrized over devices: "cpu" (the twin, always run, guards the logic
in CI) and "cuda" (marker `cuda`, skipped without a GPU). `pytest -m cuda` runs only the CUDA ones;
bench/device_check.sh runs them first on a GPU machine.

- the golden network fixtures (../shared/fixtures) in fp32 (<= 1e-4 relative, as the CPU tests) and
  bf16 (<= 0.03, the bound of the CPU bf16 tests), cast and under autocast as `vswin tag` runs;
- FlexAttention (models/flex.py) through the whole network against the float64 reference path;
- the resize + crops that `vswin tag` runs on the device bit-equal to the decode workers' (CPU) ones;
- `python -m vswin_cli tag` on a few ../shared/videos: the same top labels as on the CPU in fp32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models import VideoSwin, flex, load_checkpoint, swin3d
from tests.conftest import REPO, save_tiny_model, shared_path
from vswin_cli.decode import open_video
from vswin_cli.inference import views_on_device
from vswin_cli.segments import SegmentViews
from vswin_cli.protocol import ClipSpec
from vswin_cli.transforms import crop_views, resize_short_side

HAS_CUDA = torch.cuda.is_available()
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")])
DEVICES = ["cpu", CUDA]

# Bounds shared with tests/test_model.py: fp32 as the golden tests, bf16 as the CPU bf16 tests.
FP32_TOL, BF16_TOL = 1e-4, 0.03


def shared(*parts: str) -> Path:
    """../shared (as everywhere), or a `shared/` copied into the checkout (a device machine's copy)."""
    inside = REPO / "shared"
    if inside.is_dir() and not (REPO.parent / "shared").is_dir():
        return inside.joinpath(*parts)
    return shared_path(*parts)


def rel_err(ours: torch.Tensor, golden: torch.Tensor) -> float:
    return ((ours.double().cpu() - golden).abs().max() / golden.abs().max()).item()


def load_case(case: str):
    folder = shared("fixtures", case)
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing")
    model = VideoSwin(**json.loads((folder / "config.json").read_text())).eval()
    load_checkpoint(model, folder / "checkpoint.pth")
    x = torch.load(folder / "input.pt", weights_only=True)
    return model, x, torch.load(folder / "logits.pt", weights_only=True)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["official/a_standard", "official/b_clipped_odd"])
def test_golden_logits_fp32(device, case):
    model, x, golden = load_case(case)
    with torch.no_grad():
        logits = model.to(device)(x.to(device))
    assert logits.device.type == device and logits.dtype == torch.float32
    assert rel_err(logits, golden) <= FP32_TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["cast", "autocast"])
@pytest.mark.parametrize("case", ["official/a_standard", "official/b_clipped_odd"])
def test_golden_logits_bf16(device, mode, case):
    """bf16 weights and input, or fp32 weights under bf16 autocast (what `vswin tag` does on CUDA)."""
    model, x, golden = load_case(case)
    model, x = model.to(device), x.to(device)
    with torch.no_grad():
        if mode == "cast":
            logits = model.to(torch.bfloat16)(x.to(torch.bfloat16))
        else:
            with torch.autocast(device, dtype=torch.bfloat16):
                logits = model(x)
    assert logits.dtype == torch.bfloat16
    err = rel_err(logits.float(), golden)
    assert err <= BF16_TOL
    assert err > 0  # it did run in bf16 (exact equality would mean fp32 underneath)


@pytest.mark.parametrize("device", DEVICES)
def test_flex_attention_through_the_network(device):
    """Every block through `flex_window_attention` (compiled on CUDA, eager on the CPU) equals the float64
    reference path within fp32 rounding. head_dim 16 so the fused CUDA kernel accepts it."""
    if not flex.FLEX_AVAILABLE:
        pytest.skip("this PyTorch has no flex_attention")
    torch.manual_seed(0)
    config = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=(2, 3, 3), num_classes=7,
                  drop_path_rate=0.0)
    model = VideoSwin(**config).eval()
    x = torch.randn(2, 3, 8, 40, 40)
    reference = model.double()
    reference.set_reference_attention(True)
    with torch.no_grad():
        expected = reference(x.double())
    reference.set_reference_attention(False)
    model = reference.float().to(device)
    calls = []

    assert flex.use_flex(torch.empty(1, 16, device=device)) == (device == "cuda")  # the path `forward` would pick

    def forward(self, tokens, shift_mask, shift_key=None):
        calls.append(shift_mask is not None)
        return flex.window_attention_forward(self, tokens, shift_mask)

    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(swin3d.WindowAttention3D, "forward", forward)
        logits = model(x.to(device))
    assert len(calls) == 4 and any(calls)
    assert rel_err(logits, expected) <= FP32_TOL


# ---------------------------------------------------------------------------------------------
# Resize and crops on the device
# ---------------------------------------------------------------------------------------------


def views_both_ways(frames: torch.Tensor, spec: ClipSpec, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(views made on `device` by `inference.views_on_device`, views made by the CPU decode workers).

    frames: uint8 (U, T, H, W, 3) full-size clips.
    """
    clips, clip_len = frames.shape[:2]
    # What the decode workers do when the resize stays on the CPU (`segment_views`).
    resized = resize_short_side(frames.flatten(0, 1), spec.resize_short)
    on_cpu = crop_views(resized.view(clips, clip_len, *resized.shape[1:]), spec.crop_size, spec.num_crops)
    item = SegmentViews(0, None, frames, torch.ones(clips), cropped=False)
    on_device = views_on_device(item, torch.device(device), spec)
    assert on_device.device.type == device
    return on_device.cpu(), on_cpu


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "height, width, crop, crops",
    [(360, 640, 224, 3), (720, 1280, 224, 1), (448, 600, 224, 3), (100, 90, 224, 3), (272, 640, 32, 3)],
)
def test_device_resize_and_crops_are_bit_equal_to_the_cpu(device, height, width, crop, crops):
    """Shrink, exact 2x (OpenCV's INTER_AREA shortcut), enlarge, odd ratios: the same bytes."""
    gen = torch.Generator().manual_seed(height * width)
    frames = torch.randint(0, 256, (2, 3, height, width, 3), dtype=torch.uint8, generator=gen)
    spec = ClipSpec(num_clips=2, num_crops=crops, crop_size=crop)
    ours, expected = views_both_ways(frames, spec, device)
    assert ours.shape == (crops * 2, 3, crop, crop, 3) and ours.dtype == torch.uint8
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["bikes.mp4", "portrait_180x320.mp4"])
def test_device_resize_of_decoded_video_frames(device, name):
    path = shared("videos", name)
    with open_video(path, backend="pyav") as reader:
        frames = torch.from_numpy(reader.read(np.arange(0, 16)))  # (16, H, W, 3) uint8
    spec = ClipSpec(num_clips=2, num_crops=3, crop_size=224)
    ours, expected = views_both_ways(frames.view(2, 8, *frames.shape[1:]), spec, device)
    assert torch.equal(ours, expected)


# ---------------------------------------------------------------------------------------------
# `vswin tag` end to end
# ---------------------------------------------------------------------------------------------

VIDEOS = ["bikes.mp4", "chaplin.mp4", "portrait_180x320.mp4", "frames_64.mp4"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> list[str]:
    """CLI options for a seeded tiny model saved in the official layout (as tests/test_tag_cli.py)."""
    return [*save_tiny_model(tmp_path_factory.mktemp("tiny-model")), "-q"]


def tag(tiny_model: list[str], *options: str) -> dict[str, dict]:
    """`python -m vswin_cli tag` on VIDEOS: {"video name": {"video": top, "segments": [top, ...]}}."""
    paths = [str(shared("videos", name)) for name in VIDEOS]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "vswin_cli", "tag", *paths, *tiny_model, *options],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out: dict[str, dict] = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if record["record"] == "run":
            continue
        entry = out.setdefault(Path(record["video"]).name, {"segments": []})
        if record["record"] == "video":
            entry["video"] = record["top"]
        elif record["record"] == "segment":
            entry["segments"].append(record["top"])
    assert sorted(out) == sorted(VIDEOS)
    return out


def assert_same_tags(ours: dict, reference: dict, exact: bool) -> None:
    """Same labels as the CPU fp32 run. exact (fp32): every segment's and video's top-5 in the same order,
    scores within 1e-3. Otherwise (bf16): the top-1 label wherever the reference's top-1 leads by > 0.05."""
    for name, ref in reference.items():
        pairs = list(zip(ours[name]["segments"], ref["segments"])) + [(ours[name]["video"], ref["video"])]
        assert len(ours[name]["segments"]) == len(ref["segments"])
        for got, want in pairs:
            if exact:
                assert [t["label"] for t in got] == [t["label"] for t in want], name
                assert np.allclose([t["score"] for t in got], [t["score"] for t in want], atol=1e-3), name
            elif want[0]["score"] - want[1]["score"] > 0.05:
                assert got[0]["label"] == want[0]["label"], name


@pytest.fixture(scope="module")
def cpu_tags(tiny_model):
    if not shared("videos").is_dir():
        pytest.skip("../shared/videos is missing")
    return tag(tiny_model, "--device", "cpu", "--precision", "fp32", "--workers", "0")


@pytest.mark.parametrize(
    "device, precision",
    [pytest.param("cpu", "bf16", marks=pytest.mark.slow), ("cpu", "fp32"), pytest.param(*CUDA.values, "fp32", marks=CUDA.marks),
     pytest.param(*CUDA.values, "auto", marks=CUDA.marks)],
)
def test_tag_gives_the_cpu_top_labels(tiny_model, cpu_tags, device, precision):
    """CPU twins: bf16 on the CPU, and fp32 with two decode workers and another batch size (the same
    comparison). On CUDA the frames go through pinned memory, the device-side resize and autocast."""
    ours = tag(tiny_model, "--device", device, "--precision", precision, "--workers", "2", "--batch-views", "3")
    assert any(seg for entry in cpu_tags.values() for seg in entry["segments"])
    labels = {t[0]["label"] for entry in cpu_tags.values() for t in entry["segments"]}
    assert len(labels) > 1  # the comparison can tell labels apart
    assert_same_tags(ours, cpu_tags, exact=precision == "fp32")
