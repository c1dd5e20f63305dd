"""How long `vswin report` takes to build, and the page to open, for a run of 1,000 videos x 30 segments.

    python bench/bench_report.py                        # 1,000 x 30, results only (no video files)
    python bench/bench_report.py --thumbnails           # the same with a player and 30 keyframes per video
    python bench/bench_report.py --videos 5000 --runs 3

Results are written by hand through `vswin_cli.writers` (Kinetics-400 label names, 5 tags per segment,
one error record per 50 videos), so no model runs. With --thumbnails every video key is a symbolic link
to one generated 30 s, 320x180 H.264 file, so the report decodes 30 keyframes per video for real.

Reports: build time and peak traced Python memory (median of --runs builds), HTML size, and the page's
load time in headless Debian chromium (Playwright), from navigation start: to the first page shown (the
inline call after the first page's articles: from then on those videos play, seek and show their tooltips),
to the whole file parsed (DOMContentLoaded: the label table, filters and pager cover every video), and to
the `load` event; median of --runs fresh pages. Results go in docs/benchmarks.md (section report).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vswin_cli.aggregate import LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary  # noqa: E402
from vswin_cli.report import write_report  # noqa: E402
from vswin_cli.writers import get_writer  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def labels() -> list[str]:
    path = ROOT.parent / "shared" / "labels" / "label_map_k400.txt"
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [f"class {i}" for i in range(400)]


def write_results(path: Path, num_videos: int, num_segments: int, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as stream:
        writer = get_writer("jsonl", stream)
        for v in range(num_videos):
            key = f"videos/{v // 100:02d}/clip_{v:05d}.mp4"
            if v % 50 == 49:
                writer.write_video(VideoResult(key, error=VideoError(key, "VideoDecodeError", f"{key}: damaged")))
                continue
            segments = []
            for s in range(num_segments):
                idx = rng.choice(len(names), 5, replace=False)
                scores = np.sort(rng.dirichlet(np.ones(8)))[::-1][:5]
                top = tuple(LabelScore(names[i], int(i), round(float(p), 6)) for i, p in zip(idx, scores))
                segments.append(SegmentResult(key, s, round(s * 1.0, 3), round(s + 1.0, 3), 30 * s, 30 * s + 30,
                                              top, 1, "swin-t-k400"))
            summary = VideoSummary(key, num_segments, float(num_segments), 30 * num_segments, 30.0,
                                   segments[0].top, 1, "swin-t-k400")
            writer.write_video(VideoResult(key, tuple(segments), summary))
        writer.close()


def make_video_files(root: Path, num_videos: int, seconds: int) -> None:
    import av

    source = root / "source.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        yy, xx = np.mgrid[0:180, 0:640]
        base = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        for i in range(30 * seconds):
            frame = base[:, (i * 4) % 320:(i * 4) % 320 + 320]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    for v in range(num_videos):
        link = root / f"videos/{v // 100:02d}/clip_{v:05d}.mp4"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source)


def page_load(html: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    first, ready, load = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.as_uri(), wait_until="load")
            page.wait_for_function("window.vswinReport && window.vswinReport.ready")
            ready.append(page.evaluate("window.vswinReport.readyAt") / 1000)
            first.append(page.evaluate("window.vswinReport.firstPageAt") / 1000)
            load.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
            page.close()
        browser.close()
    return first, ready, load


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--thumbnails", action="store_true")
    parser.add_argument("--keep", type=Path, help="folder to keep the files in (default: a temporary one)")
    args = parser.parse_args()
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; CPU {cpu_model()} x {os.cpu_count()};"
          f" uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = root / "tags.jsonl"
        write_results(results, args.videos, args.segments, labels())
        if args.thumbnails:
            make_video_files(root, args.videos, args.segments)
        build = []
        runs = 1 if args.thumbnails else args.runs
        for _ in range(runs):
            start = time.perf_counter()
            summary = write_report(results, root / "report.html", video_root=root, thumbnails=args.thumbnails)
            build.append(time.perf_counter() - start)
        peak = float("nan")
        if not args.thumbnails:  # with thumbnails a traced build takes minutes; memory is per video anyway
            tracemalloc.start()
            write_report(results, root / "traced.html", video_root=root, thumbnails=args.thumbnails)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        size = (root / "report.html").stat().st_size
        print(f"{summary.num_videos} videos ({summary.num_errors} errors), {summary.num_segments} segments, "
              f"thumbnails {'on' if args.thumbnails else 'off'}: results {results.stat().st_size / 1e6:.1f} MB, "
              f"HTML {size / 1e6:.1f} MB")
        print(f"build: median {statistics.median(build):.2f} s of {runs}; peak traced Python memory {peak / 1e6:.1f} MB")
        first, ready, load = page_load(root / "report.html", args.runs)
        for name, times in (("first page shown (plays, seeks, hovers)", first),
                            ("whole file parsed (filters, pager and label table final)", ready),
                            ("load event", load)):
            print(f"{name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s ({args.runs} fresh pages)")


if __name__ == "__main__":
    main()
