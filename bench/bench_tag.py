"""End-to-end `vswin tag` throughput next to model-only throughput, measured in the same run.

End to end = decode (worker processes) + resize + crop + batching + model + aggregation, over a
folder of generated videos. Model only = the same model on the same number of views of random
input, already in memory, through the same runner `vswin tag` uses (the `--runtime` and `--precision`
it picks by default: on the CPU `--runtime auto`, the fastest installed runtime, and bf16 where the CPU
computes it natively). The ratio (end-to-end views/s over model-only views/s) says how well decoding
keeps the device fed: 1.0 means the model never waits. Beside wall time the table gives CPU seconds
per view (this process and its decode workers, all threads), which moves much less with other load.

Where the time goes, each measured alone in the same run: decode (the same worker processes and
DataLoader as `vswin tag`, no model: the views/s and clip frames/s the CPU can deliver), transfer
(pinned host memory to the device, plus the device-side resize and crops on CUDA, per view) and the
model (model-only above). The slowest of the three bounds the end-to-end rate.

    python bench/bench_tag.py --arch tiny --views fast --workers 2
    python bench/bench_tag.py --arch swin-b --views paper --device cuda --workers all --batch-views 16 \
        --size 720x1280 --json tag.json

Weights are random (no download); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import VideoSwin, get_config  # noqa: E402
from vswin_cli.api import Tagger, TagSettings  # noqa: E402
from vswin_cli.inference import Engine, views_on_device  # noqa: E402
from vswin_cli.segments import SegmentViews, VideoStream  # noqa: E402
from vswin_cli.protocol import ClipSpec  # noqa: E402
from vswin_cli.inputs import find_videos  # noqa: E402
from vswin_cli.runtime import cpu_precision, tune_allocator  # noqa: E402

TINY = dict(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=400)


def make_videos(folder: Path, count: int, seconds: float, fps: int, height: int, width: int) -> Path:
    """`count` H.264 videos (libx264, veryfast, CRF 23) of a moving blocky pattern, made in parallel and
    cached (made once per parameter set).

    Blocks of 16x16 pixels panning sideways, 4% of them recoloured every frame: a few Mbit/s at 720p,
    like camera footage (per-pixel noise would need tens of Mbit/s and make decoding look slower than
    it is; pure panning a tenth of that). The JSON reports the bitrate so the decode figure can be judged.
    """
    folder.mkdir(parents=True, exist_ok=True)
    missing = [folder / f"video_{i:03d}.mp4" for i in range(count)]
    missing = [(p, i, seconds, fps, height, width) for i, p in enumerate(missing) if not p.exists()]
    if len(missing) > 1:
        with ProcessPoolExecutor(min(len(missing), os.cpu_count() or 1)) as pool:
            list(pool.map(_make_video, missing))
    elif missing:
        _make_video(missing[0])
    return folder


def _make_video(job) -> None:
    path, seed, seconds, fps, height, width = job
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, (-(-height // 16), -(-2 * width // 16), 3), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_count = 1  # one process per video
        for t in range(int(seconds * fps)):
            changed = rng.random(cells.shape[:2]) < 0.04
            cells[changed] = rng.integers(0, 256, (int(changed.sum()), 3), dtype=np.uint8)
            base = np.repeat(np.repeat(cells, 16, axis=0), 16, axis=1)[:height, : 2 * width]  # (H, 2W, 3)
            shift = (t * 4 + seed) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    os.replace(tmp, path)


def bitrate_mbps(videos, seconds: float) -> float:
    """Mean bitrate of the generated files (Mbit/s)."""
    return sum(Path(v.path).stat().st_size for v in videos) * 8 / 1e6 / (seconds * len(videos))


def decode_only(engine: Engine, videos, keep: int = 4) -> dict:
    """One pass of the decode workers alone (same stream and DataLoader settings as `Engine.run`).

    Returns:
        seconds, views and clip frames delivered, and the first `keep` items (for `transfer_only`).
    """
    loader = torch.utils.data.DataLoader(
        VideoStream(videos, range(len(videos)), engine.spec, engine.decode, {}), batch_size=None,
        num_workers=engine.run_options.workers, pin_memory=engine.device.type == "cuda",
        prefetch_factor=4 if engine.run_options.workers else None)
    spec = engine.spec
    views = frames = 0
    kept = []
    start = time.perf_counter()
    for item in loader:
        if isinstance(item, SegmentViews):
            views += len(item.weights)
            # distinct clip frames: (U, T, ...) uncropped, or (crops * U, T, ...) cropped
            frames += item.frames.shape[0] * item.frames.shape[1] // (1 if not item.cropped else spec.num_crops)
            if len(kept) < keep:
                kept.append(item)
    return {"seconds": time.perf_counter() - start, "views": views, "clip_frames": frames, "items": kept}


def transfer_only(tagger: Engine, items: list) -> tuple[float, int]:
    """(seconds, views) to bring `items` onto the device as `vswin tag` does (copy, resize, crops)."""
    if not items:
        return 0.0, 0
    views_on_device(items[0], tagger.device, tagger.spec)  # warm-up: kernels, allocator
    sync = torch.cuda.synchronize if tagger.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    views = sum(len(views_on_device(item, tagger.device, tagger.spec)) for item in items)
    sync()
    return time.perf_counter() - start, views


def build_model(arch: str) -> VideoSwin:
    torch.manual_seed(0)
    cfg = get_config("swin-t").replace(**TINY) if arch == "tiny" else get_config(arch)
    return VideoSwin.from_config(cfg).eval()


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the decode workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def end_to_end(tagger: Engine, videos) -> tuple[float, float, int, float]:
    """(seconds, CPU seconds, views computed, video seconds tagged) for one pass over the videos."""
    tagger.num_views_computed = 0
    start, cpu_start = time.perf_counter(), cpu_seconds()
    duration = 0.0
    for result in tagger.run(videos):
        assert result.error is None, result.error
        duration += result.summary.duration
    if tagger.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, cpu_seconds() - cpu_start, tagger.num_views_computed, duration


@torch.inference_mode()
def model_only(tagger: Engine, num_views: int) -> tuple[float, float]:
    """(seconds, CPU seconds) to run `num_views` views (uint8 in device memory) through the engine's own
    `Network`, a batch at a time, as `vswin tag` scores them."""
    spec, batch, device = tagger.spec, tagger.run_options.batch_views, tagger.device
    size = spec.crop_size
    frames = torch.randint(0, 256, (batch, spec.clip_len, size, size, 3), dtype=torch.uint8, device=device)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    done = 0
    while done < num_views:
        views = frames[: min(batch, num_views - done)]
        tagger.network(views)
        done += len(views)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, cpu_seconds() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny", help="tiny (embed 8, depths 1,1) or swin-t/swin-s/swin-b")
    parser.add_argument("--views", choices=["fast", "paper"], default="fast")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of the generated videos")
    parser.add_argument("--workers", default="2", help="decode processes, or 'all' (every CPU core)")
    parser.add_argument("--batch-views", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None,
                        help="fp32/bf16/fp16 (default as vswin tag: bf16 on CUDA, on the CPU bf16 where native, else fp32)")
    parser.add_argument("--runtime", default="auto", help="CPU runtime as `vswin tag --runtime` (default auto)")
    parser.add_argument("--resize-on", choices=["auto", "workers", "device"], default="auto",
                        help="where frames are resized (auto: the device on CUDA, as `vswin tag` does)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where the generated videos are cached")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--crop-size", type=int, default=224, help="short-side resize and crop (default 224)")
    parser.add_argument("--make-only", action="store_true", help="only generate (cache) the videos, then exit")
    args = parser.parse_args()
    args.workers = (os.cpu_count() or 1) if args.workers == "all" else int(args.workers)

    height, width = (int(v) for v in args.size.split("x"))
    folder = Path(args.folder or Path(tempfile.gettempdir()) /
                  f"vswin-bench-{args.videos}x{args.seconds:g}s-{args.fps}fps-{height}x{width}")
    make_videos(folder, args.videos, args.seconds, args.fps, height, width)
    if args.make_only:
        print(f"videos in {folder}")
        return
    videos = find_videos([str(folder)])
    precision = args.precision or ("bf16" if args.device.startswith("cuda") else cpu_precision("auto")[0])
    tune_allocator()  # as `vswin tag` does at start-up
    paper = args.views == "paper"
    spec = ClipSpec(num_clips=4 if paper else 1, num_crops=3 if paper else 1, crop_size=args.crop_size)
    on_device = args.resize_on == "device" or (args.resize_on == "auto" and args.device.startswith("cuda"))
    door = Tagger(build_model(args.arch), [str(i) for i in range(400)], name="bench", device=torch.device(args.device),
                  precision=precision, runtime=args.runtime,
                  runtime_cache=str(Path(tempfile.gettempdir()) / "vswin-bench-exported"))
    tagger = door.engine(TagSettings(batch_views=args.batch_views, workers=args.workers), spec=spec)
    tagger.decode = dataclasses.replace(tagger.decode, resize_on_device=on_device)
    runtime_used = tagger.network.runtime

    end_to_end(tagger, videos[:1])  # warm-up: worker start, allocator, kernels
    e2e_runs, model_runs = [], []
    for _ in range(args.repeats):
        seconds, cpu, num_views, video_seconds = end_to_end(tagger, videos)
        e2e_runs.append((seconds, cpu))
        model_runs.append(model_only(tagger, num_views))
    (e2e, e2e_cpu), (only, only_cpu) = ([statistics.median(c) for c in zip(*runs)] for runs in (e2e_runs, model_runs))
    decode_start = cpu_seconds()
    decoded = decode_only(tagger, videos)
    decode_cpu = cpu_seconds() - decode_start
    transfer_s, transfer_views = transfer_only(tagger, decoded.pop("items"))
    print(f"vswin tag benchmark: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"arch={args.arch} views={args.views} ({spec.num_views}/segment) device={args.device} "
          f"precision={precision} runtime={runtime_used} workers={args.workers} batch={args.batch_views} "
          f"resize={'device' if on_device else 'workers'} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} cpus={os.cpu_count()}")
    print(f"input: {len(videos)} videos x {args.seconds:g} s, {height}x{width} @ {args.fps} fps (H.264); "
          f"{num_views} views computed per pass; median of {args.repeats}")
    print(f"{'':<14}{'seconds':>10}{'views/s':>10}{'video s/s':>11}{'CPU s/view':>12}")
    print(f"{'end to end':<14}{e2e:>10.2f}{num_views / e2e:>10.2f}{video_seconds / e2e:>11.2f}{e2e_cpu / num_views:>12.3f}")
    print(f"{'model only':<14}{only:>10.2f}{num_views / only:>10.2f}{video_seconds / only:>11.2f}{only_cpu / num_views:>12.3f}")
    print(f"ratio end-to-end / model-only: {only / e2e:.3f} (wall), {only_cpu / e2e_cpu:.3f} (CPU seconds)")
    decode_vps = decoded["views"] / decoded["seconds"]
    transfer_vps = transfer_views / transfer_s if transfer_s else float("inf")
    print(f"where the time goes (each alone): decode {decode_vps:.1f} views/s "
          f"({decoded['clip_frames'] / decoded['seconds']:.0f} clip frames/s from {args.workers} workers, "
          f"{decode_cpu / max(decoded['views'], 1):.3f} CPU s/view), "
          f"transfer{'+resize' if on_device else ''} {transfer_vps:.1f} views/s, model {num_views / only:.1f} views/s")
    # On the CPU decoding and the model share the cores: the CPU-basis ratio cannot pass this.
    decode_bound = (only_cpu / num_views) / (only_cpu / num_views + decode_cpu / max(decoded["views"], 1))
    if args.device == "cpu":
        print(f"decoding alone bounds the CPU-basis ratio at {decode_bound:.3f} (model / (model + decode) CPU s per view)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "arch": args.arch, "views": args.views, "views_per_segment": spec.num_views, "precision": precision,
            "runtime": runtime_used, "load_average": os.getloadavg(),
            "crop_size": args.crop_size, "workers": args.workers, "batch_views": args.batch_views, "resize": "device" if on_device else "workers",
            "cpus": os.cpu_count(), "videos": len(videos), "video_seconds_each": args.seconds, "size": [height, width],
            "fps": args.fps, "bitrate_mbps": bitrate_mbps(videos, args.seconds), "repeats": args.repeats,
            "views_per_pass": num_views,
            "end_to_end": {"seconds": e2e, "cpu_seconds": e2e_cpu, "views_per_s": num_views / e2e,
                           "video_s_per_s": video_seconds / e2e},
            "model_only": {"seconds": only, "cpu_seconds": only_cpu, "views_per_s": num_views / only,
                           "video_s_per_s": video_seconds / only},
            "ratio_end_to_end_over_model_only": only / e2e, "ratio_cpu_seconds": only_cpu / e2e_cpu,
            "ratio_cpu_bound_by_decoding": decode_bound if args.device == "cpu" else None,
            "decode_only": {"seconds": decoded["seconds"], "cpu_seconds": decode_cpu, "views_per_s": decode_vps,
                            "clip_frames_per_s": decoded["clip_frames"] / decoded["seconds"]},
            "transfer_only": {"seconds": transfer_s, "views": transfer_views, "views_per_s": transfer_vps},
        }, indent=1))


if __name__ == "__main__":
    main()
