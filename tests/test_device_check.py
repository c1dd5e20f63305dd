"""bench/device_check.sh: the dry mode runs every step on the CPU (so the GPU script cannot rot), and the
time-boxing and report logic behave on steps that fail, hang or do not fit the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import device_check  # noqa: E402


@pytest.mark.slow  # about 25 s of CPU in six Python processes (each imports torch)
def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "VSWIN_BENCH_VIDEOS": str(tmp_path / "videos")}
    done = subprocess.run(["bash", str(REPO / "bench" / "device_check.sh"), "--dry"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "results.json").read_text())
    assert report["dry"] is True
    names = [s["name"] for s in report["steps"]]
    assert names == ["tests", "model", "videos", "tag-tiny-fast", "tag-tiny-paper"]
    assert all(s["status"] == "ok" and (out / s["log"]).is_file() for s in report["steps"])
    # The CPU twin of a CUDA test ran and passed; its CUDA half is reported as skipped.
    outcomes = {t["test"]: t["outcome"] for t in report["tests"]}
    assert "passed" in outcomes.values() and any(t.endswith("-cuda]") for t in outcomes)
    rows = report["steps"][1]["data"]["rows"]
    assert {r["impl"] for r in rows} >= {"ours", "flex"} and all(r["views_per_s"] > 0 for r in rows)
    for step in report["steps"][3:]:
        data = step["data"]
        assert data["views_per_pass"] > 0 and data["end_to_end"]["views_per_s"] > 0
        assert data["decode_only"]["clip_frames_per_s"] > 0 and data["ratio_end_to_end_over_model_only"] > 0
    assert report["steps"][4]["data"]["views_per_segment"] == 12  # --views paper: 4 clips x 3 crops
    summary = (out / "summary.md").read_text()
    assert "dry run" in summary and "| model | tiny | fp32 | 1 | ours |" in summary
    assert "| tag-tiny-paper | 48x64 | 12 |" in summary


def test_steps_that_fail_hang_or_do_not_fit_are_reported(tmp_path):
    py = sys.executable
    steps = [
        {"name": "fails", "timeout": 30, "json": None, "argv": [py, "-c", "import sys; sys.exit(3)"]},
        {"name": "hangs", "timeout": 1, "json": None, "argv": [py, "-c", "import time; time.sleep(60)"]},
        {"name": "writes", "timeout": 30, "json": "w.json",
         "argv": [py, "-c", f"open({str(tmp_path / 'w.json')!r}, 'w').write('{{\"rows\": []}}')"]},
    ]
    results = [device_check.run_step(step, tmp_path, 100) for step in steps]
    assert [r["status"] for r in results] == ["failed (rc 3)", "timed out", "ok"]
    assert results[2]["data"] == {"rows": []}
    assert "$ " in (tmp_path / "hangs.log").read_text()
    late = device_check.run_step(steps[0], tmp_path, 3)  # less than 5 s of the budget left
    assert late["status"] == "skipped (out of time)" and late["rc"] is None
    report = {"dry": False, "environment": {}, "steps": results + [late], "tests": []}
    summary = device_check.summary_markdown(report)
    assert "| hangs | timed out |" in summary and "| fails | skipped (out of time) |" in summary


def test_full_run_plan_fits_the_budget_and_covers_the_issue(tmp_path):
    steps = device_check.full_steps(tmp_path, tmp_path / "videos")
    names = [s["name"] for s in steps]
    assert names[0] == "tests" and "-m" in steps[0]["argv"] and "cuda" in steps[0]["argv"]
    assert {"tag-360p-fast", "tag-360p-paper", "tag-720p-fast", "tag-720p-paper"} <= set(names)
    grid = next(s for s in steps if s["name"] == "model")["argv"]
    assert grid[grid.index("--archs") + 1].split(",") == ["swin-b", "swin-t", "swin-s", "swin-b-16"]
    assert set(grid[grid.index("--batch-sizes") + 1].split(",")) == {"1", "16"}
    impls = {i for s in steps if s["name"].startswith("model") for i in s["argv"][s["argv"].index("--impls") + 1].split(",")}
    assert impls == {"ours", "torchvision", "compiled", "flex"}
    assert all("--workers" in s["argv"] and "all" in s["argv"] for s in steps if s["name"].startswith("tag-"))
    # Every step is time-boxed, and the overall default budget keeps the run under 8 minutes.
    assert all(0 < s["timeout"] <= 120 for s in steps)
    parser_default = float(os.environ.get("DEVICE_CHECK_BUDGET", 450))
    assert parser_default <= 450


def test_junit_parsing(tmp_path):
    (tmp_path / "t.xml").write_text(
        '<testsuites><testsuite><testcase name="a[cpu]"/><testcase name="a[cuda]"><skipped message="no CUDA device"/>'
        '</testcase><testcase name="b"><failure message="assert 1 == 2&#10;more">x</failure></testcase>'
        "</testsuite></testsuites>")
    assert device_check.parse_junit(tmp_path / "t.xml") == [
        {"test": "a[cpu]", "outcome": "passed", "message": ""},
        {"test": "a[cuda]", "outcome": "skipped", "message": "no CUDA device"},
        {"test": "b", "outcome": "failed", "message": "assert 1 == 2"},
    ]
    assert device_check.parse_junit(tmp_path / "missing.xml") == []


@pytest.mark.parametrize("script", ["device_check.sh", "fetch_wheels.sh"])
def test_shell_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / script)]).returncode == 0


def test_stage_copies_the_golden_data_the_cuda_tests_read(tmp_path):
    from tests.conftest import shared_path

    source = shared_path()
    (tmp_path / "repo" / "bench").mkdir(parents=True)
    script = tmp_path / "repo" / "bench" / "device_check.sh"
    script.write_text((REPO / "bench" / "device_check.sh").read_text())
    done = subprocess.run(["bash", str(script), "--stage"], capture_output=True, text=True,
                          env={**os.environ, "SHARED_SRC": str(source)}, timeout=120)
    assert done.returncode == 0, done.stderr
    staged = tmp_path / "repo" / "shared"
    for case in ("a_standard", "b_clipped_odd"):
        for name in ("config.json", "checkpoint.pth", "input.pt", "logits.pt"):
            assert (staged / "fixtures" / "official" / case / name).is_file()
    import tests.test_cuda as cuda_tests

    wanted = set(cuda_tests.VIDEOS) | {"bikes.mp4", "portrait_180x320.mp4"}  # the tag and resize tests' videos
    assert {p.name for p in (staged / "videos").iterdir()} == wanted
    missing = subprocess.run(["bash", str(script), "--stage"], capture_output=True, text=True,
                             env={**os.environ, "SHARED_SRC": str(tmp_path / "nowhere")}, timeout=60)
    assert missing.returncode == 1 and "no " in missing.stderr
