"""Regenerate the README's pictures: docs/report.png (a report in chromium) and docs/annotate.png (a labelled frame).

    python docs/make_images.py     # needs ../shared/videos, Debian's chromium and playwright

The tags come from the tests' tiny random model (5 made-up classes), run by `vswin tag` on four videos
of ../shared/videos plus one undecodable file, so the labels are arbitrary; the pictures show the layout.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import av
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from report_helpers import tag, tiny_model_args  # noqa: E402
from vswin_cli.annotate import annotate_videos  # noqa: E402
from vswin_cli.report import write_report  # noqa: E402

VIDEOS = ["cockatoo.mp4", "bikes.mp4", "flipping_a_pancake.mkv", "chaplin.mp4", "not_a_video.mp4"]


def main() -> None:
    shared = ROOT.parent / "shared" / "videos"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = tmp / "clips"
        clips.mkdir()
        for name in VIDEOS:
            shutil.copy(shared / name, clips / name)
        results = tmp / "tags.jsonl"
        tag([str(clips), *tiny_model_args(tmp / "model"), "--window", "1", "--top-k", "3", "-o", str(results)])
        html = tmp / "report.html"
        write_report(results, html, video_root=clips, title="tags.jsonl (tiny test model)")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"])
            page = browser.new_page(viewport={"width": 900, "height": 820})
            page.goto(html.as_uri())
            page.wait_for_function("window.vswinReport && window.vswinReport.ready")
            article = page.locator(".video.on", has=page.locator(".key", has_text="bikes.mp4"))
            article.locator(".seg").nth(4).click()
            page.evaluate("window.scrollTo(0, 0)")
            article.locator(".seg").nth(5).hover()
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp / "report.png"))
            browser.close()
        _small(tmp / "report.png", ROOT / "docs" / "report.png", 900)
        annotate_videos(results, tmp / "labelled", video_root=clips)
        with av.open(str(tmp / "labelled" / "cockatoo.mp4")) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == 40:
                    frame.to_image().save(tmp / "frame.png")
                    break
        _small(tmp / "frame.png", ROOT / "docs" / "annotate.png", 480)
    print("wrote docs/report.png and docs/annotate.png")


def _small(source: Path, dest: Path, width: int) -> None:
    image = Image.open(source).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(dest, optimize=True)


if __name__ == "__main__":
    main()
