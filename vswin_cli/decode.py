"""Open a video file and read frames by index, the way the official Video Swin pipeline numbers them.

The official test pipeline (SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; see
`../shared/spec/pipeline.md`) decodes with decord: frames are numbered in presentation order over
FFmpeg's "best" video stream, counted from the container index, and rotated by the display matrix.
`open_video` reproduces that numbering with two backends:

- `pyav`: always available. Frame `i` is the `i`-th packet of the stream in presentation (pts) order,
  so a file decodes to the same frames as a sequential PyAV decode, including VFR files and files
  whose first timestamp is not zero. Damaged frames that FFmpeg cannot decode are replaced by the
  nearest decoded frame and listed in `VideoReader.concealed_frames`.
- `decord`: the official decoder (the `decord2` fork here), used by `"auto"` when it is installed and
  the file has none of decord's known problems (MPEG-TS start offsets, a container index that
  disagrees with the packets, containers without a frame count, AV1 on decord 0.x, malformed arrays
  for some widths). Any decord failure while reading falls back to PyAV.

Every file is probed with PyAV first, so a file FFmpeg cannot demux or decode (zero bytes, random
bytes, text, truncated index, audio only, ...) raises one `VideoDecodeError` before decord sees it.
"""

from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vswin_cli.errors import ConfigError, VideoDecodeError

log = logging.getLogger("vswin.decode")

BACKENDS = ("auto", "decord", "pyav")
# Larger frames are refused: a hostile header could otherwise make every decoded frame cost gigabytes.
MAX_FRAME_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class StreamIndex:
    """What the PyAV probe learned about the chosen video stream (no pixels).

    Attributes:
        stream_index: index of the stream in the container (FFmpeg's "best" video stream).
        pts: int64 (N,) presentation timestamps of the N frames, ascending, in `time_base` units.
        keyframe: bool (N,) whether frame i starts a keyframe packet (a safe seek target).
        time_base: seconds per pts unit.
        header_frames: the frame count stored in the container (0 when none).
        container_format: FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2".
        codec: decoder name, e.g. "h264".
        raw_height, raw_width: coded frame size before rotation.
        rotation: display rotation in counter-clockwise degrees, one of 0, 90, 180, 270.
        fps: average frame rate of the stream.
    """

    stream_index: int
    pts: np.ndarray
    keyframe: np.ndarray
    time_base: float
    header_frames: int
    container_format: str
    codec: str
    raw_height: int
    raw_width: int
    rotation: int
    fps: float


def _fail(path, reason: str, hint: str | None = None) -> VideoDecodeError:
    return VideoDecodeError(
        path, reason, hint or "check that the file plays in a media player; re-encode it with ffmpeg if it does"
    )


