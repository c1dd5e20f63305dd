"""Labelled videos: each tagged video written again with its current segment's top labels drawn on the frames.

As MMAction2's long-video demo (`demo/long_video_demo.py`, Apache-2.0) shows sliding-window predictions
over a long video, `annotate_videos(results, out_dir)` reads a `vswin tag` results file one video at a
time and re-encodes each video with PyAV: H.264 in MP4 at the original (display) size, frame rate and
timestamps, audio copied when MP4 can hold it. Text is rendered with Pillow's ImageDraw and the
FreeType font Pillow bundles (`ImageFont.load_default(size=...)`), once per segment into a small RGBA
patch that is alpha-blended onto every frame of that segment; pixels outside the label box are only
re-encoded, never drawn on. Frames stream through decoder, blend and encoder one at a time, so memory
does not grow with the video's length or the number of videos.

Frames are matched to segments by index in presentation order, numbered exactly as `vswin tag`
numbered them (`vswin_cli.decode.probe_video`); the current segment of a frame is the latest one that
started at or before it and has not ended (MMAction2's demo shows the latest window's result too).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Callable

import av
import numpy as np

from vswin_cli.errors import ConfigError, VideoDecodeError, VswinError
from vswin_cli.files import atomic_file
from vswin_cli.report import label_colour
from vswin_cli.records import SegmentResult, VideoResult
from vswin_cli.results import read_results, video_roots
from vswin_cli.sources import is_stream_key

log = logging.getLogger("vswin.annotate")

# Audio codecs the MP4 muxer takes as they are; others are dropped with a warning (no transcoding).
MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"})
_REORDER = 16  # frames held back to restore presentation order before a missing one is concealed
_DECODER_CODEC = {"mp3float": "mp3", "aac_fixed": "aac", "ac3_fixed": "ac3", "libopus": "opus"}  # PyAV names decoders


@dataclass(frozen=True)
class AnnotatedVideo:
    """One video written by `annotate_video`.

    Attributes:
        key: the video's key in the results.
        output: the MP4 written.
        num_frames: frames written: one per frame of the input as `vswin tag` numbers them (a frame that
            does not decode is replaced by the nearest one that does, as `vswin tag` conceals it).
        width, height: frame size (display orientation, as the input plays).
        box: (x0, y0, x1, y1) pixel bounds of the label area, the union over segments (None: no labels).
        audio: "copied", "none", or why it was dropped.
    """

    key: str
    output: Path
    num_frames: int
    width: int
    height: int
    box: tuple[int, int, int, int] | None
    audio: str


@dataclass(frozen=True)
class AnnotateSummary:
    """What `annotate_videos` did: counts, plus (key, reason) for each video it could not write."""

    num_written: int
    num_skipped: int  # error records in the results: nothing to draw
    failures: tuple[tuple[str, str], ...]


def output_path(out_dir: str | os.PathLike, key: str) -> Path:
    """Where the labelled copy of video `key` goes: its relative path under out_dir, ending in `.mp4`.

    `cat/a.mp4` -> `OUT/cat/a.mp4`, `cat/a.mkv` -> `OUT/cat/a.mkv.mp4` (so keys never collide); an absolute
    key loses its root and `..` parts become `_`, so nothing is written outside out_dir.
    """
    parts = [p if p != ".." else "_" for p in PurePosixPath(key.replace("\\", "/")).parts if p not in ("/", ".")]
    rel = Path(*parts) if parts else Path("video")
    if rel.suffix.lower() != ".mp4":
        rel = rel.with_name(rel.name + ".mp4")
    return Path(out_dir) / rel


def annotate_videos(
    results_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    *,
    top_k: int = 3,
    crf: int = 20,
    preset: str = "veryfast",
    on_video: Callable[[str, AnnotatedVideo | None, str | None], None] | None = None,
) -> AnnotateSummary:
    """Write a labelled copy of every tagged video in a results file.

    Args:
        results_path: JSON Lines, JSON, CSV or TSV written by `vswin tag`.
        out_dir: output folder (created); each video goes to `output_path(out_dir, key)`.
        video_root: the folder the results' keys are relative to (the folder given to `vswin tag`).
            None tries each key from the working directory, then from the results file's folder.
        top_k: labels drawn per segment.
        crf, preset: libx264 quality (lower crf = better, 18 is visually lossless) and speed.
        on_video: called per video with (key, AnnotatedVideo or None, failure reason or None).

    Returns:
        an `AnnotateSummary`; a video that cannot be read or written is counted there, not raised.

    Raises:
        ConfigError: unreadable or malformed results, or an output folder that cannot be created.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{out_dir}: cannot create the output folder ({err.strerror})") from None
    roots = video_roots(results_path, video_root)
    written, skipped, failures = 0, 0, []
    for video in read_results(results_path):
        if video.error is not None or not video.segments:
            skipped += 1
            continue
        source = next((r / video.video for r in roots if (r / video.video).is_file()), None)
        result, reason = None, None
        if source is None and is_stream_key(video.video):
            reason = (f"{video.video}: a stream, not a file, so it cannot be read again to draw on (its report needs"
                      f" no video); to annotate one, record it (ffmpeg -i URL -c copy rec.ts) and tag the recording")
        elif source is None:
            looked = ", ".join(str(r) for r in roots)
            reason = f"{video.video}: video file not found (looked in {looked}; give the tagged folder with --videos DIR)"
        else:
            try:
                result = annotate_video(source, video, output_path(out_dir, video.video), top_k=top_k, crf=crf,
                                        preset=preset)
            except VswinError as err:
                reason = str(err)
        if result is None:
            failures.append((video.video, reason))
        else:
            written += 1
        if on_video is not None:
            on_video(video.video, result, reason)
    return AnnotateSummary(written, skipped, tuple(failures))


