"""Live tagging: per-segment latency, sustained real-time factor, and memory over a long stream.

Each measurement runs `vswin tag pipe:0` (the CLI, as a user runs it) on an H.264 MPEG-TS stream that
tests/live_feeder.py sends into its standard input:

- real-time factor: the stream sent as fast as the run reads it; stream seconds per wall second between
  the first and the last segment's record (1.0 or more keeps up with a live source; start-up left out,
  and also given with it), with the run's CPU seconds (all threads) beside the wall time.
- latency: the stream served in real time on a loopback TCP port (its clock starts when the run
  connects, after loading the model); for each segment, the time its record reached us minus the time
  the feeder sent the segment's last frame (median and p95), and the segments dropped. With `--policy
  skip` (default) a model slower than real time stays live by dropping segments, with a lag of at most
  about (`--queue` + 1) forward passes; with `keep` the latency grows with the stream.
- memory: a long stream (`--hours`, a short file looped with increasing timestamps, sent as fast as it is
  read); the run's resident memory sampled every second, peak and the growth from a quarter of the run on.

    python bench/bench_live.py --arch tiny --sizes 64x48 --seconds 20 --hours 0.05     # a quick check
    python bench/bench_live.py --arch swin-t --views fast --sizes 360x640,720x1280 --seconds 60 --hours 1 \\
        --json live.json

Weights are random (saved in the official layout for `--weights`); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FEEDER = REPO / "tests" / "live_feeder.py"
FPS = 25
TINY = dict(patch_size=[2, 4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=[2, 3, 3],
            num_classes=400, drop_path_rate=0.0)


def make_stream(path: Path, seconds: float, height: int, width: int) -> Path:
    """An H.264 MPEG-TS file (libx264 veryfast, CRF 23, 25 fps) of panning 16-pixel blocks, 4% recoloured
    per frame (camera-like bitrate), its first frame at 0 s. Cached by name."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (height // 16 + 1, width // 16 + 2, 3), dtype=np.uint8)
    part = path.with_suffix(".part")
    with av.open(str(part), "w", format="mpegts", options={"mpegts_copyts": "1"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "bframes": "0"}
        stream.gop_size = 2 * FPS
        for i in range(int(seconds * FPS)):
            change = rng.random(blocks.shape[:2]) < 0.04
            blocks[change] = rng.integers(0, 256, (int(change.sum()), 3), dtype=np.uint8)
            image = np.repeat(np.repeat(blocks, 16, 0), 16, 1)
            shift = (i * 2) % 16
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, shift:shift + width]), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    part.rename(path)
    return path


def model_options(folder: Path, arch: str) -> list[str]:
    """Save a seeded random model of `arch` ("tiny" or a zoo architecture such as "swin-t") and return the
    `vswin tag` options that load it."""
    import torch

    from models import VideoSwin, get_config
    from models.convert import to_mmaction

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if arch == "tiny":
        (folder / "arch.json").write_text(json.dumps(TINY))
        model, arch_option, extra = VideoSwin(**TINY), str(folder / "arch.json"), ["--crop-size", "32"]
    else:
        model, arch_option, extra = VideoSwin.from_config(get_config(arch, num_classes=400)), arch, []
    torch.save({"state_dict": to_mmaction(model.state_dict())}, folder / "model.pth")
    (folder / "labels.txt").write_text("".join(f"class{i}\n" for i in range(400)))
    return ["--weights", str(folder / "model.pth"), "--arch", arch_option, "--labels", str(folder / "labels.txt"),
            *extra]


