"""End-to-end `vswin tag` throughput next to model-only throughput, measured in the same run.

End to end = decode (worker processes) + resize + crop + batching + model + aggregation, over a
folder of generated videos. Model only = the same model on the same number of views of random
input, already in memory. The ratio (end-to-end views/s over model-only views/s) says how well
decoding keeps the device fed: 1.0 means the model never waits.

    python bench/bench_tag.py --arch tiny --views fast --workers 2
    python bench/bench_tag.py --arch swin-t --views paper --device cuda --workers 8 --batch-size 16

Weights are random (no download); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import VideoSwin, get_config  # noqa: E402
from vswin_cli.inference import TagOptions, Tagger  # noqa: E402
from vswin_cli.transforms import normalize_views  # noqa: E402
from vswin_cli.protocol import ClipSpec  # noqa: E402
from vswin_cli.inputs import find_videos  # noqa: E402

TINY = dict(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=400)


def make_videos(folder: Path, count: int, seconds: float, fps: int, height: int, width: int) -> Path:
    """`count` H.264 videos of moving noise (cached: made once per parameter set)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    for i in range(count):
        path = folder / f"video_{i:03d}.mp4"
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(int(seconds * fps)):
                shift = (t * 4 + i) % width
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + width]), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        os.replace(tmp, path)
    return folder


def build_model(arch: str) -> VideoSwin:
    torch.manual_seed(0)
    cfg = get_config("swin-t").replace(**TINY) if arch == "tiny" else get_config(arch)
    return VideoSwin.from_config(cfg).eval()


def end_to_end(model, videos, spec: ClipSpec, options: TagOptions) -> tuple[float, int, float]:
    """(seconds, views computed, video seconds tagged) for one pass over the videos."""
    tagger = Tagger(model, [str(i) for i in range(400)], "bench", spec, options)
    start = time.perf_counter()
    duration = 0.0
    for result in tagger.run(videos):
        assert result.error is None, result.error
        duration += result.summary.duration
    if options.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, tagger.num_views_computed, duration


@torch.inference_mode()
def model_only(model, num_views: int, spec: ClipSpec, options: TagOptions) -> float:
    """Seconds to run `num_views` views (uint8 in device memory, normalised per batch) through the model."""
    device = torch.device(options.device)
    model = model.to(device)
    size = spec.crop_size
    frames = torch.randint(0, 256, (options.batch_size, spec.clip_len, size, size, 3), dtype=torch.uint8, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.precision)
    start = time.perf_counter()
    done = 0
    while done < num_views:
        batch = frames[: min(options.batch_size, num_views - done)]
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(normalize_views(batch))
        done += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny", help="tiny (embed 8, depths 1,1) or swin-t/swin-s/swin-b")
    parser.add_argument("--views", choices=["fast", "paper"], default="fast")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of the generated videos")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="fp32/bf16/fp16 (default bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--resize-on", choices=["auto", "workers", "device"], default="auto",
                        help="where frames are resized (auto: the device on CUDA, as `vswin tag` does)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where the generated videos are cached")
    args = parser.parse_args()

    height, width = (int(v) for v in args.size.split("x"))
    folder = Path(args.folder or Path(tempfile.gettempdir()) /
                  f"vswin-bench-{args.videos}x{args.seconds:g}s-{args.fps}fps-{height}x{width}")
    make_videos(folder, args.videos, args.seconds, args.fps, height, width)
    videos = find_videos([str(folder)])
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else "fp32")
    paper = args.views == "paper"
    spec = ClipSpec(num_clips=4 if paper else 1, num_crops=3 if paper else 1)
    on_device = args.resize_on == "device" or (args.resize_on == "auto" and args.device.startswith("cuda"))
    options = TagOptions(batch_size=args.batch_size, workers=args.workers, device=args.device, precision=precision,
                         resize_on_device=on_device)
    model = build_model(args.arch)

    end_to_end(model, videos[:1], spec, options)  # warm-up: worker start, allocator, kernels
    e2e_times, model_times = [], []
    for _ in range(args.repeats):
        seconds, num_views, video_seconds = end_to_end(model, videos, spec, options)
        e2e_times.append(seconds)
        model_times.append(model_only(model, num_views, spec, options))
    e2e, only = statistics.median(e2e_times), statistics.median(model_times)
    print(f"vswin tag benchmark: arch={args.arch} views={args.views} ({spec.num_views}/segment) device={args.device} "
          f"precision={precision} workers={args.workers} batch={args.batch_size} "
          f"resize={'device' if on_device else 'workers'} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} cpus={os.cpu_count()}")
    print(f"input: {len(videos)} videos x {args.seconds:g} s, {height}x{width} @ {args.fps} fps (H.264); "
          f"{num_views} views computed per pass; median of {args.repeats}")
    print(f"{'':<14}{'seconds':>10}{'views/s':>10}{'video s/s':>11}")
    print(f"{'end to end':<14}{e2e:>10.2f}{num_views / e2e:>10.1f}{video_seconds / e2e:>11.1f}")
    print(f"{'model only':<14}{only:>10.2f}{num_views / only:>10.1f}{video_seconds / only:>11.1f}")
    print(f"ratio end-to-end / model-only: {only / e2e:.2f}")


if __name__ == "__main__":
    main()
