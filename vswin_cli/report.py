"""A self-contained HTML report of a `vswin tag` run: per video, a timeline of segments coloured by top label.

`write_report(results, out_html)` reads the results file one video at a time (`vswin_cli.results`) and
writes the HTML as it goes, so memory stays flat however many videos the run holds; only the label
counts (one entry per label) are kept until the end. The page needs no network: CSS, JavaScript and
keyframe thumbnails are inline. Every video is in the HTML (readable without JavaScript); the script
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
import html
import io
import json
import os
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from vswin_cli.errors import ConfigError
from vswin_cli.results import Segment, TaggedVideo, read_results, video_roots

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
    on_video: Callable[[TaggedVideo], None] | None = None,
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
    part = out_html.with_name(out_html.name + ".part")
    counts: dict[str, list[int]] = {}  # label -> [videos top-1, segments top-1, segments in top-k]
    labels: dict[str, int] = {}  # label -> number in the page (first seen first); the page stores numbers
    colours: dict[str, str] = {}  # label -> colour (from its class index, as `vswin annotate` draws it)
    totals = dict(videos=0, segments=0, errors=0, linked=0)
    try:
        out = open(part, "w", encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{out_html}: cannot write the report ({err.strerror})") from None
    try:
        with out:
            out.write(_head(title or results_path.name, results_path.name, page_size))
            for video in read_results(results_path):
                path = _locate(video.key, roots)
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
        os.replace(part, out_html)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return ReportSummary(out_html, totals["videos"], totals["segments"], totals["errors"], totals["linked"],
                         len(counts))


def _locate(key: str, roots: Iterable[Path]) -> Path | None:
    for root in roots:
        candidate = root / key
        if candidate.is_file():
            return candidate
    return None


def _count(video: TaggedVideo, counts: dict[str, list[int]]) -> None:
    if video.summary and video.summary.get("top"):
        counts.setdefault(video.summary["top"][0].label, [0, 0, 0])[0] += 1
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


def _lanes(segments: list[Segment]) -> list[int]:
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


def _article(video: TaggedVideo, number: int, path: Path | None, report_dir: Path, thumbnails: bool,
             labels: dict[str, int], colours: dict[str, str]) -> str:
    esc = html.escape
    summary = video.summary or {}
    best: dict[int, float] = {}  # label number -> best score in the video (what the filters test)
    new = []  # labels first seen here: declared (name, colour) on this article, so a page needs no lookahead
    for tag in [t for seg in video.segments for t in seg.top] + list(summary.get("top", ())):
        if tag.label not in labels:
            labels[tag.label] = len(labels)
            colours[tag.label] = label_colour(tag.label, tag.index)
            new.append([tag.label, colours[tag.label]])
        i = labels[tag.label]
        best[i] = max(best.get(i, 0.0), tag.score)
    declared = f" data-labels='{_attr(json.dumps(new, ensure_ascii=False))}'" if new else ""
    head_tags = " ".join(
        f"<span class='tag' style='--c:{colours[t.label]}'>{esc(t.label)} {_percent(t.score)}</span>"
        for t in summary.get("top", ())[:3])
    parts = [
        f"<article class='video' id='v{number}' data-tags='{_attr(_json({k: round(v, 4) for k, v in best.items()}))}'"
        f"{' data-error=1' if video.error else ''}{declared}>",
        f"<h2><span class='key'>{esc(video.key)}</span> {head_tags}</h2>",
    ]
    if video.error is not None:
        parts.append(f"<p class='error'><b>{esc(video.error['type'])}</b>: {esc(video.error['message'])}</p>")
    facts = []
    if video.duration:
        facts.append(f"{video.duration:.2f} s")
    if summary.get("num_frames"):
        facts.append(f"{summary['num_frames']} frames")
    if summary.get("fps"):
        facts.append(f"{float(summary['fps']):g} fps")
    if video.segments:
        facts.append(f"{len(video.segments)} segments")
    if summary.get("model"):
        facts.append(f"model {esc(Path(str(summary['model'])).name)}")
    if facts:
        parts.append(f"<p class='meta'>{' · '.join(facts)}</p>")
    if video.segments:
        parts.append(_timeline(video.segments, video.duration, labels))
    if path is not None and video.error is None:
        if thumbnails and video.segments:
            parts.append(_sheet(path, video.segments))
        link = urllib.parse.quote(Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix())
        parts.append(f"<video controls preload='none' src='{_attr(link)}'></video>")
    elif video.error is None and video.segments:
        parts.append("<p class='note'>video file not found from the report's folder (use --videos DIR)</p>")
    parts.append("</article>\n")
    return "".join(parts)


def _timeline(segments: list[Segment], duration: float, labels: dict[str, int]) -> str:
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


def _sheet(path: Path, segments: list[Segment]) -> str:
    """One keyframe (the middle frame) per segment, downscaled, tiled into one JPEG data URI."""
    try:
        uri, cell_w, cell_h, cols = contact_sheet(path, segments)
    except Exception:  # a video that decodes badly still gets its timeline, just no thumbnails
        return ""
    rows = -(-len(segments) // cols)
    return (f"<img class='sheet' alt='keyframes' loading='lazy' width='{cell_w * cols}' height='{cell_h * rows}'"
            f" data-cols='{cols}' data-w='{cell_w}' data-h='{cell_h}' data-src='{uri}'>")


def contact_sheet(path: str | os.PathLike, segments: list[Segment]) -> tuple[str, int, int, int]:
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


def _head(title: str, source: str, page_size: int) -> str:
    esc = html.escape
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vswin report">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<noscript><style>.video{{display:block}}</style></noscript>
<script>{_JS}</script>
</head><body>
<header><h1>{esc(title)}</h1><p class="src">results: {esc(source)}</p>
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


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f6f4}
header{background:#fff;border-bottom:1px solid #ddd;padding:.5em 1em;z-index:2}
h1{font-size:1.2em;margin:0}.src{margin:0;color:#777;font-size:.85em}
form{position:sticky;top:0;background:#fff;z-index:2;display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.4em 0}
#label-slot details{max-height:30vh;overflow:auto}
main{padding:.5em 1em}
.video{display:none;background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.6em .8em}
.video.on{display:block}
.video h2{font-size:1em;margin:0 0 .2em;display:flex;gap:.5em;flex-wrap:wrap;align-items:baseline}
.key{font-family:ui-monospace,monospace;word-break:break-all}
.tag{border-left:.8em solid var(--c);padding-left:.3em;font-weight:normal;font-size:.9em}
.meta,.note{margin:0;color:#666;font-size:.85em}.error{color:#a00;margin:.2em 0}
.timeline{position:relative;background:#eee;border-radius:3px;margin:.4em 0 0}
.seg{position:absolute;height:16px;border:0;border-right:1px solid #fff;padding:0;margin:0;cursor:pointer;
background:#bbb;min-width:2px}
.seg:hover,.seg.sel{outline:2px solid #000;z-index:1}.seg.dim{opacity:.12!important}
.axis{display:flex;justify-content:space-between;color:#888;font-size:.75em}
.sheet{display:block;margin:.3em 0;max-width:100%;height:auto;cursor:pointer;image-rendering:auto}
video{display:block;width:320px;max-width:100%;max-height:270px;margin-top:.3em;background:#000}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.1em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}tbody tr:nth-child(odd){background:#f2f2f2}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;vertical-align:middle}
#tip{position:fixed;z-index:9;background:#fff;border:1px solid #999;padding:.3em .5em;font-size:.85em;
pointer-events:none;box-shadow:0 2px 6px #0003;white-space:nowrap}
#tip .thumb{background-repeat:no-repeat;margin-top:.2em;zoom:2}
"""