def run_stream(stream: Path, tag_args: list[str], speed: float, loop: int = 1, sample_memory: bool = False,
               tcp: bool = False) -> dict:
    """Feed `stream` into `vswin tag pipe:0` (or, with `tcp`, serve it on a loopback port the run connects to:
    the feeder's clock then starts when the run is ready to read); the records with their arrival times,
    the feeder's log, wall and CPU seconds, and (with `sample_memory`) the run's resident memory once a second."""
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if tcp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        target, source, stdin = f"tcp://127.0.0.1:{port}?listen=1", f"tcp://127.0.0.1:{port}", subprocess.DEVNULL
    else:
        target, source, stdin = "pipe:1", "pipe:0", subprocess.PIPE
    feeder = subprocess.Popen([sys.executable, str(FEEDER), str(stream), target, "--speed", str(speed),
                               "--loop", str(loop), "--log", str(log)], stdout=stdin if not tcp else None,
                              start_new_session=True)
    if tcp:
        time.sleep(2.0)  # the feeder listens long before the run has loaded its model
    start = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "vswin_cli", "tag", source, "-q", *tag_args],
                           stdin=feeder.stdout if not tcp else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    if not tcp:
        feeder.stdout.close()
    rss: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            try:
                kb = next(int(line.split()[1]) for line in Path(f"/proc/{run.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                return
            rss.append((time.monotonic() - start, kb * 1024))

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    records = [(time.time(), json.loads(line)) for line in run.stdout]
    err = run.stderr.read()
    _, status, usage = os.wait4(run.pid, 0)
    wall = time.monotonic() - start
    done.set()
    feeder.wait(timeout=60)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vswin tag failed:\n{err}")
    sent = {}
    for line in log.read_text().splitlines():
        t, when = map(float, line.split())
        sent[round(t * FPS)] = when
    log.unlink()
    return dict(records=records, sent=sent, wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, rss=rss,
                skipped=err.count("skipped the segment"))


def measure_size(stream: Path, tag_args: list[str], seconds: float, policy: str, queue: int) -> dict:
    fast = run_stream(stream, tag_args, speed=1000.0)
    # Sustained: stream time per wall second between the first and the last segment's record (start-up,
    # model loading and the runtime's choice left out).
    scored = [(arrived, r["end"]) for arrived, r in fast["records"] if r["record"] == "segment"]
    sustained = (scored[-1][1] - scored[0][1]) / (scored[-1][0] - scored[0][0]) if len(scored) > 2 else None
    live = run_stream(stream, [*tag_args, "--live-policy", policy, "--live-queue", str(queue)], speed=1.0, tcp=True)
    segments = [(arrived, r) for arrived, r in live["records"] if r["record"] == "segment"]
    start = min(live["sent"].values())
    # a kept segment's stream time is its own (skipping keeps the times): its last frame's send time
    latencies = sorted(arrived - (start + r["end"] - 1 / FPS) for arrived, r in segments)
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else None
    return dict(stream_s=seconds, realtime_factor=round(sustained, 3) if sustained else None,
                realtime_factor_with_startup=round(seconds / fast["wall_s"], 3),
                fast_wall_s=round(fast["wall_s"], 2), fast_cpu_s=round(fast["cpu_s"], 2),
                latency_median_s=round(statistics.median(latencies), 3) if latencies else None,
                latency_p95_s=round(p95, 3) if p95 is not None else None,
                segments=len(segments), dropped=live["skipped"], policy=policy, queue=queue)


def measure_memory(stream: Path, tag_args: list[str], file_seconds: float, hours: float) -> dict:
    loop = max(1, int(round(hours * 3600 / file_seconds)))
    result = run_stream(stream, tag_args, speed=1000.0, loop=loop, sample_memory=True)
    rss = result["rss"]
    if len(rss) < 10:
        return dict(stream_s=loop * file_seconds, wall_s=round(result["wall_s"], 1), note="too short to sample")
    after = [b for t, b in rss if t >= 0.25 * result["wall_s"]]  # after start-up and the allocator's warm-up
    return dict(stream_s=loop * file_seconds, wall_s=round(result["wall_s"], 1), cpu_s=round(result["cpu_s"], 1),
                peak_rss_mb=round(max(b for _, b in rss) / 2**20, 1),
                rss_at_25pct_mb=round(after[0] / 2**20, 1), rss_at_end_mb=round(after[-1] / 2**20, 1),
                growth_from_25pct=round(max(after) / after[0] - 1, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="swin-t", help="tiny, or a zoo architecture (swin-t, swin-s, swin-b)")
    parser.add_argument("--views", default="fast")
    parser.add_argument("--sizes", default="360x640,720x1280", help="HxW of the streams, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each latency/throughput stream")
    parser.add_argument("--policy", default="skip", choices=("keep", "skip"))
    parser.add_argument("--queue", type=int, default=1, help="--live-queue of the latency run (skip: the lag's bound)")
    parser.add_argument("--hours", type=float, default=1.0, help="length of the memory stream (0: skip it)")
    parser.add_argument("--memory-size", default="360x640", help="HxW of the memory stream")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vswin-bench-live")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    tag_args = [*model_options(args.cache / f"model-{args.arch}", args.arch), "--views", args.views]
    results = dict(arch=args.arch, views=args.views, date=time.strftime("%Y-%m-%d"), cpus=os.cpu_count(),
                   load_before=os.getloadavg()[0], sizes={})
    warm_up = make_stream(args.cache / "stream-warm-up.ts", 3.0, 64, 64)
    run_stream(warm_up, tag_args, speed=1000.0)  # `--runtime auto` measures and caches its choice once
    for size in args.sizes.split(","):
        height, width = map(int, size.split("x"))
        stream = make_stream(args.cache / f"stream-{size}-{args.seconds:g}s.ts", args.seconds, height, width)
        results["sizes"][size] = row = measure_size(stream, tag_args, args.seconds, args.policy, args.queue)
        print(f"{size}: {json.dumps(row)}", flush=True)
    if args.hours > 0:
        height, width = map(int, args.memory_size.split("x"))
        stream = make_stream(args.cache / f"stream-{args.memory_size}-60s.ts", 60.0, height, width)
        results["memory"] = measure_memory(stream, tag_args, 60.0, args.hours)
        print(f"memory ({args.hours:g} h at {args.memory_size}): {json.dumps(results['memory'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
