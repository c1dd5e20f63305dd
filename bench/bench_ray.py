"""`--engine ray` next to `--engine local` on the same videos, measured side by side in one run.

Each repeat runs, one after the other: the local engine (decode worker processes + the model in this
process), the Ray engine with one model actor, and with two (each with half the cores' threads); the
medians are reported. Ray's start-up (a local instance on loopback, as `vswin tag --engine ray` starts
one) is timed once, apart. Beside wall time: CPU seconds of every process involved (this one, its decode
workers, and on Ray every process of the instance), and the peak resident memory of each kind of
process (VmHWM, sampled every 0.2 s).

    python bench/bench_ray.py --arch swin-t --videos 6 --seconds 8 --repeats 3 --json ray.json

Weights are random (no download); speed does not depend on them. On a shared machine, compare only
numbers from the same run; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tag import build_model, cpu_seconds, make_videos  # noqa: E402
from vswin_cli.api import Tagger, TagSettings  # noqa: E402
from vswin_cli.engines.ray import RayOptions, ray_session  # noqa: E402
from vswin_cli.inputs import find_videos  # noqa: E402
from vswin_cli.protocol import ClipSpec  # noqa: E402

CLOCK = os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> set[int]:
    """Every live process below `root` (Ray's gcs_server, raylet and workers are children of a local instance)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def process_cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each live process."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / CLOCK
        except (OSError, IndexError, ValueError):
            pass
    return out


def role(pid: int) -> str:
    """What a process is: the driver, a Ray system process, the model actor, a decode worker."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if pid == os.getpid():
        return "driver"
    if not cmd:
        return "gone"
    for name, key in (("model actor", "_ModelActor"), ("decode task", "_decode_row"), ("raylet", "raylet"),
                      ("gcs_server", "gcs_server"), ("ray idle worker", "ray::IDLE")):
        if key in cmd:
            return name
    if cmd.startswith("ray::"):
        return "ray worker (other)"
    if cmd == Path(f"/proc/{os.getpid()}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
        return "local decode worker"  # forked from this process
    return "ray agent" if "ray" in cmd else "other: " + cmd.split()[0].rsplit("/", 1)[-1]


class PeakMemory:
    """Samples the peak RSS (VmHWM) of this process and its descendants, by role, while running."""

    def __init__(self):
        self.peaks: dict[str, float] = {}
        self.roles: dict[int, str] = {}
        self.cpu: dict[int, float] = {}  # CPU seconds of each process when last seen (some end before the run does)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self):
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self):
        pids = descendants(os.getpid())
        self.cpu.update(process_cpu(pids))
        for pid in pids | {os.getpid()}:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)
            name = role(pid)
            if name == "ray idle worker" and pid in self.roles:  # a worker between tasks keeps its last role
                name = self.roles[pid]
            self.roles[pid] = name
            self.peaks[name] = max(self.peaks.get(name, 0.0), kb / 1024)


def timed_run(engine, videos) -> dict:
    """One pass: wall s, CPU s of all processes involved, video s tagged, segments, peak MB by role."""
    for pid in descendants(os.getpid()) | {os.getpid()}:  # peak RSS counts from here (Linux: "5" resets VmHWM)
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass
    before = process_cpu(descendants(os.getpid()))
    start, cpu_start = time.perf_counter(), cpu_seconds()
    segments, video_seconds = 0, 0.0
    with PeakMemory() as memory:
        for result in engine.run(videos):
            assert result.error is None, result.error
            segments += len(result.segments)
            video_seconds += result.summary.duration
    wall = time.perf_counter() - start
    # Ray's processes, as last seen (the local engine's decode workers, joined, are in `cpu_seconds`; an idle
    # Ray instance beside the local engine is not its cost)
    ray_cpu = sum(cpu - before.get(p, 0.0) for p, cpu in memory.cpu.items()
                  if memory.roles.get(p) != "local decode worker") if hasattr(engine, "ray") else 0.0
    return {"wall_s": wall, "cpu_s": cpu_seconds() - cpu_start + ray_cpu, "segments": segments,
            "video_s": video_seconds, "peak_mb": memory.peaks}


def driver_rate(engine, num_videos: int = 200, segments: int = 50, num_classes: int = 400) -> float:
    """Segments per second the driver alone assembles and writes (JSON Lines into memory): rows as the
    model actors send them, out of order by video, through `RayEngine._updates` and `Scoring.stream`."""
    import io
    import pickle

    import numpy as np

    from vswin_cli.engines.ray import SegmentScores
    from vswin_cli.inputs import VideoInput
    from vswin_cli.sampling import Segment, SegmentPlan
    from vswin_cli.segments import VideoDecoded
    from vswin_cli.writers import get_writer

    rows = []
    for pos in reversed(range(num_videos)):  # the worst order: every video waits for the first
        for i in range(segments):
            plan = SegmentPlan(Segment(i, i * 64, i * 64 + 64, i * 2.56, i * 2.56 + 2.56), np.zeros((1, 32), np.int64),
                               np.ones(1, np.float32))
            probs = torch.softmax(torch.randn(num_classes), 0)
            rows.append({"pos": pos, "item": pickle.dumps(SegmentScores(pos, plan, probs))})
        rows.append({"pos": pos, "item": pickle.dumps(VideoDecoded(pos, segments, segments * 64, 25.0, segments * 2.56))})
    videos = [VideoInput(Path(f"v{i}.mp4"), f"v{i}.mp4") for i in range(num_videos)]
    engine._rows = lambda videos, first: iter(rows)
    writer = get_writer("jsonl", io.StringIO())
    start = time.perf_counter()
    for item in engine.stream(videos):
        if hasattr(item, "result"):
            writer.write_segment(item.result)
        else:
            writer.write_video(item)
    return num_videos * segments / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="swin-t", help="tiny (embed 8, depths 1,1) or swin-t/swin-s/swin-b")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of the generated videos")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="local engine: decode processes")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--runtime", default="torch", help="CPU runtime of the network (both engines)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    height, width = (int(v) for v in args.size.split("x"))
    folder = Path(tempfile.gettempdir()) / f"vswin-bench-{args.videos}x{args.seconds:g}s-{args.fps}fps-{height}x{width}"
    make_videos(folder, args.videos, args.seconds, args.fps, height, width)
    videos = find_videos([str(folder)])
    cores = os.cpu_count() or 1
    door = Tagger(build_model(args.arch), [str(i) for i in range(400)], name="bench", device=torch.device("cpu"),
                  precision=args.precision, runtime=args.runtime,
                  runtime_cache=str(Path(tempfile.gettempdir()) / "vswin-bench-exported"))
    settings = TagSettings(workers=args.workers)
    spec = ClipSpec(num_clips=1, num_crops=1)
    load_start = os.getloadavg()

    start = time.perf_counter()
    with ray_session(RayOptions()):
        startup_s = time.perf_counter() - start
        engines = {"local": door.engine(settings, spec=spec)}
        for actors in (1, 2):
            engine = door.engine(settings, spec=spec, kind="ray")
            engine.ray = RayOptions(model_actors=actors, model_threads=max(1, cores // actors))
            engines[f"ray, {actors} model actor{'s' if actors > 1 else ''}"] = engine
        # Decode tasks 1 -> 2 at a time beside one CPU model actor (which reserves 1 of the CPUs): each
        # task reserving half a CPU lets two run at once on the CPU the actor leaves.
        engine = door.engine(settings, spec=spec, kind="ray")
        engine.ray = RayOptions(model_actors=1, model_threads=cores, decode_cpus=0.5)
        engines["ray, 1 model actor, 2 decode tasks"] = engine
        for engine in engines.values():  # warm-up: worker processes, allocator, the actors' first start
            timed_run(engine, videos[:1])
        runs: dict[str, list[dict]] = {name: [] for name in engines}
        for _ in range(args.repeats):
            for name, engine in engines.items():
                runs[name].append(timed_run(engine, videos))
                print(f"  {name}: {runs[name][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)

        assembly = driver_rate(door.engine(settings, spec=spec, kind="ray"))
    load_end = os.getloadavg()
    print(f"vswin --engine ray vs local: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end; {cores} cores; torch {torch.__version__}")
    print(f"arch={args.arch} fast views ({spec.num_views}/segment), {len(videos)} videos x {args.seconds:g} s "
          f"{height}x{width} @ {args.fps} fps, precision={args.precision} runtime={args.runtime} "
          f"local workers={args.workers}; median of {args.repeats}")
    print(f"Ray start-up (local instance on loopback, ray.init): {startup_s:.1f} s; the driver alone assembles and "
          f"writes {assembly:.0f} segments/s (400 classes, JSON Lines)")
    base = statistics.median(r["wall_s"] for r in runs["local"])
    print("| engine | wall s | CPU s | video s/s | vs local | peak RSS MB by process |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        cpu = statistics.median(r["cpu_s"] for r in results)
        rate = results[0]["video_s"] / wall
        peaks = {}
        for r in results:
            for who, mb in r["peak_mb"].items():
                peaks[who] = max(peaks.get(who, 0.0), mb)
        mine = ("driver", "local decode worker") if name == "local" else None  # the Ray instance idles meanwhile
        peaks = {who: mb for who, mb in peaks.items()
                 if (who in mine if mine else who not in ("local decode worker", "gone"))}
        shown = ", ".join(f"{who} {mb:.0f}" for who, mb in sorted(peaks.items(), key=lambda kv: -kv[1]))
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {rate:.2f} | {base / wall:.2f} | {shown} |")
        summary[name] = {"wall_s": [r["wall_s"] for r in results], "cpu_s": [r["cpu_s"] for r in results],
                         "video_s": results[0]["video_s"], "segments": results[0]["segments"], "peak_mb": peaks}
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "startup_s": startup_s, "driver_segments_per_s": assembly, "load_average": [load_start, load_end], "runs": summary,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
