"""The GPU device check: CUDA tests, model benchmark, `vswin tag` benchmark, each step time-boxed.

Run through bench/device_check.sh (which installs the carried wheels first). Every result lands in
`--out` (default `$OUT`): `summary.md` (Markdown tables), `results.json` (everything, raw), one
`<step>.log` per step and the benchmarks' own JSON files. The summary is rewritten after every step,
so a machine lost half-way still leaves what was measured.

    python bench/device_check.py --out $OUT            # on a GPU machine, under 8 minutes
    python bench/device_check.py --dry --out /tmp/dc   # the same steps on the CPU, tiny, in seconds

Steps, in order (each under `timeout`, and all of them under one overall budget, default 450 s):
  tests           pytest -m cuda tests/test_cuda.py (golden fixtures fp32/bf16, flex, device resize, vswin tag)
  model-goal      bench_model.py: swin-b, bf16, batch 16: ours (SDPA) vs torchvision's eager swin3d
  videos          12 generated H.264 videos of 6 s at 360p and at 720p (cached for the tag steps)
  tag-*           bench_tag.py: swin-b, --views paper and fast, 360p and 720p, all cores as decode workers
  model-flex      bench_model.py: swin-b, bf16, batch 16: ours vs ours with FlexAttention (compiled kernel)
  model-compiled  bench_model.py: the same, ours vs ours through torch.compile
  model           bench_model.py: swin-b/t/s/b-16, batch 16 and 1, bf16 and fp32, ours vs torchvision
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def full_steps(out: Path, videos: Path) -> list[dict]:
    """The GPU run, most wanted first: the overall budget skips what no longer fits at the end.

    Each step: name, argv, timeout (seconds), the JSON file it writes (or None). Typical H100 times
    are well under the limits; the limits only stop a hung or compiling-forever step.
    """
    def model(name, timeout, *options):
        return {"name": name, "timeout": timeout, "json": f"{name}.json",
                "argv": [PY, "bench/bench_model.py", "--device", "cuda", *options, "--json", str(out / f"{name}.json")]}

    steps = [
        {"name": "tests", "timeout": 110, "json": None,
         "argv": [PY, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rA", "-p", "no:cacheprovider",
                  f"--junitxml={out / 'tests.xml'}"]},
        # The goal configuration (swin-b, bf16, batch 16), eager: seconds.
        model("model-goal", 45, "--archs", "swin-b", "--dtypes", "bf16", "--batch-sizes", "16",
              "--impls", "ours,torchvision", "--repeats", "10", "--warmup", "3"),
    ]
    sizes = {"360p": "360x640", "720p": "720x1280"}
    common = ["--videos", "12", "--seconds", "6", "--fps", "30"]
    folder = {name: str(videos / f"{name}-12x6s-30fps") for name in sizes}  # the cache key: the parameters
    steps.append({"name": "videos", "timeout": 45, "json": None, "argv": [
        "bash", "-c", " && ".join(
            shlex.join([PY, "bench/bench_tag.py", "--make-only", "--size", size, "--folder", folder[name], *common])
            for name, size in sizes.items())]})
    for name, size in sizes.items():
        for views in ("paper", "fast"):
            steps.append({"name": f"tag-{name}-{views}", "timeout": 40, "json": f"tag_{name}_{views}.json", "argv": [
                PY, "bench/bench_tag.py", "--arch", "swin-b", "--views", views, "--size", size, "--device", "cuda",
                "--workers", "all", "--batch-views", "16", "--repeats", "1", "--folder", folder[name], *common,
                "--json", str(out / f"tag_{name}_{views}.json")]})
    # Compiling steps after the eager ones, each alone (with ours again for a same-run ratio): flex
    # compiles one kernel per stage and shift (8 for swin-b), torch.compile the whole network; a slow
    # compile then costs only its own figures.
    steps += [
        model("model-flex", 120, "--archs", "swin-b", "--dtypes", "bf16", "--batch-sizes", "16",
              "--impls", "ours,flex", "--repeats", "10", "--warmup", "2"),
        model("model-compiled", 90, "--archs", "swin-b", "--dtypes", "bf16", "--batch-sizes", "16",
              "--impls", "ours,compiled", "--repeats", "10", "--warmup", "2"),
    ]
    # The whole grid last: it takes what time is left (its JSON keeps every finished configuration).
    steps.append(model("model", 120, "--archs", "swin-b,swin-t,swin-s,swin-b-16", "--dtypes", "bf16,fp32",
                       "--batch-sizes", "16,1", "--impls", "ours,torchvision", "--repeats", "3", "--warmup", "1"))
    return steps


def dry_steps(out: Path, videos: Path) -> list[dict]:
    """The same steps on the CPU with a tiny model and tiny videos (CI keeps the script working)."""
    return [
        {"name": "tests", "timeout": 60, "json": None,
         "argv": [PY, "-m", "pytest", "tests/test_cuda.py", "-q", "-rA", "-p", "no:cacheprovider",
                  "-k", "test_device_resize_and_crops_are_bit_equal_to_the_cpu and cpu and 360",
                  f"--junitxml={out / 'tests.xml'}"]},
        {"name": "model", "timeout": 60, "json": "model.json",
         "argv": [PY, "bench/bench_model.py", "--device", "cpu", "--archs", "tiny", "--frames", "4", "--size", "32",
                  "--dtypes", "fp32", "--batch-sizes", "1", "--impls", "ours,torchvision,flex", "--repeats", "1",
                  "--warmup", "0", "--json", str(out / "model.json")]},
        {"name": "videos", "timeout": 60, "json": None, "argv": [
            PY, "bench/bench_tag.py", "--make-only", "--size", "48x64", "--videos", "2", "--seconds", "1",
            "--fps", "15", "--folder", str(videos / "tiny")]},
        *({"name": f"tag-tiny-{views}", "timeout": 60, "json": f"tag_tiny_{views}.json", "argv": [
            PY, "bench/bench_tag.py", "--arch", "tiny", "--views", views, "--size", "48x64", "--videos", "2",
            "--seconds", "1", "--fps", "15", "--device", "cpu", "--workers", "1", "--batch-views", "4", "--crop-size", "32",
            "--repeats", "1", "--folder", str(videos / "tiny"), "--json", str(out / f"tag_tiny_{views}.json")]}
          for views in ("fast", "paper")),
    ]


def environment() -> dict:
    """Python, torch, CUDA device, CPU count, decoders: what the figures were measured on."""
    code = (
        "import json, torch, importlib.util as u; d = torch.cuda.is_available(); print(json.dumps({"
        "'torch': torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': d, "
        "'device_name': torch.cuda.get_device_name() if d else None, "
        "'device_memory_gib': round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if d else None, "
        "'flex_attention': u.find_spec('torch.nn.attention.flex_attention') is not None, "
        "'torchvision': u.find_spec('torchvision') is not None, 'av': u.find_spec('av') is not None, "
        "'decord': u.find_spec('decord') is not None}))"
    )
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version(),
           "cpus": os.cpu_count(), "machine": platform.machine()}
    try:  # driver, clocks and power limit: what the figures depend on beyond the device name
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip() if smi.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    try:
        done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        env.update(json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]})
    except (subprocess.TimeoutExpired, json.JSONDecodeError) as err:
        env["error"] = repr(err)
    return env


def run_step(step: dict, out: Path, seconds_left: float) -> dict:
    """Run one step under `timeout` (its own limit or what is left of the budget), log to out/<name>.log."""
    limit = max(1, int(min(step["timeout"], seconds_left)))
    result = {"name": step["name"], "command": shlex.join(step["argv"]), "limit_s": limit, "log": f"{step['name']}.log"}
    if seconds_left < 5:
        return {**result, "status": "skipped (out of time)", "rc": None, "seconds": 0.0}
    start = time.perf_counter()
    with open(out / result["log"], "w") as log:
        log.write(f"$ {result['command']}\n")
        log.flush()
        # `timeout -k`: SIGTERM at the limit, SIGKILL 5 s later (a hung CUDA call ignores SIGTERM).
        rc = subprocess.call(["timeout", "-k", "5", str(limit), *step["argv"]], stdout=log, stderr=subprocess.STDOUT,
                             cwd=REPO)
    result.update(rc=rc, seconds=round(time.perf_counter() - start, 1))
    result["status"] = "timed out" if rc in (124, 137) else ("ok" if rc == 0 else f"failed (rc {rc})")
    if step["json"] and (out / step["json"]).is_file():  # also after a time-out: what finished
        result["json"] = step["json"]
        result["data"] = json.loads((out / step["json"]).read_text())
    return result


def parse_junit(path: Path) -> list[dict]:
    """[{test, outcome, message}] from pytest's JUnit XML."""
    if not path.is_file():
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "").splitlines()[0][:160] if node.get("message") else ""
        tests.append({"test": case.get("name"), "outcome": outcome, "message": message})
    return tests


