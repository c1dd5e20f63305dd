"""A self-contained HTML report of a `vswin tag` run: per video, a timeline of segments coloured by top label.

`write_report(results, out_html)` reads the results file one video at a time (`vswin_cli.results`) and
writes the HTML as it goes, so memory stays flat however many videos the run holds; only the label
counts (one entry per label) are kept until the end. The page needs no network: CSS, JavaScript and
keyframe thumbnails are inline (the page's own CSS and JavaScript are package data, `report_page/page.css`
and `page.js`, read once). Every video is in the HTML (readable without JavaScript); the script
shows one page of them at a time and filters by label and minimum score, so a report of thousands of
videos opens as fast as one page.

Per video: the summary (top labels, duration, frames, model) or the error record; a timeline whose bars
are the segments (colour = top label, opacity = its score; overlapping segments go on extra lanes);
hovering a bar shows its labels, scores and keyframe; a contact sheet of one keyframe per segment
(decoded once, downscaled, one small JPEG data URI per video); and, when the video file can be found
from the report's folder, an HTML5 `<video>` that seeks to a segment when its bar is clicked.

The layout takes after MMAction2's long-video demo (sliding-window labels over a long video, Apache-2.0)
turned into a page; no code is copied from it.
"""

from __future__ import annotations

import base64
import colorsys
import functools
import html
import importlib.resources
import io
import json
import os
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from vswin_cli.errors import ConfigError
from vswin_cli.files import atomic_file
from vswin_cli.records import SegmentResult, VideoResult
from vswin_cli.results import read_results, read_run, video_roots

THUMB_HEIGHT = 36  # px: keyframes are downscaled to fit THUMB_WIDTH x THUMB_HEIGHT (about 0.6 KB each)
THUMB_WIDTH = 64
THUMB_QUALITY = 60  # JPEG quality: the page's size is mostly thumbnails, and its size is its load time
SHEET_COLUMNS = 10  # keyframes per contact-sheet row (JPEG sides are limited to 65,535 px)
LANE_HEIGHT = 18  # px per timeline lane
_READ_CHUNK = 32  # keyframes decoded per read, so a long video never holds all of them at full size


@dataclass(frozen=True)
class ReportSummary:
    """What `write_report` wrote: counts, for the command's closing line."""

    path: Path
    num_videos: int
    num_segments: int
    num_errors: int
    num_linked: int  # videos whose file the report can play
    num_labels: int


