"""The report page's own CSS and JavaScript (package data in vswin_cli/report_page/): syntax-checked,
shipped in the wheel, and inlined unchanged into every report."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vswin_cli.report import page_asset, write_report

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ("page.css", "page.js")


def test_javascript_parses():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: `node --check` is the JavaScript syntax check")
    result = subprocess.run([node, "--check", str(ROOT / "vswin_cli" / "report_page" / "page.js")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_css_braces_balance():
    depth = 0
    for number, line in enumerate(page_asset("page.css").splitlines(), 1):
        depth += line.count("{") - line.count("}")
        assert depth >= 0, f"page.css line {number}: '}}' without its '{{'"
    assert depth == 0, "page.css: a '{' is never closed"


def test_css_parses_without_errors():
    tinycss2 = pytest.importorskip("tinycss2", reason="tinycss2 (test extra) parses the stylesheet")
    rules = tinycss2.parse_stylesheet(page_asset("page.css"), skip_comments=True, skip_whitespace=True)
    errors = [rule for rule in rules if rule.type == "error"]
    assert not errors, [f"line {e.source_line}: {e.message}" for e in errors]
    assert all(rule.type == "qualified-rule" for rule in rules)
    for rule in rules:  # each declaration list parses too
        declarations = tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
        bad = [d for d in declarations if d.type == "error"]
        assert not bad, [f"line {d.source_line}: {d.message}" for d in bad]


def test_report_inlines_the_asset_files_unchanged(tmp_path):
    results = tmp_path / "tags.jsonl"
    results.write_text('{"record": "error", "video": "a.mp4", "error": {"type": "VideoDecodeError", "message": "x"}}\n')
    write_report(results, tmp_path / "r.html", thumbnails=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"<style>\n{page_asset('page.css')}</style>" in page
    assert f"<script>\n{page_asset('page.js')}</script>" in page


@pytest.mark.slow
def test_wheel_carries_the_assets(tmp_path):
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "tests",
                                                                 "bench", "docs", ".venv"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             str(source), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("vswin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ASSETS:
            assert archive.read(f"vswin_cli/report_page/{name}").decode("utf-8") == page_asset(name)
