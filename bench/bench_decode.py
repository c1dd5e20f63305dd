"""Decode-side speed and memory: our reader against a plain PyAV loop and decord, per resolution and length.

    python bench/bench_decode.py                 # table: 360p/720p/1080p 10 s and a long 360p file
    python bench/bench_decode.py --large         # peak RSS, 4096x4096 frames: decode all then resize vs as decoded
    python bench/bench_decode.py --resize        # exact resize: torch ops vs numpy vs OpenCV (when installed)
    python bench/bench_decode.py --views         # the 12 Kinetics views of 10 s videos (decode + resize + crops)
    python bench/bench_decode.py --shared        # decord check over ../shared/videos (opens, counts, golden)

Every measurement runs in its own process (peak RSS is per process) on generated H.264 (x264 veryfast,
crf 23, keyframe every 2 s, 30 fps; the long file repeats a 10 s unit without re-encoding). Two access
patterns:
- `all`: every frame in order at full size (what a plain decode loop does);
- `tag`: what `vswin tag` reads: every 2nd frame in chunks of 256 distinct frames, each resized so the
  short side is 224 (the plain loop resizes the frames it keeps with the same exact resize).
Readers: `plain` (`for frame in container.decode(...)`, `to_ndarray("rgb24")`), `pyav` (our reader),
`decord` (our reader, decord backend, batches of 16). Reports frames/s (frames delivered per wall
second), CPU seconds (user+sys, all threads), and peak RSS. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli.decode import decord_version, open_video  # noqa: E402
from vswin_cli.errors import VideoDecodeError  # noqa: E402

CHUNK = 256  # distinct frames per read in the `tag` pattern (as vswin tag reads)
ALL_CHUNK = int(os.environ.get("BENCH_ALL_CHUNK", "256"))  # frames per read in the `all` pattern


def make_video(path: Path, width: int, height: int, seconds: int = 10, fps: int = 30) -> Path:
    """H.264 (x264 veryfast, crf 23, keyframe every 2 s) of a moving pattern with some noise."""
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


def repeat_video(unit: Path, path: Path, seconds: int) -> Path:
    """`unit`'s packets muxed again and again with shifted timestamps up to `seconds` (no re-encoding)."""
    with av.open(str(unit)) as source, av.open(str(path), "w") as out:
        in_stream = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in source.demux(in_stream) if p.size]
        pts = sorted(p[1] for p in packets)
        span = pts[-1] - pts[0] + (pts[1] - pts[0])  # the unit's duration in pts units
        out_stream = out.add_stream_from_template(in_stream)
        total = int(seconds / (float(in_stream.time_base) * span) * len(packets))
        for n in range(total):
            data, pts, dts, key = packets[n % len(packets)]
            packet = av.Packet(data)
            offset = (n // len(packets)) * span
            packet.pts, packet.dts = pts + offset, dts + offset
            packet.is_keyframe, packet.time_base, packet.stream = key, in_stream.time_base, out_stream
            out.mux(packet)
    return path


def _tag_chunks(num_frames: int):
    wanted = np.arange(0, num_frames, 2)
    return [wanted[i:i + CHUNK] for i in range(0, len(wanted), CHUNK)]


def run_one(reader_kind: str, pattern: str, path: str, thread_type: str) -> dict:
    """One measurement in this process: frames delivered, wall, CPU, peak RSS."""
    from vswin_cli import decode
    from vswin_cli.transforms import resize_short_side

    decode.PYAV_THREAD_TYPE = thread_type
    start, cpu = time.perf_counter(), os.times()
    delivered = 0
    if reader_kind == "plain":
        keep = None if pattern == "all" else 2
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = thread_type
            for i, frame in enumerate(container.decode(stream)):
                if keep is None:
                    frame.to_ndarray(format="rgb24")
                    delivered += 1
                elif i % keep == 0:
                    resize_short_side(frame.to_ndarray(format="rgb24")[None], 224)
                    delivered += 1
    else:
        with open_video(path, backend=reader_kind) as reader:
            assert reader.backend == reader_kind
            if pattern == "all":
                for i in range(0, reader.num_frames, ALL_CHUNK):
                    delivered += len(reader.read(np.arange(i, min(i + ALL_CHUNK, reader.num_frames))))
            else:
                for chunk in _tag_chunks(reader.num_frames):
                    delivered += len(reader.read(chunk, resize_short=224))
    wall = time.perf_counter() - start
    end = os.times()
    return {"frames": delivered, "wall_s": wall, "cpu_s": end.user - cpu.user + end.system - cpu.system,
            "fps": delivered / wall, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(reader_kind: str, pattern: str, path: Path, thread_type: str = "SLICE") -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", reader_kind, pattern, str(path), thread_type],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:100] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.splitlines()[-1])


def header() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"# {model}, {os.cpu_count()} cores, load {load} at start, {time.strftime('%Y-%m-%d %H:%M %Z')}; "
            f"PyAV {av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec), "
            f"decord {decord_version()}")


def speed(long_seconds: int, thread_types: list[str], patterns: list[str]) -> None:
    print(header())
    print("| video | pattern | reader | frames | frames/s | CPU s | CPU ms/frame | peak RSS MiB | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    readers = ["plain", "pyav"] + (["decord"] if decord_version() else [])
    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for width, height in [(640, 360), (1280, 720), (1920, 1080)]:
            videos.append((f"{height}p 10 s", make_video(Path(tmp) / f"v{height}.mp4", width, height), ["all", "tag"]))
        if long_seconds > 0:
            unit = make_video(Path(tmp) / "unit.mp4", 640, 360, seconds=10)
            videos.append((f"360p {long_seconds} s", repeat_video(unit, Path(tmp) / "long.mp4", long_seconds), ["tag"]))
        for name, path, video_patterns in videos:
            for pattern in [p for p in video_patterns if p in patterns]:
                for reader in readers:
                    for thread_type in (thread_types if reader != "decord" else ["-"]):
                        r = measure(reader, pattern, path, thread_type if thread_type != "-" else "SLICE")
                        load = f"{os.getloadavg()[0]:.1f}"
                        label = reader if reader == "decord" else f"{reader} ({thread_type.lower()} threads)"
                        if "error" in r:
                            print(f"| {name} | {pattern} | {label} | error: {r['error']} | | | | | {load} |")
                            continue
                        print(f"| {name} | {pattern} | {label} | {r['frames']} | {r['fps']:.0f} | {r['cpu_s']:.2f} | "
                              f"{1000 * r['cpu_s'] / r['frames']:.2f} | {r['peak_rss_mib']:.0f} | {load} |", flush=True)


LARGE_SCRIPT = r"""
import resource, sys, time
import numpy as np
from vswin_cli.decode import open_video
from vswin_cli.transforms import resize_short_side
path, how = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with open_video(path, backend="pyav") as reader:
    indices = np.arange(reader.num_frames)
    if how == "after":
        frames = resize_short_side(reader.read(indices), 224)
    else:
        frames = reader.read(indices, resize_short=224)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - start)
"""


def large(size: int, num_frames: int) -> None:
    """Peak RSS reading every frame of a size x size video resized to 224, the two ways."""
    print(header())
    print(f"| {size}x{size}, {num_frames} frames (MJPEG) | peak RSS MiB | wall s | load |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.avi"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mjpeg", rate=25)
            stream.width = stream.height = size
            stream.pix_fmt = "yuvj420p"
            frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
            for _ in range(num_frames):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        for how, label in [("after", "read(indices), then resize_short_side"),
                           ("as-decoded", "read(indices, resize_short=224)")]:
            done = subprocess.run([sys.executable, "-c", LARGE_SCRIPT, str(path), how], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode:
                print(f"| {label} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | |")
                continue
            peak, wall = map(float, done.stdout.split())
            print(f"| {label} | {peak:.0f} | {wall:.1f} | {os.getloadavg()[0]:.1f} |", flush=True)


def resize_speed(runs: int) -> None:
    """CPU ms per frame of the exact resize to short side 224: torch ops, numpy, OpenCV (when installed)."""
    import torch

    from vswin_cli import transforms

    torch.set_num_threads(1)
    print(header())
    print("| source | torch ops ms | numpy ms | OpenCV ms | load |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for height, width in [(360, 640), (720, 1280), (1080, 1920)]:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        out_h, out_w = transforms.resized_size(height, width, 224)
        out = np.empty((out_h, out_w, 3), np.uint8)
        paths = {"torch": lambda: transforms._resize_torch(torch.from_numpy(frame[None]), out_h, out_w),
                 "numpy": lambda: transforms._resize_frame_numpy(frame, out)}
        if transforms._check_cv2():
            paths["opencv"] = lambda: transforms._cv2_resize(frame, out)
        times = {name: [] for name in paths}
        for _ in range(runs):
            for name, call in paths.items():
                cpu = time.process_time()
                for _ in range(5):
                    call()
                times[name].append((time.process_time() - cpu) / 5 * 1000)
        cells = [f"{statistics.median(times[n]):.2f}" if n in times else "not installed"
                 for n in ("torch", "numpy", "opencv")]
        print(f"| {width}x{height} | {' | '.join(cells)} | {os.getloadavg()[0]:.1f} |", flush=True)


def views(runs: int) -> None:
    """The 12 Kinetics views of 10 s videos, decode + resize + crops + normalise (the old table)."""
    import torch

    from vswin_cli.transforms import make_views
    from vswin_cli.sampling import clip_indices

    print(header())
    print("| video | backend | decode+resize s | views s | CPU s | load |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in [(1280, 720), (640, 360)]:
            path = make_video(Path(tmp) / f"v{width}.mp4", width, height)
            for backend in ["pyav"] + (["decord"] if decord_version() else []):
                decode_s, views_s, cpu_s = [], [], []
                for _ in range(runs):
                    start, cpu = time.perf_counter(), time.process_time()
                    with open_video(path, backend=backend) as reader:
                        indices = clip_indices(reader.num_frames, "k400")
                        distinct, order = np.unique(indices.reshape(-1), return_inverse=True)
                        frames = reader.read(distinct, resize_short=224)
                    decoded = time.perf_counter()
                    out = make_views(torch.from_numpy(frames), 4, 32, 3, order=order.reshape(-1))
                    assert out.shape == (12, 3, 32, 224, 224)
                    views_s.append(time.perf_counter() - decoded)
                    decode_s.append(decoded - start)
                    cpu_s.append(time.process_time() - cpu)
                print(f"| {width}x{height} 10 s | {backend} | {statistics.median(decode_s):.3f} | "
                      f"{statistics.median(views_s):.3f} | {statistics.median(cpu_s):.2f} | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)


def shared_check(backend: str) -> None:
    """Per file of ../shared/videos: does it open, frame count, backend used, sthv2 views vs golden."""
    import torch

    from vswin_cli.sampling import clip_indices
    from vswin_cli.video import views_from_reader

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
                out = views_from_reader(reader, indices, "sthv2")
                result, frames, used = "ok", reader.num_frames, reader.backend
        except VideoDecodeError as err:
            result, frames, used, out = f"error: {err.reason[:50]}", "", "", None
        exact = maxdiff = ""
        if out is not None and official["status"] == "ok":
            record = json.loads((shared / "fixtures" / "pipeline" / entry["id"] / "sthv2.json").read_text())
            coords = torch.tensor(record["sample_coords_cthw"])
            values = out[:, coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]].numpy()
            diff = np.abs(values - np.asarray(record["sample_values"], np.float32))
            exact, maxdiff = f"{np.mean(diff == 0):.3f}", f"{diff.max():.3f}"
            if frames != record["total_frames"]:
                result = f"count {frames} != {record['total_frames']}"
        print(f"| {name[:32]} | {official['status']} | {result} | {frames} | {used} | {exact} | {maxdiff} | "
              f"{time.perf_counter() - start:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-seconds", type=int, default=300, help="length of the long 360p file (0: none)")
    parser.add_argument("--thread-types", default="SLICE", help="PyAV thread types to compare, e.g. SLICE,AUTO")
    parser.add_argument("--patterns", default="all,tag", help="access patterns to run (all, tag); "
                        "BENCH_ALL_CHUNK sets the frames per read of `all` (default 256)")
    parser.add_argument("--large", type=int, nargs="?", const=4096, help="peak RSS for SIZE x SIZE frames")
    parser.add_argument("--large-frames", type=int, default=16)
    parser.add_argument("--views", action="store_true", help="the 12 Kinetics views of 10 s videos")
    parser.add_argument("--resize", action="store_true", help="exact resize speed: torch ops, numpy, OpenCV")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row for --views (median)")
    parser.add_argument("--shared", action="store_true", help="check every file of ../shared/videos instead")
    parser.add_argument("--backend", default="decord", help="backend for --shared (decord, pyav, auto)")
    parser.add_argument("--one", nargs=4, metavar=("READER", "PATTERN", "PATH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
    elif args.shared:
        shared_check(args.backend)
    elif args.large:
        large(args.large, args.large_frames)
    elif args.views:
        views(args.runs)
    elif args.resize:
        resize_speed(max(args.runs, 7))
    else:
        speed(args.long_seconds, args.thread_types.split(","), args.patterns.split(","))


if __name__ == "__main__":
    main()
