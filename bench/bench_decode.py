"""Speed of the input side: the 12 Kinetics test views (4 clips x 3 crops) of generated 10 s videos.

    python bench/bench_decode.py                 # speed table (1280x720 and 640x360 H.264, 30 fps)
    python bench/bench_decode.py --shared        # decord check over ../shared/videos (opens, counts, golden)
    PYTHONPATH=/path/to/other/decord python bench/bench_decode.py --shared   # the same with another decord

For each backend (decord, pyav) and for the reduced-resolution decode (frames scaled in the decoder
so the short side is 224, then the resize is a copy), reports the median over runs of: decode time
(open + read of the distinct sampled frames), resize+crop+normalise time, total, clips per second,
and the share of decode. Results go in docs/benchmarks.md (section decode).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli.decode import decord_version, open_video  # noqa: E402
from vswin_cli.errors import VideoDecodeError  # noqa: E402
from vswin_cli.transforms import make_views  # noqa: E402
from vswin_cli.sampling import clip_indices  # noqa: E402
from vswin_cli.video import views_from_reader  # noqa: E402


def make_video(path: Path, width: int, height: int, seconds: int = 10, fps: int = 30) -> Path:
    """H.264 (x264 medium-ish settings, keyframe every 2 s) of a moving pattern with some noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * fps)}
        for i in range(seconds * fps):
            base = ((xx + 4 * i) % 256 + (yy // 2 + i) % 256) // 2
            frame = np.stack([base, (base + 85) % 256, (255 - base)], axis=-1).astype(np.uint8)
            frame[::7, ::5] = rng.integers(0, 256, frame[::7, ::5].shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_views(path: Path, backend: str, short_side: int | None, runs: int) -> dict:
    decode_s, views_s, cpu_s = [], [], []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        with open_video(path, backend=backend, short_side=short_side) as reader:
            indices = clip_indices(reader.num_frames, "k400")
            distinct, order = np.unique(indices.reshape(-1), return_inverse=True)
            frames = reader.read(distinct)
            used = reader.backend
        decoded = time.perf_counter()
        views = make_views(torch.from_numpy(frames), 4, 32, 3, order=order.reshape(-1))
        done = time.perf_counter()
        cpu_s.append(time.process_time() - cpu_start)
        assert views.shape == (12, 3, 32, 224, 224)
        decode_s.append(decoded - start)
        views_s.append(done - decoded)
    decode, resize = statistics.median(decode_s), statistics.median(views_s)
    return {"backend": used, "decode_s": decode, "views_s": resize, "total_s": decode + resize,
            "cpu_s": statistics.median(cpu_s),
            "clips_per_s": 4 / (decode + resize), "decode_share": decode / (decode + resize)}


def speed(runs: int) -> None:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load {load}), "
          f"{torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, PyAV {av.__version__}, decord {decord_version()}, {time.strftime('%Y-%m-%d')}")
    print("| video | backend | decode size | decode s | resize+crop+norm s | total s | CPU s | clips/s | "
          "decode share |")
    print("|---|---|---|---|---|---|---|---|---|")
    backends = (["decord"] if decord_version() else []) + ["pyav"]
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in [(1280, 720), (640, 360)]:
            path = make_video(Path(tmp) / f"v{width}.mp4", width, height)
            results = {}
            for backend in backends:
                for short_side in (None, 224):
                    r = time_views(path, backend, short_side, runs)
                    results[backend, short_side] = r
                    size = "full" if short_side is None else "short side 224"
                    print(f"| {width}x{height} 10 s | {r['backend']} | {size} | {r['decode_s']:.3f} | "
                          f"{r['views_s']:.3f} | {r['total_s']:.3f} | {r['cpu_s']:.2f} | {r['clips_per_s']:.1f} | "
                          f"{100 * r['decode_share']:.0f}% |")
            base = results[backends[0], None]["total_s"]
            ratios = ", ".join(f"{b}{'' if s is None else '+reduced'} {base / r['total_s']:.2f}x"
                               for (b, s), r in results.items())
            print(f"|  | speed vs {backends[0]} full: {ratios} | | | | | | | |")


def shared_check(backend: str) -> None:
    """Per file of ../shared/videos: does it open, frame count, backend used, sthv2 views vs golden."""
    shared = ROOT.parent / "shared"
    index = json.loads((shared / "fixtures" / "pipeline" / "index.json").read_text())["videos"]
    print(f"# decord {decord_version()}, backend={backend}, {time.strftime('%Y-%m-%d')}")
    print("| file | official | result | frames | used | golden exact share | max abs diff | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, entry in sorted(index.items()):
        official = entry["configs"]["sthv2"]
        start = time.perf_counter()
        try:
            with open_video(shared / "videos" / name, backend=backend) as reader:
                indices = clip_indices(reader.num_frames, "sthv2")
                views = views_from_reader(reader, indices, "sthv2")
                result, frames, used = "ok", reader.num_frames, reader.backend
        except VideoDecodeError as err:
            result, frames, used, views = f"error: {err.reason[:50]}", "", "", None
        exact = maxdiff = ""
        if views is not None and official["status"] == "ok":
            record = json.loads((shared / "fixtures" / "pipeline" / entry["id"] / "sthv2.json").read_text())
            coords = torch.tensor(record["sample_coords_cthw"])
            values = views[:, coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]].numpy()
            diff = np.abs(values - np.asarray(record["sample_values"], np.float32))
            exact, maxdiff = f"{np.mean(diff == 0):.3f}", f"{diff.max():.3f}"
            if frames != record["total_frames"]:
                result = f"count {frames} != {record['total_frames']}"
        print(f"| {name[:32]} | {official['status']} | {result} | {frames} | {used} | {exact} | {maxdiff} | "
              f"{time.perf_counter() - start:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (median reported)")
    parser.add_argument("--shared", action="store_true", help="check every file of ../shared/videos instead")
    parser.add_argument("--backend", default="decord", help="backend for --shared (decord, pyav, auto)")
    args = parser.parse_args()
    if args.shared:
        shared_check(args.backend)
    else:
        speed(args.runs)


if __name__ == "__main__":
    main()