def probe_video(path: str | os.PathLike) -> StreamIndex:
    """Index a video with PyAV: choose the stream, list its frames' timestamps, decode frame 0.

    Demuxes the whole stream (no decoding except the first frame), so the cost grows with file size
    but not with resolution.

    Args:
        path: the video file.

    Returns:
        a `StreamIndex`.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, has no video stream, or no frame
            of it can be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found", "check the path")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)", "the file was probably not fully copied or downloaded")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError as err:
        raise VideoDecodeError(path, f"cannot read the file ({err.strerror})") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as err:
        raise _fail(path, f"not a readable video file (FFmpeg: {_ffmpeg_message(err)})") from None
    try:
        return _index_stream(path, container)
    finally:
        container.close()


def _index_stream(path: Path, container) -> StreamIndex:
    stream = container.streams.best("video")
    if stream is None:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise _fail(path, f"no video stream (streams: {', '.join(kinds)})", "vswin needs a file with a video track")
    stream_pts: list[int] = []
    keyframes: list[bool] = []
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            # AVI and some raw streams carry only a dts; it is the presentation time when there is no reordering.
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                continue
            stream_pts.append(int(pts))
            keyframes.append(bool(packet.is_keyframe))
    except av.FFmpegError as err:
        if not stream_pts:
            raise _fail(path, f"cannot read the video stream (FFmpeg: {_ffmpeg_message(err)})") from None
        log.warning("%s: stopped reading packets early (%s)", path, _ffmpeg_message(err))
    if not stream_pts:
        raise _fail(path, "the video stream has no frames")
    order = np.argsort(np.asarray(stream_pts, dtype=np.int64), kind="stable")
    pts = np.asarray(stream_pts, dtype=np.int64)[order]
    keyframe = np.asarray(keyframes, dtype=bool)[order]
    first = _first_frame(path, container, stream)
    if first.width * first.height > MAX_FRAME_PIXELS:
        raise _fail(path, f"frame size {first.width}x{first.height} is too large (limit {MAX_FRAME_PIXELS} pixels)",
                    "downscale the video first, e.g. ffmpeg -i in.mp4 -vf scale=-2:720 out.mp4")
    rate = stream.average_rate or stream.guessed_rate
    time_base = float(stream.time_base) if stream.time_base else 1.0
    if rate:
        fps = float(rate)
    elif len(pts) > 1 and pts[-1] > pts[0]:
        fps = (len(pts) - 1) / ((pts[-1] - pts[0]) * time_base)
    else:
        fps = 0.0
    return StreamIndex(
        stream_index=stream.index,
        pts=pts,
        keyframe=keyframe,
        time_base=time_base,
        header_frames=int(stream.frames or 0),
        container_format=container.format.name,
        codec=stream.codec_context.name,
        raw_height=first.height,
        raw_width=first.width,
        rotation=int(first.rotation or 0) % 360,
        fps=fps,
    )


def _first_frame(path: Path, container, stream):
    """Decode the first frame that decodes (it gives the real size and the display rotation)."""
    container.seek(0)
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.FFmpegError:
                continue
    except av.FFmpegError as err:
        raise _fail(path, f"no frame could be decoded (FFmpeg: {_ffmpeg_message(err)})") from None
    raise _fail(path, "no frame of the video stream could be decoded")


def _ffmpeg_message(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(":")[0].strip() if text else type(err).__name__


class _UnreliablePts(Exception):
    """Decoded frames carry timestamps that cannot be matched to the container's frame list."""