def annotate_video(
    source: str | os.PathLike,
    video: VideoResult,
    output: str | os.PathLike,
    *,
    top_k: int = 3,
    crf: int = 20,
    preset: str = "veryfast",
) -> AnnotatedVideo:
    """Re-encode one video with its segments' top labels drawn on (see the module docstring).

    Args:
        source: the video file that was tagged.
        video: its results (segments with `start_frame`/`end_frame` and tags).
        output: the MP4 to write (through `output.part`, renamed when complete).
        top_k, crf, preset: as in `annotate_videos`.

    Returns:
        an `AnnotatedVideo`.

    Raises:
        VideoDecodeError: the source cannot be read.
        ConfigError: the output cannot be written or encoded.
    """
    from vswin_cli.decode import probe_video  # the frame numbering `vswin tag` used

    source, output = Path(source), Path(output)
    index = probe_video(source)
    pts_to_frame = {int(p): i for i, p in enumerate(index.pts)}
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    try:
        with atomic_file(output, temp=part):
            result = _transcode(source, part, video, index, pts_to_frame, top_k, crf, preset)
    except av.FFmpegError as err:
        raise ConfigError(f"{output}: cannot write the labelled video ({err})") from None
    return AnnotatedVideo(video.video, output, *result)


def _transcode(source, part, video, index, pts_to_frame, top_k, crf, preset):
    k = index.rotation // 90  # np.rot90 turns counter-clockwise, as the display matrix does
    height, width = (index.raw_width, index.raw_height) if k % 2 else (index.raw_height, index.raw_width)
    overlays = _Overlays(sorted(video.segments, key=lambda s: (s.start_frame, s.segment)), width, height, top_k)
    with av.open(str(source), metadata_errors="ignore") as inp, av.open(str(part), "w", format="mp4") as out:
        vin = inp.streams[index.stream_index]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height = width, height
        vout.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        vout.time_base = vin.time_base
        vout.codec_context.time_base = vin.time_base
        vout.options = {"crf": str(crf), "preset": preset}
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout, audio = None, "none"
        if ain is not None:
            if _DECODER_CODEC.get(ain.codec_context.name, ain.codec_context.name) in MP4_AUDIO:
                aout, audio = out.add_stream_from_template(ain), "copied"
            else:
                audio = f"dropped ({ain.codec_context.name} audio cannot go in MP4 without transcoding)"
                log.warning("%s: %s", source, audio)
        streams = [vin] + ([ain] if aout is not None else [])
        step = max(1, round(1 / (float(rate) * float(vin.time_base)))) if vin.time_base else 1  # one frame, in pts
        state = {"count": 0, "last_pts": None, "next": 0}

        def emit(raw: np.ndarray, number: int, pts: int) -> None:
            rgb = raw.copy()  # raw stays clean: a concealed neighbour may reuse it
            overlays.draw(rgb, number)
            if state["last_pts"] is not None and pts <= state["last_pts"]:
                pts = state["last_pts"] + 1  # the encoder needs strictly increasing timestamps
            new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            new.pts, new.time_base = pts, vin.time_base
            out.mux(vout.encode(new))
            state["count"], state["last_pts"] = state["count"] + 1, pts

        # Decoders may return frames out of presentation order (packed B-frames in AVI): a small buffer puts
        # them back in `vswin tag`'s order; an index that never arrives is filled with its nearest frame.
        pending: dict[int, np.ndarray] = {}
        last_raw = None

        def flush(upto: int) -> None:
            nonlocal last_raw
            while state["next"] < upto:
                j = state["next"]
                if j in pending:
                    last_raw = pending.pop(j)
                elif last_raw is None:  # missing first frames: the first one that decoded
                    last_raw = pending[min(pending)]
                emit(last_raw, j, int(index.pts[j]) if j < len(index.pts) else state["last_pts"] + step)
                state["next"] = j + 1

        for packet in inp.demux(*streams):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:  # a damaged packet: its frame is concealed, as `vswin tag` does
                continue
            for frame in frames:
                number = pts_to_frame.get(frame.pts) if frame.pts is not None else None
                if number is None:  # a timestamp the index does not know: take the next free place
                    number = max([state["next"] - 1, *pending]) + 1
                if number < state["next"] or number in pending:
                    continue  # a second frame for one place (broken timestamps): keep the first
                raw = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8 as coded
                pending[number] = np.ascontiguousarray(np.rot90(raw, k)) if k else raw  # display orientation
                while state["next"] in pending:
                    flush(state["next"] + 1)
                if len(pending) > _REORDER:  # an index is missing for good: conceal up to the earliest waiting
                    flush(min(pending))
        if pending:
            flush(max(pending) + 1)
        if last_raw is not None:
            flush(len(index.pts))  # a damaged end: repeat the last frame
        out.mux(vout.encode())
    count = state["count"]
    if count == 0:
        raise VideoDecodeError(source, "no frame could be decoded")
    return count, width, height, overlays.box, audio