def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def summary_markdown(report: dict) -> str:
    """The Markdown summary: environment, steps, tests, model table, tag table."""
    env = report["environment"]
    lines = [f"# vswin device check{' (dry run, CPU)' if report['dry'] else ''}", "",
             f"{env.get('date')}; {env.get('device_name') or 'no CUDA device'}"
             f" ({env.get('device_memory_gib') or '-'} GiB), torch {env.get('torch')} (CUDA {env.get('cuda')}),"
             f" Python {env.get('python')}, {env.get('cpus')} CPUs; flex_attention {env.get('flex_attention')},"
             f" torchvision {env.get('torchvision')}, av {env.get('av')}, decord {env.get('decord')}"
             + (f"; nvidia-smi: {env['nvidia_smi']}" if env.get("nvidia_smi") else ""), "",
             "| step | status | seconds | limit |", "|---|---|---|---|"]
    for step in report["steps"]:
        lines.append(f"| {step['name']} | {step['status']} | {step.get('seconds')} | {step['limit_s']} |")
    tests = report.get("tests") or []
    if tests:
        counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
        lines += ["", "## Tests", "", ", ".join(f"{v} {k}" for k, v in counts.items() if v), "",
                  "| test | outcome | message |", "|---|---|---|"]
        lines += [f"| {t['test']} | {t['outcome']} | {t['message'].replace('|', '/')} |" for t in tests]
    rows = [(s["name"], r) for s in report["steps"] if s["name"].startswith("model") and s.get("data")
            for r in s["data"]["rows"]]
    if rows:
        peak = next((s["data"].get("bf16_matmul_peak_tflops") for s in report["steps"]
                     if s["name"].startswith("model") and "data" in s), None)
        lines += ["", "## Model (views/s; a view is 3x32x224x224 unless the dry run)", "",
                  f"Measured bf16 matmul peak: {fmt(peak, '.0f')} TFLOP/s.", "",
                  "| step | arch | dtype | batch | impl | views/s | vs torchvision | TFLOP/s | % of bf16 peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows:
            tv = next((x["views_per_s"] for n, x in rows if n == name and x["impl"] == "torchvision"
                       and (x["arch"], x["dtype"], x["batch"]) == (r["arch"], r["dtype"], r["batch"])), None)
            share = r.get("share_of_peak")
            lines.append(f"| {name} | {r['arch']} | {r['dtype']} | {r['batch']} | {r['impl']} | {fmt(r['views_per_s'])}"
                         f" | {fmt(r['views_per_s'] / tv, '.2f') + 'x' if tv else '-'} | {fmt(r.get('tflops'), '.1f')}"
                         f" | {fmt(100 * share if share is not None else None, '.0f')} |")
    errors = [(s["name"], e) for s in report["steps"] if s.get("data") for e in s["data"].get("errors", [])]
    if errors:
        lines += ["", "Implementations that failed (the others in the same step were still measured):", ""]
        lines += [f"- {name}: {e['impl']} on {e['arch']} {e['dtype']} batch {e['batch']}: `{e['error']}`"
                  for name, e in errors]
    tags = [s for s in report["steps"] if s["name"].startswith("tag-") and "data" in s]
    if tags:
        lines += ["", "## vswin tag end to end vs model only", "",
                  "| step | size | views/segment | Mbit/s | e2e video s/s | e2e views/s | model-only views/s | ratio |"
                  " decode views/s | decode clip frames/s | transfer views/s | workers |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in tags:
            d = s["data"]
            lines.append(
                f"| {s['name']} | {d['size'][0]}x{d['size'][1]} | {d['views_per_segment']} | {fmt(d['bitrate_mbps'], '.2f')}"
                f" | {fmt(d['end_to_end']['video_s_per_s'])} | {fmt(d['end_to_end']['views_per_s'])}"
                f" | {fmt(d['model_only']['views_per_s'])} | {fmt(d['ratio_end_to_end_over_model_only'], '.2f')}"
                f" | {fmt(d['decode_only']['views_per_s'])} | {fmt(d['decode_only']['clip_frames_per_s'], '.0f')}"
                f" | {fmt(d['transfer_only']['views_per_s'])} | {d['workers']} |")
    lines += ["", "Logs: one `<step>.log` per step; raw figures in `results.json`."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "summary.md").write_text(summary_markdown(report))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    parser.add_argument("--dry", action="store_true", default=os.environ.get("DRY") == "1",
                        help="CPU, tiny model, tiny videos (also DRY=1)")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("DEVICE_CHECK_BUDGET", 450)),
                        help="seconds for all steps together (default 450: 7.5 minutes)")
    parser.add_argument("--only", default=None, help="comma list of step names to run (default: all)")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out or set $OUT")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    videos = Path(os.environ.get("VSWIN_BENCH_VIDEOS", "/tmp/vswin-device-check-videos"))
    steps = (dry_steps if args.dry else full_steps)(out, videos)
    if args.only:
        steps = [s for s in steps if s["name"] in args.only.split(",")]
    deadline = time.monotonic() + args.budget
    report = {"dry": args.dry, "environment": environment(), "steps": [], "tests": []}
    write_report(report, out)
    for step in steps:
        result = run_step(step, out, deadline - time.monotonic())
        report["steps"].append(result)
        if step["name"] == "tests":
            report["tests"] = parse_junit(out / "tests.xml")
        write_report(report, out)
        print(f"{result['name']}: {result['status']} ({result.get('seconds')} s)", flush=True)
    print(f"summary: {out / 'summary.md'}")
    return 0 if all(s["status"] == "ok" for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