class _PyAVSource:
    """Reads frames with PyAV: seek to the keyframe before a target, decode forward, match by pts."""

    name = "pyav"

    def __init__(self, path: Path, index: StreamIndex, size_hw: tuple[int, int] | None):
        self.path = path
        self.index = index
        self.size_hw = size_hw  # decode size before rotation, or None for the coded size
        self.pts_to_frame = {int(p): i for i, p in enumerate(index.pts)}
        self.keyframe_positions = np.flatnonzero(index.keyframe).tolist() or [0]
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except av.FFmpegError as err:
            raise _fail(path, f"cannot reopen the file (FFmpeg: {_ffmpeg_message(err)})") from None
        self.stream = self.container.streams[index.stream_index]
        self.stream.thread_type = "SLICE"
        self.concealed: set[int] = set()
        self.match_by_pts = True

    def close(self) -> None:
        self.container.close()

    def _to_rgb(self, frame) -> np.ndarray:
        if self.size_hw is None:
            return frame.to_ndarray(format="rgb24")
        height, width = self.size_hw
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")

    def _keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before `frame` (where a seek lands)."""
        pos = bisect.bisect_right(self.keyframe_positions, frame) - 1
        return self.keyframe_positions[max(pos, 0)]

    def _seek(self, frame: int) -> None:
        self.container.seek(int(self.index.pts[frame]), stream=self.stream, backward=True, any_frame=False)

    def read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        """Decode the frames `wanted` (ascending, unique) -> uint8 (U, h, w, 3) before rotation."""
        try:
            found = self._read_pass(wanted)
        except _UnreliablePts:
            self.match_by_pts = False
            found = self._read_pass(wanted)
        if not found:
            raise _fail(self.path, "none of the requested frames could be decoded")
        return self._fill_missing(wanted, found)

    def _read_pass(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        position = 0  # next entry of `wanted` to fill
        last = None  # index of the last decoded frame; None when the decoder position is unknown
        sequential = False  # set once a seek proved unreliable: decode straight through from the start
        anchor = 0  # the frame index the last seek landed on
        while position < len(wanted):
            target = int(wanted[position])
            keyframe = self._keyframe_before(target)
            just_seeked = False
            if not sequential and (last is None or keyframe > last + 1 or last >= target):
                self._seek(keyframe)
                just_seeked, anchor = True, keyframe
            overshot = False
            for index, frame in self._decode_from_here(anchor):
                if just_seeked and index > target:
                    overshot = True  # the container index was inexact: the seek landed past the target
                    break
                just_seeked = False
                last = index
                while position < len(wanted) and int(wanted[position]) < index:
                    position += 1  # that frame did not decode; it is concealed below
                if position < len(wanted) and int(wanted[position]) == index:
                    found[index] = self._to_rgb(frame)
                    position += 1
                if position == len(wanted):
                    break
                if not sequential and self._keyframe_before(int(wanted[position])) > index + 1:
                    break  # seeking is cheaper than decoding up to the next wanted frame
            else:
                break  # end of stream: whatever is still wanted did not decode
            if overshot:
                self.container.seek(0)
                sequential, last, anchor = True, None, 0
        return found

    def _decode_from_here(self, anchor: int):
        """Yield (frame index, frame) from the current demux position, skipping undecodable packets.

        Frames are matched to indices by pts. Some files (e.g. MPEG-4/H.264 in AVI) give decoded frames
        the wrong pts; a pts that does not increase marks them, and from then on frames are numbered by
        counting from `anchor`, the index the last seek landed on, as a sequential decode would.
        """
        previous_pts = None
        out_of_order = 0
        count = anchor - 1
        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                count += 1
                if self.match_by_pts:
                    index = self.pts_to_frame.get(frame.pts) if frame.pts is not None else None
                    if index is None or (previous_pts is not None and frame.pts <= previous_pts):
                        # One stray frame is damage (skip it); a second means the pts are not usable.
                        out_of_order += 1
                        if out_of_order > 1:
                            raise _UnreliablePts()
                        continue
                    previous_pts = frame.pts
                    yield index, frame
                else:
                    yield count, frame

    def _fill_missing(self, wanted: np.ndarray, found: dict[int, np.ndarray]) -> np.ndarray:
        """Frames that failed to decode take the nearest decoded one (earlier first), like a player."""
        have = sorted(found)
        out = []
        for index in wanted.tolist():
            if index in found:
                out.append(found[index])
                continue
            pos = bisect.bisect_right(have, index) - 1
            out.append(found[have[pos] if pos >= 0 else have[0]])
            self.concealed.add(index)
        if self.concealed:
            log.warning("%s: %d frame(s) could not be decoded and were replaced by the nearest decoded frame",
                        self.path, len(self.concealed))
        return np.stack(out)


def decord_version() -> str | None:
    """The installed decord module's version, or None when decord cannot be imported."""
    try:
        import decord
    except Exception:  # an import that crashes in native code surfaces as many types
        return None
    return getattr(decord, "__version__", "unknown")


class _DecordSource:
    """Reads frames with decord (already rotated by decord); ascending access only."""

    name = "decord"

    def __init__(self, path: Path, size_hw: tuple[int, int] | None):
        import decord

        kwargs = {}
        if size_hw is not None:
            kwargs = {"height": size_hw[0], "width": size_hw[1]}
        self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0), **kwargs)

    def close(self) -> None:
        self.reader = None

    def read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        return self.reader.get_batch(wanted.tolist()).asnumpy()