class _Overlays:
    """The label patch of each segment, rendered once, and the current segment of each frame."""

    def __init__(self, segments: list[SegmentResult], width: int, height: int, top_k: int):
        from PIL import ImageFont

        self.segments, self.width, self.height, self.top_k = segments, width, height, top_k
        self.size = int(min(max(min(width, height) / 18, 10), 40))  # font px: legible, at most a quarter
        self.font = ImageFont.load_default(size=self.size)
        self.cache: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        self.next = 0  # frames come in order: a cursor over segments sorted by start
        self.active: list[int] = []
        self.box: tuple[int, int, int, int] | None = None

    def current(self, frame: int) -> SegmentResult | None:
        while self.next < len(self.segments) and self.segments[self.next].start_frame <= frame:
            self.active.append(self.next)
            self.next += 1
        self.active = [i for i in self.active if self.segments[i].end_frame > frame]
        return self.segments[self.active[-1]] if self.active else None  # the latest to start

    def draw(self, rgb: np.ndarray, frame: int) -> None:
        """Blend the current segment's labels onto rgb (H, W, 3) uint8, in place."""
        seg = self.current(frame)
        if seg is None or not seg.top or self.top_k == 0:
            return
        if seg.segment not in self.cache:
            self.cache[seg.segment] = self._render(seg)
        patch = self.cache[seg.segment]
        if patch is None:
            return
        colour, alpha = patch  # (h, w, 3) uint16, (h, w, 1) uint16 in 0..255
        h, w = alpha.shape[:2]
        region = rgb[:h, :w].astype(np.uint16)
        rgb[:h, :w] = ((region * (255 - alpha) + colour * alpha + 127) // 255).astype(np.uint8)

    def _render(self, seg: SegmentResult):
        from PIL import Image, ImageDraw

        lines = [f"{t.label} {100 * t.score:.1f}%" for t in seg.top[:self.top_k]]
        pad, gap = max(2, self.size // 4), max(1, self.size // 6)
        swatch = self.size * 2 // 3
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        boxes = [probe.textbbox((0, 0), line, font=self.font) for line in lines]
        line_h = max(b[3] for b in boxes) + gap
        w = min(self.width, pad * 3 + swatch + max(b[2] for b in boxes))
        h = min(self.height, pad * 2 + line_h * len(lines) - gap)
        patch = Image.new("RGBA", (w, h), (0, 0, 0, 150))
        draw = ImageDraw.Draw(patch)
        for row, (line, tag) in enumerate(zip(lines, seg.top)):
            y = pad + row * line_h
            draw.rectangle((pad, y + (line_h - gap - swatch) // 2, pad + swatch - 1,
                            y + (line_h - gap + swatch) // 2 - 1), fill=label_colour(tag.label, tag.index))
            draw.text((pad * 2 + swatch, y), line, font=self.font, fill=(255, 255, 255, 255))
        rgba = np.asarray(patch, dtype=np.uint16)  # (h, w, 4)
        box = (0, 0, w, h)
        self.box = box if self.box is None else (0, 0, max(self.box[2], w), max(self.box[3], h))
        return rgba[..., :3], rgba[..., 3:]