def write_report(
    results_path: str | os.PathLike,
    out_html: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    thumbnails: bool = True,
    page_size: int = 25,
    on_video: Callable[[VideoResult], None] | None = None,
) -> ReportSummary:
    """Build one self-contained HTML report from a `vswin tag` results file, streaming.

    Args:
        results_path: JSON Lines, JSON, CSV or TSV written by `vswin tag`.
        out_html: the report to write (atomically, through `out_html.part`).
        video_root: the folder the results' video keys are relative to (the folder given to `vswin tag`).
            None tries each key as a path from the working directory, then from the results file's folder.
            Found videos get a player and thumbnails; links are relative to the report's folder.
        title: page title (default: the results file name).
        thumbnails: decode one keyframe per segment into a contact sheet (needs the video file).
        page_size: videos shown per page in the browser.
        on_video: called after each video is written (progress).

    Returns:
        a `ReportSummary`.

    Raises:
        ConfigError: unreadable or malformed results (naming the line), or an unwritable output.
    """
    results_path, out_html = Path(results_path), Path(out_html)
    if page_size < 1:
        raise ConfigError(f"page size must be at least 1, got {page_size}")
    if not out_html.parent.is_dir():
        raise ConfigError(f"{out_html}: the output folder does not exist", hint="create it first")
    roots = video_roots(results_path, video_root)
    counts: dict[str, list[int]] = {}  # label -> [videos top-1, segments top-1, segments in top-k]
    labels: dict[str, int] = {}  # label -> number in the page (first seen first); the page stores numbers
    colours: dict[str, str] = {}  # label -> colour (from its class index, as `vswin annotate` draws it)
    totals = dict(videos=0, segments=0, errors=0, linked=0)
    with atomic_file(out_html, temp=out_html.with_name(out_html.name + ".part")) as part:
        try:
            out = open(part, "w", encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{out_html}: cannot write the report ({err.strerror})") from None
        with out:
            out.write(_head(title or results_path.name, results_path.name, page_size, read_run(results_path)))
            for video in read_results(results_path):
                path = _locate(video.video, roots)
                out.write(_article(video, totals["videos"], path, out_html.parent, thumbnails, labels, colours))
                if totals["videos"] == page_size - 1:
                    out.write(_FIRST_PAGE)  # show the first page while the browser still parses the rest
                _count(video, counts)
                totals["videos"] += 1
                totals["segments"] += len(video.segments)
                totals["errors"] += video.error is not None
                totals["linked"] += path is not None and video.error is None
                if on_video is not None:
                    on_video(video)
            out.write(_tail(counts, labels, colours, totals, page_size))
    return ReportSummary(out_html, totals["videos"], totals["segments"], totals["errors"], totals["linked"],
                         len(counts))


def _locate(key: str, roots: Iterable[Path]) -> Path | None:
    for root in roots:
        candidate = root / key
        if candidate.is_file():
            return candidate
    return None


def _count(video: VideoResult, counts: dict[str, list[int]]) -> None:
    if video.summary and video.summary.top:
        counts.setdefault(video.summary.top[0].label, [0, 0, 0])[0] += 1
    for seg in video.segments:
        for rank, tag in enumerate(seg.top):
            entry = counts.setdefault(tag.label, [0, 0, 0])
            entry[2] += 1
            if rank == 0:
                entry[1] += 1


def label_colour(label: str, index: int | None = None) -> str:
    """A stable colour per class, as `#rrggbb`.

    The hue steps by the golden angle over the class index (so classes of one model never share a colour
    among their first dozens), with three lightness levels; a CRC of the name stands in for the index
    when the results do not carry it.
    """
    number = index if index is not None else zlib.crc32(label.encode("utf-8"))
    hue = (number * 0.618033988749895) % 1.0
    lightness = (0.45, 0.6, 0.35)[(number // 7) % 3]
    r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _attr(value: str) -> str:
    """Escape for a single-quoted attribute (JSON's double quotes stay readable and short)."""
    return value.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _lanes(segments: list[SegmentResult]) -> list[int]:
    """A lane per segment so that overlapping segments (stride < window) never hide each other."""
    lane_ends: list[float] = []
    lanes = []
    for seg in segments:
        for lane, end in enumerate(lane_ends):
            if end <= seg.start + 1e-6:
                break
        else:
            lane = len(lane_ends)
            lane_ends.append(0.0)
        lane_ends[lane] = seg.end
        lanes.append(lane)
    return lanes


def _percent(score: float) -> str:
    return f"{100 * score:.1f}%"


def _duration(video: VideoResult) -> float:
    """Seconds covered: the summary's duration, else the last segment's end (0 without either)."""
    if video.summary and video.summary.duration:
        return video.summary.duration
    return max((s.end for s in video.segments), default=0.0)


def _article(video: VideoResult, number: int, path: Path | None, report_dir: Path, thumbnails: bool,
             labels: dict[str, int], colours: dict[str, str]) -> str:
    esc = html.escape
    summary = video.summary
    summary_top = summary.top if summary else ()
    best: dict[int, float] = {}  # label number -> best score in the video (what the filters test)
    new = []  # labels first seen here: declared (name, colour) on this article, so a page needs no lookahead
    for tag in [t for seg in video.segments for t in seg.top] + list(summary_top):
        if tag.label not in labels:
            labels[tag.label] = len(labels)
            colours[tag.label] = label_colour(tag.label, tag.index)
            new.append([tag.label, colours[tag.label]])
        i = labels[tag.label]
        best[i] = max(best.get(i, 0.0), tag.score)
    declared = f" data-labels='{_attr(json.dumps(new, ensure_ascii=False))}'" if new else ""
    head_tags = " ".join(
        f"<span class='tag' style='--c:{colours[t.label]}'>{esc(t.label)} {_percent(t.score)}</span>"
        for t in summary_top[:3])
    parts = [
        f"<article class='video' id='v{number}' data-tags='{_attr(_json({k: round(v, 4) for k, v in best.items()}))}'"
        f"{' data-error=1' if video.error else ''}{declared}>",
        f"<h2><span class='key'>{esc(video.video)}</span> {head_tags}</h2>",
    ]
    if video.error is not None:
        parts.append(f"<p class='error'><b>{esc(video.error.type)}</b>: {esc(video.error.message)}</p>")
    facts = []
    duration = _duration(video)
    if duration:
        facts.append(f"{duration:.2f} s")
    if summary and summary.num_frames:
        facts.append(f"{summary.num_frames} frames")
    if summary and summary.fps:  # 0.0: not in the file (CSV/TSV)
        facts.append(f"{summary.fps:g} fps")
    if video.segments:
        facts.append(f"{len(video.segments)} segments")
    if summary and summary.model:
        facts.append(f"model {esc(Path(summary.model).name)}")
    if facts:
        parts.append(f"<p class='meta'>{' · '.join(facts)}</p>")
    if video.segments:
        parts.append(_timeline(video.segments, duration, labels))
    if path is not None and video.error is None:
        if thumbnails and video.segments:
            parts.append(_sheet(path, video.segments))
        link = urllib.parse.quote(Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix())
        parts.append(f"<video controls preload='none' src='{_attr(link)}'></video>")
    elif video.error is None and video.segments:
        parts.append("<p class='note'>video file not found from the report's folder (use --videos DIR)</p>")
    parts.append("</article>\n")
    return "".join(parts)


def _timeline(segments: list[SegmentResult], duration: float, labels: dict[str, int]) -> str:
    """The bars: `data-t` = "start end start_frame end_frame", `data-top` = [[label number, score], ...];
    colour class `cN` = label N (rules written at the end, once per label), opacity = top score."""
    duration = max(duration, max(s.end for s in segments), 1e-6)
    lanes = _lanes(segments)
    bars = []
    for seg, lane in zip(segments, lanes):
        left = 100 * seg.start / duration
        width = max(100 * (seg.end - seg.start) / duration, 0.15)
        top = [[labels[t.label], round(t.score, 4)] for t in seg.top]
        style = f"left:{left:.3f}%;width:{width:.3f}%;top:{lane * LANE_HEIGHT}px"
        colour = ""
        if seg.top:
            style += f";opacity:{0.35 + 0.65 * seg.top[0].score:.2f}"
            colour = f" c{labels[seg.top[0].label]}"
        bars.append(
            f"<button class='seg{colour}' style='{style}' data-t='{seg.start:g} {seg.end:g} {seg.start_frame} {seg.end_frame}'"
            f" data-top='{_json(top)}'></button>")
    height = (max(lanes) + 1) * LANE_HEIGHT
    return (f"<div class='timeline' style='height:{height}px'>{''.join(bars)}</div>"
            f"<div class='axis'><span>0 s</span><span>{duration:.2f} s</span></div>")


def _sheet(path: Path, segments: list[SegmentResult]) -> str:
    """One keyframe (the middle frame) per segment, downscaled, tiled into one JPEG data URI."""
    try:
        uri, cell_w, cell_h, cols = contact_sheet(path, segments)
    except Exception:  # a video that decodes badly still gets its timeline, just no thumbnails
        return ""
    rows = -(-len(segments) // cols)
    return (f"<img class='sheet' alt='keyframes' loading='lazy' width='{cell_w * cols}' height='{cell_h * rows}'"
            f" data-cols='{cols}' data-w='{cell_w}' data-h='{cell_h}' data-src='{uri}'>")


def contact_sheet(path: str | os.PathLike, segments: list[SegmentResult]) -> tuple[str, int, int, int]:
    """Decode each segment's middle frame once, downscale it, and tile them into one JPEG.

    Args:
        path: the video file.
        segments: the segments, in order; cell i shows segment i.

    Returns:
        (data URI of the JPEG, cell width, cell height, cells per row).
    """
    from PIL import Image

    from vswin_cli.decode import open_video

    with open_video(path, backend="pyav") as reader:
        last = reader.num_frames - 1
        scale = min(THUMB_WIDTH / reader.width, THUMB_HEIGHT / reader.height)
        cell_w, cell_h = max(1, round(reader.width * scale)), max(1, round(reader.height * scale))
        cols = min(SHEET_COLUMNS, len(segments))
        sheet = Image.new("RGB", (cell_w * cols, cell_h * -(-len(segments) // cols)), (255, 255, 255))
        middles = [min(max((s.start_frame + s.end_frame - 1) // 2, 0), last) for s in segments]
        for first in range(0, len(middles), _READ_CHUNK):
            frames = reader.read(middles[first:first + _READ_CHUNK])  # (T, H, W, 3) uint8
            for offset, frame in enumerate(frames):
                i = first + offset
                cell = Image.fromarray(frame).resize((cell_w, cell_h), Image.BILINEAR, reducing_gap=2.0)
                sheet.paste(cell, ((i % cols) * cell_w, (i // cols) * cell_h))
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), cell_w, cell_h, cols


@functools.cache
def page_asset(name: str) -> str:
    """The text of one of the page's own files in `vswin_cli/report_page/` (package data): `page.css`, `page.js`.

    page.js runs in <head>: it works on the articles parsed so far (a live collection), and again on all
    of them at DOMContentLoaded (label table, datalist, final page count). Labels are numbered in the page;
    each article declares the labels it is the first to use (data-labels: [[name, colour], ...]).
    """
    return importlib.resources.files("vswin_cli").joinpath("report_page", name).read_text(encoding="utf-8")


def _made_by(run: dict | None) -> str:
    """The run record in words (what produced the results), for the page header."""
    if not run:
        return ""
    views = f"{run.get('num_clips')}x{run.get('num_crops')} views of {run.get('clip_len')} frames every {run.get('frame_interval')}"
    facts = [f"vswin {run.get('vswin')}", f"{run.get('model')} ({run.get('arch')}, sha256 {str(run.get('sha256'))[:12]})",
             f"{run.get('device')} {run.get('precision')} {run.get('runtime')}", views, f"crop {run.get('crop_size')}"]
    if run.get("window") is not None:
        facts.append(f"window {run['window']} s" + (f", stride {run['stride']} s" if run.get("stride") is not None else ""))
    return " · made by " + " · ".join(html.escape(str(f)) for f in facts)


def _head(title: str, source: str, page_size: int, run: dict | None = None) -> str:
    esc = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vswin report">
<title>{esc(title)}</title>
<style>
{page_asset("page.css")}</style>
<noscript><style>.video{{display:block}}</style></noscript>
<script>
{page_asset("page.js")}</script>
</head><body>
<header><h1>{esc(title)}</h1><p class="src">results: {esc(source)}{_made_by(run)}</p>
<form id="filters" onsubmit="return false">
<label>label <input id="f-label" list="label-names" placeholder="any" size="18"></label>
<label>min score <input id="f-score" type="number" min="0" max="1" step="0.05" value="0"></label>
<label>show <select id="f-status"><option value="all">all videos</option><option value="ok">tagged</option>
<option value="error">errors</option></select></label>
<span class="pager"><button type="button" id="prev">&#9664;</button> <span id="page">page 1</span>
<button type="button" id="next">&#9654;</button></span> <span id="count"></span>
</form><datalist id="label-names"></datalist><div id="label-slot"></div></header>
<main id="videos" data-page-size="{page_size}">
"""


def _tail(counts: dict[str, list[int]], labels: dict[str, int], colours: dict[str, str], totals: dict[str, int],
          page_size: int) -> str:
    esc = html.escape
    rows = sorted(counts.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
    body = "".join(
        f"<tr><td><span class='swatch' style='background:{colours[label]}'></span>{esc(label)}</td>"
        f"<td>{v}</td><td>{s}</td><td>{k}</td></tr>" for label, (v, s, k) in rows)
    meta = json.dumps({"page_size": page_size, **totals, "labels": list(labels)}, ensure_ascii=False)
    meta = meta.replace("</", "<\\/")  # a label cannot end the <script> element
    rules = "".join(f".c{i}{{background:{colours[label]}}}" for label, i in labels.items())
    return f"""</main>
<section id="labels"><details{' open' if len(rows) <= 12 else ''}><summary>Label counts: {len(rows)} labels, {totals['videos']} videos
({totals['errors']} errors), {totals['segments']} segments</summary>
<table><thead><tr><th>label</th><th>videos (top-1)</th><th>segments (top-1)</th><th>segments (top-k)</th></tr>
</thead><tbody>{body}</tbody></table></details></section>
<style>{rules}</style>
<div id="tip" hidden></div>
<script id="vswin-meta" type="application/json">{meta}</script>
</body></html>
"""


# Written after the first page's articles: a large report shows (and plays) them while the rest still parses.
_FIRST_PAGE = """<script>vswinReport.firstPage()</script>
"""