def _decord_problem(index: StreamIndex) -> str | None:
    """Why decord would get this file wrong, or None. From ../shared/videos/catalogue.json."""
    version = decord_version()
    if version is None:
        return "decord is not installed"
    if "mpegts" in index.container_format:
        return "MPEG-TS: decord returns frames offset by the start time"
    if index.header_frames and index.header_frames != len(index.pts):
        return f"the container says {index.header_frames} frames but holds {len(index.pts)} (damaged or truncated)"
    if index.header_frames == 0 and not index.fps:
        return "no frame count or frame rate in the container"
    if index.codec in ("libdav1d", "av1", "libaom-av1") and version.startswith("0."):
        return "decord 0.x cannot decode AV1"
    return None


class VideoReader:
    """An open video: metadata plus `read(indices)`. Create with `open_video`.

    Attributes:
        path: the file.
        backend: "decord" or "pyav" (the one in use; "auto" falls back to "pyav" on decord errors).
        stream_index: container index of the video stream read (FFmpeg's best video stream).
        num_frames: frame count N; valid indices are 0..N-1.
        fps: average frame rate.
        duration: seconds from the first frame's start to the last frame's end.
        height, width: size of the frames `read` returns (display orientation, after rotation).
        rotation: display rotation applied, in counter-clockwise degrees (0, 90, 180, 270).
        timestamps: float64 (N,) presentation time of each frame in seconds (the file's own clock,
            so it may not start at 0).
        concealed_frames: indices that failed to decode and were replaced by a neighbour (PyAV only).
    """

    def __init__(self, path: Path, index: StreamIndex, backend: str, short_side: int | None):
        self.path = path
        self._index = index
        self._auto = backend == "auto"
        self.stream_index = index.stream_index
        self.num_frames = len(index.pts)
        self.timestamps = index.pts.astype(np.float64) * index.time_base
        self.fps = index.fps or (1.0 / _median_step(self.timestamps) if self.num_frames > 1 else 0.0)
        self.duration = float(self.timestamps[-1] - self.timestamps[0]) + _median_step(self.timestamps, self.fps)
        self.rotation = index.rotation
        self._rot90_k = index.rotation // 90  # numpy.rot90 turns counter-clockwise, as the display matrix does
        raw_h, raw_w = index.raw_height, index.raw_width
        if short_side is not None:
            raw_h, raw_w = scaled_size(raw_h, raw_w, short_side)
        self._raw_size = (raw_h, raw_w) if short_side is not None else None
        self.height, self.width = (raw_w, raw_h) if self._rot90_k % 2 else (raw_h, raw_w)
        self._source = self._make_source(backend)
        self.backend = self._source.name

    def _make_source(self, backend: str):
        if backend == "pyav":
            return _PyAVSource(self.path, self._index, self._raw_size)
        problem = _decord_problem(self._index)
        if problem is None and self._raw_size is not None and self.rotation:
            problem = "decord does not rotate frames it scales"
        if problem is not None and backend == "decord" and decord_version() is None:
            raise ConfigError("backend 'decord' asked for but decord is not installed",
                              "pip install decord2, or use --backend pyav / auto")
        if problem is None or backend == "decord":
            try:
                return _DecordSource(self.path, self._raw_size)
            except Exception as err:  # decord raises its own DECORDError (a RuntimeError) and others
                if backend == "decord":
                    raise _fail(self.path, f"decord cannot open it ({_short(err)})",
                                "try --backend pyav") from None
                problem = f"decord cannot open it ({_short(err)})"
        log.debug("%s: using PyAV (%s)", self.path, problem)
        return _PyAVSource(self.path, self._index, self._raw_size)

    def __len__(self) -> int:
        return self.num_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the decoder (idempotent)."""
        if self._source is not None:
            self._source.close()
            self._source = None

    @property
    def concealed_frames(self) -> list[int]:
        return sorted(getattr(self._source, "concealed", ()))

    def read(self, indices) -> np.ndarray:
        """Frames at `indices`, in the order asked (repeats allowed).

        Distinct frames are decoded once each, in ascending order (decord returns wrong frames on some
        backward seeks), then put back in the order asked.

        Args:
            indices: ints in 0..num_frames-1, any order, any shape (flattened).

        Returns:
            uint8 (T, height, width, 3) RGB, T = number of indices.

        Raises:
            IndexError: an index outside 0..num_frames-1.
            VideoDecodeError: the frames cannot be decoded.
        """
        if self._source is None:
            raise ValueError("read from a closed VideoReader")
        flat = np.asarray(indices).reshape(-1)
        if flat.size == 0:
            return np.empty((0, self.height, self.width, 3), np.uint8)
        if not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got {flat.dtype}")
        if flat.min() < 0 or flat.max() >= self.num_frames:
            raise IndexError(f"frame index out of range 0..{self.num_frames - 1}: {flat.min()}..{flat.max()}")
        wanted, inverse = np.unique(flat, return_inverse=True)
        frames = self._read_sorted(wanted)
        return frames[inverse.reshape(-1)]

    def _read_sorted(self, wanted: np.ndarray) -> np.ndarray:
        try:
            frames = self._source.read_sorted(wanted)
            problem = self._check(frames, wanted, rotated=self._source.name == "decord")
        except VideoDecodeError:
            raise
        except Exception as err:
            if self._source.name != "decord":
                raise _fail(self.path, f"decoding failed ({_short(err)})") from None
            problem = f"decord failed ({_short(err)})"
        if problem is None:
            return frames if self._source.name == "decord" else self._rotate(frames)
        if not self._auto:
            raise _fail(self.path, problem, "try --backend pyav" if self._source.name == "decord" else None)
        log.info("%s: %s; switching to PyAV", self.path, problem)
        self._source.close()
        self._source = _PyAVSource(self.path, self._index, self._raw_size)
        self.backend = "pyav"
        return self._read_sorted(wanted)

    def _check(self, frames: np.ndarray, wanted: np.ndarray, rotated: bool) -> str | None:
        height, width = self.height, self.width
        if not rotated and self._rot90_k % 2:
            height, width = width, height  # PyAV frames come unrotated
        shape = (len(wanted), height, width, 3)
        if frames.shape != shape or frames.dtype != np.uint8:
            return f"decoder returned malformed frames {frames.shape} {frames.dtype} (expected {shape})"
        return None

    def _rotate(self, frames: np.ndarray) -> np.ndarray:
        if self._rot90_k == 0:
            return frames
        # (U, h, w, 3) -> rotate the (h, w) plane counter-clockwise k times
        return np.ascontiguousarray(np.rot90(frames, self._rot90_k, axes=(1, 2)))


def _median_step(timestamps: np.ndarray, fps: float = 0.0) -> float:
    if len(timestamps) > 1:
        return float(np.median(np.diff(timestamps)))
    return 1.0 / fps if fps else 0.0


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    last = text[-1] if text else type(err).__name__
    return last[-160:]


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) scaled so the short side is `short_side`, rounded as mmcv does (half up).

    Args:
        height, width: the frame size.
        short_side: target length of the shorter side.

    Returns:
        (new_height, new_width).
    """
    scale = short_side / min(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def open_video(path: str | os.PathLike, backend: str = "auto", short_side: int | None = None) -> VideoReader:
    """Open a video for reading frames by index.

    Args:
        path: the video file.
        backend: "auto" (decord when installed and safe for this file, else PyAV), "decord" or "pyav".
        short_side: decode frames directly at a reduced size whose short side is this many pixels
            (display orientation; FFmpeg/decord scaling, faster but not bit-exact with the official
            resize). None decodes at full size.

    Returns:
        a `VideoReader` (also a context manager).

    Raises:
        VideoDecodeError: the file cannot be read as a video.
        ConfigError: an unknown backend, or "decord" when decord is not installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}", f"choose one of: {', '.join(BACKENDS)}")
    if short_side is not None and short_side < 1:
        raise ConfigError(f"short_side must be a positive number of pixels, got {short_side}")
    path = Path(path)
    index = probe_video(path)
    return VideoReader(path, index, backend, short_side)
