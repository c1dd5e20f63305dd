"""`vswin report`: results of real `vswin tag` runs (tiny model) turned into one valid, self-contained HTML page.

The HTML is checked with `html.parser`: one <article class="video"> per video, one bar per segment, the
error records shown, nothing loaded from the network. The reader is checked on every format `vswin tag`
writes and on files it did not write (refused naming the line). Memory is checked to stay flat as the
number of videos grows (tracemalloc, not time).
"""

from __future__ import annotations

import base64
import io
import json
import os
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_path
from report_helpers import LABELS, make_video, tag, tiny_model_args
from vswin_cli.aggregate import LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary
from vswin_cli.app import app
from vswin_cli.errors import ConfigError
from vswin_cli.report import write_report
from vswin_cli.results import read_results, read_results_jsonl
from vswin_cli.writers import get_writer

VOID = {"meta", "img", "br", "input", "hr", "link", "source", "wbr"}


class Page(HTMLParser):
    """Collects the articles (videos), their bars, and every tag, checking that elements nest properly."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.articles: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "article":
            self.articles.append({"attrs": attrs, "segs": [], "videos": [], "sheets": [], "text": []})
        elif self.articles and "article" in self.stack:
            article = self.articles[-1]
            if tag == "button" and "seg" in attrs.get("class", ""):
                article["segs"].append(attrs)
            elif tag == "video":
                article["videos"].append(attrs)
            elif tag == "img":
                article["sheets"].append(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self.stack and self.stack[-1] == "script":
            self.scripts.append(data)
        if self.articles and "article" in self.stack:
            self.articles[-1]["text"].append(data)


def parse(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    page = Page()
    page.feed(text)
    page.close()
    assert page.stack == [], f"unclosed elements {page.stack}"
    return page


def meta(page: Page) -> dict:
    """The page's own JSON: page size, totals and the label names that bars refer to by number."""
    return json.loads(next(s for s in page.scripts if s.startswith("{")))


