"""Long videos end to end: time to the first record on stdout, wall time and peak memory of `vswin tag`.

Makes one 10-minute 360p H.264 video (moving blocks, 25 fps), joins copies of it into 30- and 120-minute
files by copying packets (no re-encoding), and runs the real command line on each with a tiny random
model (`--crop-size 32`), so the figures are those of the decode side and the bookkeeping, not of the
network. Memory is sampled every 0.2 s from /proc: the main process and the largest decode worker.

    python bench/bench_long.py --minutes 10 30 120 --backend auto --json long.json

Weights are random (no download); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import VideoSwin  # noqa: E402
from models.convert import to_mmaction  # noqa: E402

TINY = {"patch_size": [2, 4, 4], "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": [2, 3, 3],
        "num_classes": 5, "drop_path_rate": 0.0}


def make_chunk(path: Path, minutes: float, fps: int = 25, height: int = 360, width: int = 640) -> None:
    """A H.264 video of 16-pixel blocks panning sideways, a few recoloured every frame."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (height // 16, width // 8, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(minutes * 60 * fps)):
            blocks[rng.integers(0, blocks.shape[0]), rng.integers(0, blocks.shape[1])] = rng.integers(0, 256, 3)
            shift = i % (blocks.shape[1] // 2)
            frame = np.repeat(np.repeat(blocks[:, shift:shift + width // 16], 16, 0), 16, 1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())


def join(chunk: Path, path: Path, copies: int) -> None:
    """`copies` of `chunk` back to back, by copying packets with shifted timestamps."""
    with av.open(str(chunk)) as first:
        template = first.streams.video[0]
        with av.open(str(path), "w") as out:
            stream = out.add_stream_from_template(template)
            offset = 0
            for _ in range(copies):
                with av.open(str(chunk)) as src:
                    last = 0
                    for packet in src.demux(src.streams.video[0]):
                        if packet.dts is None:
                            continue
                        last = max(last, packet.pts + packet.duration)
                        packet.pts += offset
                        packet.dts += offset
                        packet.stream = stream
                        out.mux(packet)
                    offset += last


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run_tag(video: Path, model_args: list[str], backend: str, workers: int) -> dict:
    command = [sys.executable, "-m", "vswin_cli", "tag", str(video), *model_args, "--views", "fast", "-q",
               "--backend", backend, "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = None
    peak_main = peak_worker = 0
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = b""
    while True:
        chunk = proc.stdout.read()  # None: nothing written yet
        if chunk:
            buffer += chunk
            if first is None and b"\n" in buffer:
                first = time.perf_counter() - start
        peak_main = max(peak_main, rss_kib(proc.pid))
        peak_worker = max([peak_worker, *(rss_kib(c) for c in children(proc.pid))])
        if proc.poll() is not None:
            buffer += proc.stdout.read() or b""
            break
        time.sleep(0.2)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in buffer.decode().splitlines()]
    cpu = os.times()
    return {"first_record_s": round(first or wall, 2), "wall_s": round(wall, 1), "returncode": proc.returncode,
            "segments": sum(r["record"] == "segment" for r in records),
            "peak_rss_main_mib": round(peak_main / 1024), "peak_rss_worker_mib": round(peak_worker / 1024),
            "children_cpu_s": round(cpu.children_user + cpu.children_system, 1),
            "stderr_tail": proc.stderr.read().decode()[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 30, 120])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "vswin-bench-long")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    (args.cache / "tiny.json").write_text(json.dumps(TINY))
    torch.save({"state_dict": to_mmaction(VideoSwin(**TINY).state_dict())}, args.cache / "tiny.pth")
    (args.cache / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    model_args = ["--weights", str(args.cache / "tiny.pth"), "--arch", str(args.cache / "tiny.json"),
                  "--labels", str(args.cache / "labels.txt"), "--crop-size", "32"]
    chunk = args.cache / "chunk_10min.mp4"
    if not chunk.exists():
        make_chunk(chunk, 10)
    rows = []
    for minutes in args.minutes:
        video = args.cache / f"long_{minutes:g}min.mp4"
        if not video.exists():
            join(chunk, video, max(1, round(minutes / 10)))
        row = {"minutes": minutes, "backend": args.backend, "workers": args.workers,
               **run_tag(video, model_args, args.backend, args.workers)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| video | backend | first record | wall | segments | peak RSS main | peak RSS largest worker |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:g} min 360p | {r['backend']} | {r['first_record_s']} s | {r['wall_s']} s | "
              f"{r['segments']} | {r['peak_rss_main_mib']} MiB | {r['peak_rss_worker_mib']} MiB |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