# Written after the first page's articles: a large report shows (and plays) them while the rest still parses.
_FIRST_PAGE = """<script>vswinReport.firstPage()</script>
"""

# In <head>: everything works on the articles parsed so far (a live collection), and again on all of them
# at DOMContentLoaded (label table, datalist, final page count). Labels are numbered in the page; each
# article declares the labels it is the first to use (data-labels: [[name, colour], ...]).
_JS = r"""
(function () {
  "use strict";
  var all = document.getElementsByClassName("video");  // live: grows while the page parses
  var names = [], scanned = 0, colours = null, done = false;
  var page = 0, matches = null, shown = [];
  function $(id) { return document.getElementById(id); }
  function pageSize() { return Number($("videos").dataset.pageSize) || 25; }
  function scanLabels() {
    for (; scanned < all.length; scanned++) {
      var a = all[scanned], declared = a.dataset.labels ? JSON.parse(a.dataset.labels) : [];
      declared.forEach(function (d) {
        if (!colours) { var st = document.createElement("style"); document.head.appendChild(st); colours = st.sheet; }
        colours.insertRule(".c" + names.length + "{background:" + d[1] + "}", colours.cssRules.length);
        names.push(d[0]);
      });
    }
  }
  function tagsOf(a) { if (!a._tags) a._tags = JSON.parse(a.dataset.tags); return a._tags; }
  function want() {
    var name = $("f-label").value.trim(), i = -1;
    if (name) { scanLabels(); i = names.indexOf(name); if (i < 0) i = -2; }
    return {label: i, min: parseFloat($("f-score").value) || 0, status: $("f-status").value};
  }
  function matchVideo(a, f) {
    var err = a.hasAttribute("data-error");
    if ((f.status === "ok" && err) || (f.status === "error" && !err)) return false;
    if (f.label === -1 && f.min <= 0) return true;
    var tags = tagsOf(a);
    if (f.label !== -1) return f.label in tags && tags[f.label] >= f.min;
    for (var k in tags) if (tags[k] >= f.min) return true;
    return false;
  }
  function dimSegments(a, f) {
    var active = f.label !== -1 || f.min > 0;
    a.querySelectorAll(".seg").forEach(function (b) {
      var on = true;
      if (active) {
        var top = JSON.parse(b.dataset.top);
        on = top.some(function (t) { return (f.label === -1 || t[0] === f.label) && t[1] >= f.min; });
      }
      b.classList.toggle("dim", !on);
    });
  }
  function current() { return matches || Array.prototype.slice.call(all); }
  function render() {
    scanLabels();
    var f = want(), list = current(), size = pageSize(), pages = Math.max(1, Math.ceil(list.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    shown.forEach(function (a) { a.classList.remove("on"); });
    shown = list.slice(page * size, (page + 1) * size);
    shown.forEach(function (a) {
      a.classList.add("on"); dimSegments(a, f);
      var img = a.querySelector("img.sheet");
      if (img && !img.src) img.src = img.dataset.src;
    });
    $("page").textContent = "page " + (page + 1) + " of " + pages + (done ? "" : "+");
    $("count").textContent = list.length + " of " + all.length + (done ? "" : "+") + " videos";
  }
  function refilter() {
    var f = want();
    matches = (f.label === -1 && f.min <= 0 && f.status === "all") ? null
      : Array.prototype.filter.call(all, function (a) { return matchVideo(a, f); });
    page = 0; render();
  }
  function seek(a, t) {
    var v = a.querySelector("video");
    if (!v) return;
    if (v.readyState >= 1) { v.currentTime = t; return; }
    v.preload = "auto";
    v.addEventListener("loadedmetadata", function () { v.currentTime = t; }, {once: true});
    v.load();
  }
  function segParts(b) { return b.dataset.t.split(" ").map(Number); }
  document.addEventListener("input", function (e) {
    if (e.target.closest && e.target.closest("#filters")) refilter();
  });
  document.addEventListener("click", function (e) {
    if (e.target.id === "prev" || e.target.id === "next") {
      page += e.target.id === "next" ? 1 : -1; render(); window.scrollTo(0, 0); return;
    }
    var a = e.target.closest && e.target.closest(".video");
    if (!a) return;
    var bars = a.querySelectorAll(".seg"), b = e.target.closest(".seg");
    if (!b && e.target.classList.contains("sheet")) {
      var img = e.target, r = img.getBoundingClientRect(), k = img.naturalWidth / r.width;
      var col = Math.floor((e.clientX - r.left) * k / img.dataset.w), row = Math.floor((e.clientY - r.top) * k / img.dataset.h);
      b = bars[row * Number(img.dataset.cols) + col];
    }
    if (!b) return;
    a.querySelectorAll(".seg.sel").forEach(function (s) { s.classList.remove("sel"); });
    b.classList.add("sel");
    seek(a, segParts(b)[0]);
  });
  document.addEventListener("mouseover", function (e) {
    var tip = $("tip"), b = e.target.closest && e.target.closest(".seg");
    if (!tip) return;
    if (!b) { tip.hidden = true; return; }
    scanLabels();
    var t = segParts(b), top = JSON.parse(b.dataset.top), a = b.closest(".video");
    tip.textContent = "";
    var head = document.createElement("b");
    head.textContent = t[0].toFixed(2) + "\u2013" + t[1].toFixed(2) + " s (frames " + t[2] + "\u2013" + (t[3] - 1) + ")";
    tip.appendChild(head);
    top.forEach(function (x) {
      var d = document.createElement("div"); d.textContent = names[x[0]] + " " + (100 * x[1]).toFixed(1) + "%";
      tip.appendChild(d);
    });
    var img = a.querySelector("img.sheet");
    if (img) {
      var i = Array.prototype.indexOf.call(a.querySelectorAll(".seg"), b), cols = Number(img.dataset.cols);
      var w = Number(img.dataset.w), h = Number(img.dataset.h), d = document.createElement("div");
      d.className = "thumb"; d.style.width = w + "px"; d.style.height = h + "px";
      d.style.backgroundImage = "url(" + img.dataset.src + ")";
      d.style.backgroundPosition = (-(i % cols) * w) + "px " + (-Math.floor(i / cols) * h) + "px";
      tip.appendChild(d);
    }
    var r = b.getBoundingClientRect();
    tip.style.left = Math.min(r.left, window.innerWidth - 220) + "px"; tip.style.top = (r.bottom + 4) + "px";
    tip.hidden = false;
  });
  document.addEventListener("DOMContentLoaded", function () {
    done = true;
    var slot = $("label-slot"), table = $("labels").firstElementChild, list = $("label-names");
    slot.appendChild(table);  // written last: the counts are known only at the end
    slot.querySelectorAll("tbody td:first-child").forEach(function (td) {
      var o = document.createElement("option"); o.value = td.textContent; list.appendChild(o);
    });
    if (matches) refilter(); else render();
    window.vswinReport.ready = true;
    window.vswinReport.readyAt = performance.now();
  });
  window.vswinReport = {
    ready: false, readyAt: null, firstPageAt: null,
    firstPage: function () { render(); this.firstPageAt = performance.now(); },
    pages: function () { return Math.max(1, Math.ceil(current().length / pageSize())); },
    setPage: function (p) { page = p; render(); },
    labels: function () { scanLabels(); return names.slice(); }
  };
})();
"""