def assert_offline(page: Page) -> None:
    """Nothing in the page reaches the network: no external scripts, styles, images or fonts."""
    for tag, attrs in page.tags:
        assert tag != "link", attrs
        assert not (tag == "script" and attrs.get("src")), attrs
        for name in ("src", "href", "data-src"):
            value = attrs.get(name) or ""
            assert "://" not in value or value.startswith("data:"), (tag, name, value[:60])
    assert not any("http://" in s or "https://" in s or "@import" in s for s in page.scripts)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`vswin tag` over generated videos (one with audio, one broken file) in every output format."""
    root = tmp_path_factory.mktemp("report-run")
    args = tiny_model_args(root / "model")
    clips = root / "clips"
    make_video(clips / "cat" / "a.mp4", 150, seed=1, audio=True)  # 6 s
    make_video(clips / "dog" / "b.mp4", 40, fps=20, seed=2)  # 2 s
    make_video(clips / "c d é.mp4", 60, seed=3)  # a name that needs URL escaping
    (clips / "broken.mp4").write_bytes(b"\x00" * 100)
    outputs = {"jsonl": root / "tags.jsonl"}
    result = tag([str(clips), *args, "--window", "1", "--top-k", "3", "-o", str(outputs["jsonl"])])
    assert result.exit_code == 1, result.output  # the broken file failed, the others were tagged
    tagged = read_results_jsonl(outputs["jsonl"])  # the same run in the other formats, via the writers
    for fmt in ("json", "csv", "tsv"):
        outputs[fmt] = root / f"tags.{fmt}"
        with open(outputs[fmt], "w", encoding="utf-8", newline="") as stream:
            writer = get_writer(fmt, stream)
            for video in tagged.values():
                writer.write_video(video)
            writer.close()
    records = [json.loads(line) for line in outputs["jsonl"].read_text().splitlines()]
    assert records[0]["record"] == "run"  # what produced the file; the videos follow
    return root, clips, outputs, records[1:]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_every_format_reads_back_the_same_videos(run, fmt):
    _, _, outputs, records = run
    videos = list(read_results(outputs[fmt]))
    keys = list(dict.fromkeys(r["video"] for r in records))
    assert [v.video for v in videos] == keys
    for video in videos:
        segments = [r for r in records if r["video"] == video.video and r["record"] == "segment"]
        assert [(s.start, s.end, s.start_frame, s.end_frame) for s in video.segments] == \
            [(r["start"], r["end"], r["start_frame"], r["end_frame"]) for r in segments]
        assert [[(t.label, t.score) for t in s.top] for s in video.segments] == \
            [[(t["label"], t["score"]) for t in r["top"]] for r in segments]
        assert (video.error is not None) == (video.video == "broken.mp4")


def test_report_has_one_entry_per_video_with_its_segments(run, tmp_path):
    root, clips, outputs, records = run
    out = tmp_path / "sub" / "report.html"
    out.parent.mkdir()
    summary = write_report(outputs["jsonl"], out, video_root=clips)
    page = parse(out)
    assert_offline(page)
    keys = list(dict.fromkeys(r["video"] for r in records))
    names = meta(page)["labels"]
    assert len(page.articles) == len(keys) == summary.num_videos == 4
    assert summary.num_errors == 1 and summary.num_linked == 3
    for article, key in zip(page.articles, keys):
        assert key in "".join(article["text"])
        segments = [r for r in records if r["video"] == key and r["record"] == "segment"]
        assert len(article["segs"]) == len(segments)
        for bar, seg in zip(article["segs"], segments):
            start, end, first, stop = bar["data-t"].split()
            assert (float(start), float(end), int(first), int(stop)) == \
                (seg["start"], seg["end"], seg["start_frame"], seg["end_frame"])
            assert [(names[i], p) for i, p in json.loads(bar["data-top"])] == \
                [(t["label"], round(t["score"], 4)) for t in seg["top"]]
            assert f"c{names.index(seg['top'][0]['label'])}" in bar["class"].split()  # coloured by top label
        if key == "broken.mp4":
            assert "data-error" in article["attrs"] and not article["videos"] and not article["segs"]
            assert "VideoDecodeError" in "".join(article["text"])
            continue
        # the player's link is relative to the report's folder and reaches the video
        (video,) = article["videos"]
        assert (out.parent / unquote(video["src"])).resolve() == (clips / key).resolve()
        # the contact sheet holds one decoded keyframe per segment
        (sheet,) = article["sheets"]
        image = Image.open(io.BytesIO(base64.b64decode(sheet["data-src"].split(",", 1)[1])))
        cols, w, h = int(sheet["data-cols"]), int(sheet["data-w"]), int(sheet["data-h"])
        assert image.size == (cols * w, -(-len(segments) // cols) * h) and (w, h) == (48, 36)  # 96x72 fitted into 64x36
        assert image.convert("L").getextrema()[1] > 50  # real pixels, not a black image


def test_label_count_table_counts_top1_segments(run, tmp_path):
    _, clips, outputs, records = run
    out = tmp_path / "report.html"
    write_report(outputs["csv"], out, video_root=clips, thumbnails=False)
    text = out.read_text(encoding="utf-8")
    table = text[text.index("<section id=\"labels\">"):]
    segments = [r for r in records if r["record"] == "segment"]
    for label in LABELS:
        top1 = sum(s["top"][0]["label"] == label for s in segments)
        anywhere = sum(t["label"] == label for s in segments for t in s["top"])
        if anywhere:
            assert f"{label}</td><td>" in table
            row = table.split(f"{label}</td>", 1)[1].split("</tr>", 1)[0]
            assert [int(x) for x in row.replace("<td>", " ").replace("</td>", " ").split()][1:] == [top1, anywhere]
    assert "data-src" not in text  # --no-thumbnails


def test_report_over_shared_videos_includes_errors(tmp_path):
    """A run over a sample of ../shared/videos, undecodable files included: every file has its entry."""
    folder = shared_path("videos")
    names = ["with_audio.mp4", "rotated_90.mp4", "vfr.mp4", "odd_33x17.mkv", "short_20f.mp4",
             "my clip (1) 'final' \"v2\" ünïcødé 日本語 $HOME;&.mp4", "empty.mp4", "not_a_video.mp4",
             "random_bytes.mp4", "audio_only.m4a", "trunc_inside_moov.mp4"]
    results = tmp_path / "tags.jsonl"
    listing = "\n".join(str(folder / n) for n in names) + "\n"
    result = tag(["-", *tiny_model_args(tmp_path / "model"), "--top-k", "2", "-o", str(results)], stdin=listing)
    assert result.exit_code == 1
    out = tmp_path / "report.html"
    summary = write_report(results, out)
    page = parse(out)
    assert_offline(page)
    assert len(page.articles) == len(names) == summary.num_videos
    errors = [a for a in page.articles if "data-error" in a["attrs"]]
    assert len(errors) == summary.num_errors == 5  # empty, not a video, random bytes, audio only, truncated
    tagged = [a for a in page.articles if "data-error" not in a["attrs"]]
    assert all(a["segs"] and len(a["videos"]) == 1 and a["sheets"] for a in tagged)


def _synthetic(path: Path, num_videos: int, num_segments: int = 30) -> None:
    """A results file written by hand through the writers: `num_videos` videos x `num_segments` segments."""
    with open(path, "w", encoding="utf-8") as stream:
        writer = get_writer("jsonl", stream)
        for v in range(num_videos):
            key = f"folder/{v:05d}.mp4"
            if v % 50 == 7:
                writer.write_video(VideoResult(key, error=VideoError(key, "VideoDecodeError", "damaged")))
                continue
            top = lambda s: tuple(LabelScore(LABELS[(v + s + r) % 5], (v + s + r) % 5, 0.5 / (r + 1)) for r in range(3))
            segs = tuple(SegmentResult(key, s, 2.0 * s, 2.0 * s + 2, 50 * s, 50 * s + 50, top(s), 1, "m")
                         for s in range(num_segments))
            writer.write_video(VideoResult(key, segs, VideoSummary(key, num_segments, 2.0 * num_segments,
                                                                   50 * num_segments, 25.0, top(0), 1, "m")))
        writer.close()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_videos(tmp_path):
    peaks = []
    for n in (40, 400):
        results = tmp_path / f"{n}.jsonl"
        _synthetic(results, n, num_segments=20)
        tracemalloc.start()
        summary = write_report(results, tmp_path / f"{n}.html")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert summary.num_videos == n and summary.num_segments == 20 * (n - len(range(7, n, 50)))
    assert peaks[1] < 1.3 * peaks[0], peaks  # 10x the videos, (almost) the same peak
    assert len(parse(tmp_path / "400.html").articles) == 400


def test_reader_knows_the_writers_csv_columns_without_importing_torch():
    import subprocess
    import sys

    from vswin_cli import results, writers

    assert results.CSV_COLUMNS == writers.CSV_COLUMNS
    code = "import sys, vswin_cli.report, vswin_cli.results; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv"])
def test_hand_written_results_round_trip_through_every_writer(tmp_path, fmt):
    """Events, features, a segment with no tag left (--threshold) and a hostile name read back exactly."""
    from vswin_cli.aggregate import Event

    name = 'dir/a "b", c\td\né.mp4'
    top = (LabelScore("x", 0, 0.75), LabelScore("y, z", 1, 0.25))
    segs = (SegmentResult(name, 0, 0.0, 2.0, 0, 50, top, 1, "m", features=(0.5, 1.5) if fmt.startswith("j") else None),
            SegmentResult(name, 1, 2.0, 4.0, 50, 100, (), 1, "m"))
    video = VideoResult(name, segs, VideoSummary(name, 2, 4.0, 100, 25.0, top, 1, "m"),
                        events=(Event(name, "x", 0, 0.75, 0.0, 2.0, 0, 50, 0, 0, "m"),))
    path = tmp_path / f"tags.{fmt}"
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = get_writer(fmt, stream)
        writer.write_video(video)
        writer.write_video(VideoResult("bad.mp4", error=VideoError("bad.mp4", "VideoDecodeError", "bad, really")))
        writer.close()
    first, second = read_results(path)
    assert first.video == name and first.error is None and first.summary.duration == 4.0
    assert [(s.start_frame, s.end_frame, [(t.label, t.score) for t in s.top]) for s in first.segments] == \
        [(0, 50, [("x", 0.75), ("y, z", 0.25)]), (50, 100, [])]
    assert [(t.label, t.index, t.score) for t in first.summary.top] == [("x", 0, 0.75), ("y, z", 1, 0.25)]
    assert (first.summary.num_frames, first.summary.model, first.summary.views) == (100, "m", 1)
    assert first.summary.fps == (0.0 if fmt in ("csv", "tsv") else 25.0)  # CSV/TSV carry no frame rate
    assert first.segments[0].features == ((0.5, 1.5) if fmt.startswith("j") else None)
    if fmt.startswith("j"):  # JSON and JSON Lines read back the very records that were written
        assert first.segments == segs and first.summary == video.summary
    assert second.video == "bad.mp4" and second.error == VideoError("bad.mp4", "VideoDecodeError", "bad, really")
    write_report(path, tmp_path / "r.html")
    assert len(parse(tmp_path / "r.html").articles) == 2


VIDEO_A = ('{"record": "video", "video": "a", "num_segments": 0, "duration": 0.0, "num_frames": 0, "fps": 25.0, '
           '"top": [], "views": 1, "model": "m"}')  # a complete video record


@pytest.mark.parametrize("content,line", [
    ('{"record": "segment", "video": "a"}\n', 1),  # a segment without its fields
    (f"{VIDEO_A}\nnot json\n", 2),
    ("hello\n", 1),
    ("record,video\nsegment,a\n", 1),  # CSV with other columns
    ('{"videos": [{"video": "a", "segments": [{"start": 0}]}]}', 1),
    ('{"something": "else"}\n', 1),
])
def test_other_files_are_refused_naming_the_line(tmp_path, content, line):
    path = tmp_path / "tags.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"tags.txt:{line}: "):
        list(read_results(path))


def test_cli_report_and_its_errors(run, tmp_path, monkeypatch):
    _, clips, outputs, _ = run
    monkeypatch.chdir(tmp_path)
    ok = CliRunner().invoke(app, ["report", str(outputs["tsv"]), "--videos", str(clips), "--title", "My run",
                                  "--page-size", "2"])
    assert ok.exit_code == 0, ok.output
    assert "4 video(s)" in ok.stderr and "1 error record(s)" in ok.stderr
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<title>My run</title>" in text and '"page_size": 2' in text
    (tmp_path / "junk.jsonl").write_text(f"{VIDEO_A}\n[1, 2]\n")
    bad = CliRunner().invoke(app, ["report", "junk.jsonl", "-o", "r.html"])
    assert bad.exit_code == 1 and "Error: junk.jsonl:2: not a vswin JSON Lines record" in bad.stderr
    assert "Traceback" not in bad.output and not (tmp_path / "r.html").exists()
    assert not list(tmp_path.glob("*.part"))
    missing_dir = CliRunner().invoke(app, ["report", str(outputs["jsonl"]), "-o", "nowhere/r.html"])
    assert missing_dir.exit_code == 2 and "the folder nowhere does not exist" in missing_dir.stderr  # a usage error
