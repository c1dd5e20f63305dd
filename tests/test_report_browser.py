"""The report in a real browser: Debian's chromium, headless, driven by Playwright.

Opens a report of a real `vswin tag` run, walks every page and checks each video's timeline shows all
its segments, clicks a segment and checks the <video> seeks there, tries the filters, checks that the
page asked for nothing but its own file and its videos (it must work offline), and saves a screenshot
that must not be blank.

The browser is installed by the set-up when missing (`apt-get install chromium`, as root on Debian, as in
CI); only where that is impossible is the test skipped, saying why. `playwright install` is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from report_helpers import make_video, tag, tiny_model_args
from vswin_cli.report import label_colour, write_report

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Path of Debian's chromium, installing it with apt-get when missing; skips with the reason otherwise."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this system has no apt-get to install it (apt-get install chromium)")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it needs root: sudo apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = ""
    for command in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        log = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        found = shutil.which("chromium")
        if found:
            return found
    pytest.skip(f"chromium could not be installed with apt-get ({log[0][:200]})")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report (3 videos per page) of a tag run over five H.264 videos and one broken file."""
    root = tmp_path_factory.mktemp("browser")
    clips = root / "clips"
    for i, (frames, fps) in enumerate([(150, 25), (40, 20), (90, 30), (75, 25), (50, 25)]):
        make_video(clips / f"v{i}.mp4", frames, fps=fps, seed=i, audio=i == 0)
    (clips / "broken.mp4").write_bytes(b"\x00" * 64)
    results = root / "tags.jsonl"
    result = tag([str(clips), *tiny_model_args(root / "model"), "--window", "1", "--top-k", "3", "-o", str(results)])
    assert result.exit_code == 1
    records = [r for r in map(json.loads, results.read_text().splitlines()) if r["record"] != "run"]
    out = root / "site" / "report.html"
    out.parent.mkdir()
    write_report(results, out, video_root=clips, page_size=3)
    return out, records


def test_timelines_seek_filters_and_screenshot(browser, report, tmp_path):
    out, records = report
    keys = list(dict.fromkeys(r["video"] for r in records))
    segments = {k: [r for r in records if r["video"] == k and r["record"] == "segment"] for k in keys}
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    page.wait_for_function("window.vswinReport && window.vswinReport.ready")

    # every page, every video: its timeline holds one visible bar per segment, at the segment's times
    pages = page.evaluate("vswinReport.pages()")
    assert pages == 2  # 6 videos, 3 per page
    seen = {}
    for number in range(pages):
        page.evaluate(f"vswinReport.setPage({number})")
        shown = page.evaluate("""() => Array.from(document.querySelectorAll('.video.on')).map(a => ({
            key: a.querySelector('.key').textContent,
            bars: Array.from(a.querySelectorAll('.seg')).map(b => {
                const r = b.getBoundingClientRect();
                return {t: b.dataset.t, w: r.width, h: r.height, bg: getComputedStyle(b).backgroundColor}; })}))""")
        assert len(shown) == 3  # one page, also after the early script showed the first page during parsing
        for video in shown:
            seen[video["key"]] = video["bars"]
    assert list(seen) == keys
    for key, bars in seen.items():
        assert [b["t"].split()[:2] for b in bars] == [[f"{s['start']:g}", f"{s['end']:g}"] for s in segments[key]]
        assert all(b["w"] > 1 and b["h"] > 1 for b in bars)
        colours = [label_colour(s["top"][0]["label"], s["top"][0]["index"]) for s in segments[key]]  # coloured by top label
        assert [b["bg"] for b in bars] == [f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in colours]

    # clicking a segment seeks the player to its start
    page.evaluate("vswinReport.setPage(0)")
    target = segments["v0.mp4"][3]
    article = page.locator(".video.on", has=page.locator(".key", has_text="v0.mp4"))
    article.locator(".seg").nth(3).click()
    page.wait_for_function(
        f"Math.abs(document.querySelector('#{article.get_attribute('id')} video').currentTime - {target['start']}) < 0.05",
        timeout=15000)
    assert article.locator(".seg.sel").count() == 1
    article.locator(".seg").nth(1).hover()
    tip = page.locator("#tip").inner_text()
    first = segments["v0.mp4"][1]["top"][0]
    assert page.locator("#tip").is_visible() and f"{first['label']} {100 * first['score']:.1f}%" in tip
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))

    # filters: by label and minimum score; errors only
    label = segments["v0.mp4"][0]["top"][0]["label"]
    expected = [k for k in keys if any(t["label"] == label for s in segments[k] for t in s["top"])]
    page.fill("#f-label", label)
    assert page.inner_text("#count") == f"{len(expected)} of {len(keys)} videos"
    page.fill("#f-score", "0.999")
    assert page.inner_text("#count").startswith("0 of")
    page.fill("#f-label", "")
    page.fill("#f-score", "0")
    page.select_option("#f-status", "error")
    assert page.inner_text("#count") == f"1 of {len(keys)} videos"
    assert "VideoDecodeError" in page.locator(".video.on").inner_text()

    assert not errors
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith("file:")]
    image = Image.open(shot).convert("RGB")
    stat = ImageStat.Stat(image)
    assert image.size == (1000, 800) and max(stat.stddev) > 20  # not a blank page
    assert len(image.getcolors(maxcolors=1 << 20)) > 100
    page.close()
