"""Open a video file and read frames by index, the way the official Video Swin pipeline numbers them.

The official test pipeline (SwinTransformer/Video-Swin-Transformer @ db018fb, Apache-2.0; see
`../shared/spec/pipeline.md`) decodes with decord: frames are numbered in presentation order over
FFmpeg's "best" video stream, counted from the container index, and rotated by the display matrix.
`open_video` reproduces that numbering with two backends:

- `pyav`: always available. Frame `i` is the `i`-th packet of the stream in presentation (pts) order,
  so a file decodes to the same frames as a sequential PyAV decode, including VFR files and files
  whose first timestamp is not zero. Damaged frames that FFmpeg cannot decode are replaced by the
  nearest decoded frame and listed in `VideoReader.concealed_frames`.
- `decord`: the official decoder (the `decord2` fork here), used when asked for (`backend="decord"`),
  or by `"auto"` only for short 10-bit files when decord 0.x (the authors' build) is installed
  (`_auto_uses_decord`: PyAV needs as little CPU and less memory, see below).
  Files with one of decord's known problems (MPEG-TS start offsets, a container index that disagrees
  with the packets, containers without a frame count, AV1 on decord 0.x, malformed arrays for some
  widths) go to PyAV under "auto". Any decord failure while reading under "auto" falls back to PyAV.

Every file is probed with PyAV first, so a file FFmpeg cannot demux or decode (zero bytes, random
bytes, text, truncated index, audio only, ...) raises one `VideoDecodeError` before decord sees it.

Reading and memory:

    reader = open_video(path)                       # backend "auto": PyAV, see below
    frames = reader.read(indices)                   # uint8 (T, H, W, 3), full size, as before
    small = reader.read(indices, resize_short=224)  # uint8 (T, h, w, 3), min(h, w) == 224

`read(indices, resize_short=S)` resizes every frame right after it is decoded (and rotated) with
`transforms.resize_short_side`, so the peak is one full-size frame plus the resized output, whatever
the frame size or the number of frames; the result is bit-identical to
`resize_short_side(reader.read(indices), S)`. `reader.output_bytes(n, resize_short)` says what a read
of n frames returns, `reader.max_frames_for(resize_short, budget_bytes=None)` how many fit in a budget
(`DECODE_MEMORY_BUDGET` by default), to size the reads of a long video. Consecutive reads continue
from where the decoder stopped (no seek back to a keyframe), so reading a video chunk by chunk costs
what one sequential decode costs.

Nothing the reader keeps grows with what was read: per frame it holds 17 bytes of index (pts, key
flag, timestamp), and no decoded frame survives a `read`. `auto` reads with PyAV: on 360p-1080p
H.264 it needs as little or less CPU per frame than decord and much less memory, and decord's memory
and CPU per frame grow with the file's length (bench/bench_decode.py, docs/benchmarks.md); the one
exception is above. decord is used when asked for (`backend="decord"`); its native log is captured
around each call, and its "Failed to skip frames" warning (frames that may not be the ones asked
for, seen on long files) is treated as a decode failure: the reader switches to PyAV, or raises
when decord was asked for explicitly.

FFmpeg's and decord's own log lines are silenced unless `set_decoder_logging(True)` (the CLI's `-v`).
"""

from __future__ import annotations

import bisect
import logging
import os
import stat
import sys
import tempfile
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vswin_cli.errors import ConfigError, VideoDecodeError
from vswin_cli.sampling import frame_step
from vswin_cli.protocol import resized_size

log = logging.getLogger("vswin.decode")

BACKENDS = ("auto", "decord", "pyav")
# Larger frames are refused: a hostile header could otherwise make every decoded frame cost gigabytes.
MAX_FRAME_PIXELS = 8192 * 8192
# The decode side's memory budget: what one `read` should return at most (`VideoReader.max_frames_for`
# sizes reads to it). 64 frames of 398x224 are 17 MB; the budget leaves room for HD `resize_short=None`.
DECODE_MEMORY_BUDGET = 256 * 2**20
DECORD_BATCH_BYTES = 64 * 2**20  # full-size frames decord decodes per call
# Seek only when that skips more than this many frames: a seek flushes the decoder (and its frame
# threads), which costs more than decoding a few frames; reading every 2nd frame never seeks.
SEEK_MIN_SKIP = 24
# Decoders whose non-reference frames no other frame reads (H.264: nal_ref_idc 0), so FFmpeg may skip
# decoding them (skip_frame NONREF) without changing a single pixel of the frames that are decoded.
SKIP_NONREF_CODECS = ("h264",)
PYAV_THREAD_TYPE = "SLICE"  # FFmpeg threading for PyAV decoding (see bench/bench_decode.py)
DECORD_AUTO_MAX_FRAMES = 3000  # "auto" never gives decord a longer file (2 min at 25 fps)


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
        pix_fmt: FFmpeg pixel format of the decoded frames, e.g. "yuv420p", "yuv420p10le".
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
    pix_fmt: str = ""


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
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the decoder, and has no size to check
        raise VideoDecodeError(path, "not a regular file (a FIFO, socket or device)", "give the video file itself")
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
    # Typed arrays, not lists of Python ints: 9 bytes per frame while indexing a long file, not ~45.
    stream_pts = array("q")
    keyframes = array("b")
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
    pts = np.frombuffer(stream_pts, dtype=np.int64)
    order = np.argsort(pts, kind="stable")
    pts = pts[order]  # a copy: the index owns its memory
    keyframe = np.frombuffer(keyframes, dtype=np.int8)[order].astype(bool)
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
        pix_fmt=first.format.name if first.format is not None else "",
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


class _SkippingUnsafe(Exception):
    """A packet failed to decode while non-reference frames were being skipped: FFmpeg conceals damage
    from the last decoded picture, skipped or not, so a damaged file is decoded whole."""


class _DecoderProblem(Exception):
    """A backend returned something it should not have (malformed frames, a skip failure)."""


class _PyAVSource:
    """Reads frames with PyAV: seek to the keyframe before a target, decode forward, match by pts.

    Holds no frames between reads: each decoded frame goes straight to the caller's `store`.
    """

    name = "pyav"

    def __init__(self, path: Path, index: StreamIndex, size_hw: tuple[int, int] | None):
        self.path = path
        self.index = index
        self.size_hw = size_hw  # decode size before rotation, or None for the coded size
        # Sorted arrays, not dicts: 9 bytes per frame of a long video instead of about 100.
        self.keyframe_positions = np.flatnonzero(index.keyframe)
        if len(self.keyframe_positions) == 0:
            self.keyframe_positions = np.zeros(1, np.int64)
        try:
            self.container = av.open(str(path), metadata_errors="ignore")
        except av.FFmpegError as err:
            raise _fail(path, f"cannot reopen the file (FFmpeg: {_ffmpeg_message(err)})") from None
        self.stream = self.container.streams[index.stream_index]
        self.stream.thread_type = PYAV_THREAD_TYPE
        self.concealed: set[int] = set()
        self.match_by_pts = True
        # Frames the current read wants (a boolean per frame index), for skipping unwanted non-reference
        # frames; None where they are not skipped: other codecs, and containers whose packets do not carry
        # presentation timestamps (an AVI's are in decode order; a packet's must name the frame it holds).
        skip_nonref = (index.codec in SKIP_NONREF_CODECS and os.environ.get("VSWIN_SKIP_NONREF", "1") != "0"
                       and any(name in index.container_format for name in ("mp4", "matroska")))
        self._wanted = np.zeros(len(index.pts), bool) if skip_nonref else None
        self._frames = None  # the decode generator, kept between reads (None: seek first)
        self._last: int | None = None  # index of the last frame it yielded

    def close(self) -> None:
        self._frames = None
        self.container.close()

    def _to_rgb(self, frame) -> np.ndarray:
        if self.size_hw is None:
            return frame.to_ndarray(format="rgb24")
        height, width = self.size_hw
        return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")

    def _frame_at_pts(self, pts: int) -> int | None:
        """Index of the frame with this pts (the last one if several share it), or None."""
        pos = int(np.searchsorted(self.index.pts, pts, side="right")) - 1
        return pos if pos >= 0 and self.index.pts[pos] == pts else None

    def _keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before `frame` (where a seek lands)."""
        pos = int(np.searchsorted(self.keyframe_positions, frame, side="right")) - 1
        return int(self.keyframe_positions[max(pos, 0)])

    def _seek(self, frame: int) -> None:
        self.container.seek(int(self.index.pts[frame]), stream=self.stream, backward=True, any_frame=False)

    def read_sorted(self, wanted: np.ndarray, store) -> set[int]:
        """Decode the frames `wanted` (ascending, unique); call `store(position, uint8 (h, w, 3))` for
        each, unrotated. Returns the positions of `wanted` that decoded (the rest are concealed by the
        caller).

        The decoder's position is kept between calls: a read that starts a little after where the last
        one stopped (consecutive chunks of a video) goes on decoding instead of seeking back to a
        keyframe and decoding the same frames again.
        """
        try:
            while True:  # each retry turns one thing off for good, so this ends after three passes at most
                try:
                    found = self._read_pass(wanted, store)
                except _UnreliablePts:
                    self.match_by_pts = False
                except _SkippingUnsafe:
                    self._wanted = None
                else:
                    if self._wanted is None or len(found) == len(wanted):
                        break
                    self._wanted = None  # a wanted frame went missing while skipping: never skip again here
                self._frames = None
        except BaseException:
            self._frames = None  # the decoder's position is unknown after a failure
            raise
        if not found:
            raise _fail(self.path, "none of the requested frames could be decoded")
        return found

    def _start_at(self, keyframe: int | None) -> None:
        """Seek to frame `keyframe` (None: the start of the file) and start a new decode generator."""
        if keyframe is None:
            self.container.seek(0)
        else:
            self._seek(keyframe)
        self._frames = self._decode_from_here(keyframe or 0)
        self._last = None

    def _read_pass(self, wanted: np.ndarray, store) -> set[int]:
        if self._wanted is not None:
            # Frames after the last one asked for may be the next read's (the decoder runs ahead of its
            # output by a few packets): never skipped.
            self._wanted[:] = False
            self._wanted[wanted] = True
            self._wanted[int(wanted[-1]):] = True
        found: set[int] = set()
        position = 0  # next entry of `wanted` to fill
        sequential = False  # set once a seek proved unreliable: decode straight through from the start
        while position < len(wanted):
            target = int(wanted[position])
            keyframe = self._keyframe_before(target)
            last = self._last  # index of the last decoded frame; None when the decoder position is unknown
            just_seeked = False
            if self._frames is None or (not sequential and (last is None or keyframe > last + SEEK_MIN_SKIP
                                                            or last >= target)):
                self._start_at(keyframe)
                just_seeked = True
            overshot = False
            # Resumes the generator where the previous loop (or read) left it: frames already decoded
            # from the last packet are not lost.
            for index, frame in self._frames:
                if just_seeked and index > target:
                    overshot = True  # the container index was inexact: the seek landed past the target
                    break
                just_seeked = False
                self._last = index
                while position < len(wanted) and int(wanted[position]) < index:
                    position += 1  # that frame did not decode; it is concealed by the caller
                if position < len(wanted) and int(wanted[position]) == index:
                    store(position, self._to_rgb(frame))
                    found.add(position)
                    position += 1
                if position == len(wanted):
                    break
                if not sequential and self._keyframe_before(int(wanted[position])) > index + SEEK_MIN_SKIP:
                    break  # seeking is cheaper than decoding up to the next wanted frame (same test as above)
            else:
                self._frames = None  # end of stream: whatever is still wanted did not decode
                break
            if overshot:
                self._start_at(None)
                sequential = True
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
        codec = self.stream.codec_context
        codec.skip_frame, skipping = "DEFAULT", False  # a previous generator may have left it skipping
        for packet in self.container.demux(self.stream):
            if self._wanted is not None:
                # An unwanted frame that no other frame refers to is not decoded at all (up to half of an
                # x264 file with B-frame pyramids at the default frame interval, little where B-frames are
                # few). Only while frames are matched by pts: counting frames needs every one of them.
                index = self._frame_at_pts(packet.pts) if packet.pts is not None and self.match_by_pts else None
                skip = index is not None and not self._wanted[index]
                if skip != skipping:
                    codec.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            try:
                frames = packet.decode()
            except av.FFmpegError:
                if self._wanted is not None:
                    raise _SkippingUnsafe() from None
                continue
            for frame in frames:
                count += 1
                if self.match_by_pts:
                    index = self._frame_at_pts(frame.pts) if frame.pts is not None else None
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


def decord_version() -> str | None:
    """The installed decord module's version, or None when decord cannot be imported."""
    try:
        import decord
    except Exception:  # an import that crashes in native code surfaces as many types
        return None
    return getattr(decord, "__version__", "unknown")


# decord2's warning when it cannot seek exactly (seen on long files): the frames it then returns may not
# be the ones asked for.
_DECORD_SKIP_FAILURE = ("Failed to skip frames", "Aborting skip operation")


class _DecordSource:
    """Reads frames with decord (already rotated by decord); ascending access only.

    Frames are fetched in small batches (`DECORD_BATCH_BYTES` of full-size frames at most) and handed to
    `store` one by one, so memory does not grow with the number of frames asked for. decord's native
    log (its own C++ warnings and its FFmpeg's) is captured around every call: shown with
    `set_decoder_logging(True)`, and a skip failure raises `_DecoderProblem`.
    """

    name = "decord"

    def __init__(self, path: Path, size_hw: tuple[int, int] | None, frame_bytes: int):
        import decord

        _apply_decord_logging(decord)
        kwargs = {}
        if size_hw is not None:
            kwargs = {"height": size_hw[0], "width": size_hw[1]}
        self.batch = max(1, min(16, DECORD_BATCH_BYTES // max(1, frame_bytes)))
        with _native_stderr() as captured:
            self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0), **kwargs)
        _check_decord_log(captured)

    def close(self) -> None:
        self.reader = None

    def read_sorted(self, wanted: np.ndarray, store) -> set[int]:
        for start in range(0, len(wanted), self.batch):
            with _native_stderr() as captured:
                frames = self.reader.get_batch(wanted[start:start + self.batch].tolist()).asnumpy()
            _check_decord_log(captured)
            for offset, frame in enumerate(frames):
                store(start + offset, frame)
            del frames
        return set(range(len(wanted)))


def _check_decord_log(captured: list[str]) -> None:
    text = "".join(captured)
    if not text:
        return
    if _decoder_logging_verbose():
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
    for line in text.splitlines():
        if any(marker in line for marker in _DECORD_SKIP_FAILURE):
            raise _DecoderProblem(f"decord could not seek exactly ({line.strip()[-120:]})")


@contextmanager
def _native_stderr():
    """Capture what native code writes to file descriptor 2 during the block (a list of one string).

    decord writes its warnings with C++ streams, which Python's `sys.stderr` never sees; this is the
    only way to hear them. Where fd 2 cannot be redirected, nothing is captured.
    """
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read(1 << 16).decode("utf-8", "replace"))


_VERBOSE_ENV = "VSWIN_DECODER_LOG"  # "1": decoders' own log lines shown (inherited by worker processes)
_logging_applied: bool | None = None  # the setting last applied to FFmpeg in this process


def set_decoder_logging(verbose: bool) -> None:
    """Show (True) or silence (False, the default) FFmpeg's and decord's own log lines on stderr.

    FFmpeg (through PyAV) and decord print warnings such as `[h264 @ 0x...] Invalid NAL unit size`
    for damaged files; vswin reports what matters itself (`VideoDecodeError`, concealed frames), so
    these are hidden unless asked for (the CLI's `-v`). The choice is also put in the environment
    (`VSWIN_DECODER_LOG`), so decode worker processes started afterwards follow it.

    Args:
        verbose: True shows FFmpeg's warnings and errors (PyAV's through Python logging, loggers
            "libav.*"; decord's on stderr) and decord's own messages; False hides them.
    """
    global _logging_applied
    os.environ[_VERBOSE_ENV] = "1" if verbose else "0"
    # PyAV swallows FFmpeg's log by default (level None); at WARNING it sends FFmpeg's lines to Python's
    # logging (loggers "libav.<codec>"), which the CLI shows at -v.
    av.logging.set_level(av.logging.WARNING if verbose else None)
    if "decord" in sys.modules:
        _apply_decord_logging(sys.modules["decord"])
    _logging_applied = verbose


def _decoder_logging_verbose() -> bool:
    return os.environ.get(_VERBOSE_ENV) == "1"


def _ensure_decoder_logging() -> None:
    """Apply the setting (default: quiet) once per process, e.g. in a freshly spawned worker."""
    if _logging_applied != _decoder_logging_verbose():
        set_decoder_logging(_decoder_logging_verbose())


def _apply_decord_logging(decord) -> None:
    try:
        decord.logging.set_level(decord.logging.WARNING if _decoder_logging_verbose() else decord.logging.QUIET)
    except Exception:  # an old or odd build without the logging module: its lines are captured anyway
        pass


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


def _auto_uses_decord(index: StreamIndex) -> bool:
    """Whether backend "auto" reads this file with decord (PyAV otherwise).

    PyAV, except in one case. Measured on 360p/720p/1080p H.264 and on long files (docs/benchmarks.md,
    decode section), PyAV delivers as many or more frames per CPU second with much less memory, its cost
    per frame does not grow with the file's length, and on 8-bit video both give the official pixels (the
    golden pipeline tests). decord 0.x (the authors' build) converts 10-bit video to 8 bits exactly as the
    published pipeline did, where FFmpeg differs by a few grey levels, so short high-bit-depth files
    go to decord 0.x when it is installed; long ones never do (decord mis-seeks on long files).
    """
    version = decord_version()
    if version is None or not version.startswith("0."):
        return False
    return _high_bit_depth(index.pix_fmt) and len(index.pts) <= DECORD_AUTO_MAX_FRAMES


def _high_bit_depth(pix_fmt: str) -> bool:
    """More than 8 bits per component, from FFmpeg's pixel format name (yuv420p10le, p010le, gray12, ...)."""
    return any(tag in pix_fmt for tag in ("p9", "p10", "p12", "p14", "p16", "p010", "p016", "gray1"))


class VideoReader:
    """An open video: metadata plus `read(indices, resize_short=None)`. Create with `open_video`.

    Attributes:
        path: the file.
        backend: "decord" or "pyav" (the one in use; "auto" falls back to "pyav" on decord errors).
        stream_index: container index of the video stream read (FFmpeg's best video stream).
        num_frames: frame count N; valid indices are 0..N-1.
        fps: average frame rate.
        duration: seconds from the first frame's start to the last frame's end.
        height, width: size of the frames `read` returns (display orientation, after rotation) when
            no `resize_short` is given.
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
        self.fps = index.fps or (1.0 / frame_step(self.timestamps) if self.num_frames > 1 else 0.0)
        self.duration = float(self.timestamps[-1] - self.timestamps[0]) + frame_step(self.timestamps, self.fps)
        self.rotation = index.rotation
        self._rot90_k = index.rotation // 90  # numpy.rot90 turns counter-clockwise, as the display matrix does
        raw_h, raw_w = index.raw_height, index.raw_width
        if short_side is not None:
            raw_h, raw_w = resized_size(raw_h, raw_w, short_side)
        self._raw_size = (raw_h, raw_w) if short_side is not None else None
        self._decoded_hw = (raw_h, raw_w)  # what the decoder gives, before rotation
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
        if problem is None and backend == "auto" and not _auto_uses_decord(self._index):
            problem = "auto prefers PyAV"
        if problem is None or backend == "decord":
            try:
                return _DecordSource(self.path, self._raw_size, self.height * self.width * 3)
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

    def frame_size(self, resize_short: int | None = None) -> tuple[int, int]:
        """(height, width) of the frames `read(..., resize_short=resize_short)` returns."""
        if resize_short is None:
            return self.height, self.width
        return resized_size(self.height, self.width, resize_short)

    def output_bytes(self, num_frames: int, resize_short: int | None = None) -> int:
        """Bytes of the array `read` returns for `num_frames` indices."""
        height, width = self.frame_size(resize_short)
        return num_frames * height * width * 3

    def max_frames_for(self, resize_short: int | None = None, budget_bytes: int | None = None) -> int:
        """How many frames one `read` may ask for to stay within `budget_bytes` (at least 1).

        The budget covers the returned frames; decoding adds about one full-size frame (plus FFmpeg's
        own buffers) on top, whatever the number of frames.

        Args:
            resize_short: as for `read`.
            budget_bytes: default `DECODE_MEMORY_BUDGET`.
        """
        budget = DECODE_MEMORY_BUDGET if budget_bytes is None else budget_bytes
        return max(1, budget // self.output_bytes(1, resize_short))

    def read(self, indices, resize_short: int | None = None) -> np.ndarray:
        """Frames at `indices`, in the order asked (repeats allowed), optionally resized as decoded.

        Distinct frames are decoded once each, in ascending order (decord returns wrong frames on some
        backward seeks), then put back in the order asked. With `resize_short`, each frame is rotated
        and resized (`transforms.resize_short_side`, the official OpenCV bilinear) right after it is
        decoded, so no more than one full-size frame is held at a time; the result is bit-identical to
        `resize_short_side(reader.read(indices), resize_short)`.

        Args:
            indices: ints in 0..num_frames-1, any order, any shape (flattened).
            resize_short: short side of the returned frames (Resize(scale=(-1, resize_short))), or None
                for the decoded size.

        Returns:
            uint8 (T, h, w, 3) RGB, T = number of indices, (h, w) = `frame_size(resize_short)`.

        Raises:
            IndexError: an index outside 0..num_frames-1.
            VideoDecodeError: the frames cannot be decoded.
        """
        if self._source is None:
            raise ValueError("read from a closed VideoReader")
        if resize_short is not None and (isinstance(resize_short, bool) or int(resize_short) < 1):
            raise ValueError(f"resize_short must be a positive number of pixels, got {resize_short!r}")
        flat = np.asarray(indices).reshape(-1)
        if flat.size == 0:
            return np.empty((0, *self.frame_size(resize_short), 3), np.uint8)
        if not np.issubdtype(flat.dtype, np.integer):
            raise TypeError(f"frame indices must be integers, got {flat.dtype}")
        if flat.min() < 0 or flat.max() >= self.num_frames:
            raise IndexError(f"frame index out of range 0..{self.num_frames - 1}: {flat.min()}..{flat.max()}")
        _ensure_decoder_logging()
        wanted, inverse = np.unique(flat, return_inverse=True)
        frames = self._read_sorted(wanted, resize_short)
        if len(wanted) == len(flat) and np.array_equal(wanted, flat):
            return frames  # already in the order asked: no second copy
        return frames[inverse.reshape(-1)]

    def _read_sorted(self, wanted: np.ndarray, resize_short: int | None) -> np.ndarray:
        out = np.empty((len(wanted), *self.frame_size(resize_short), 3), np.uint8)
        while True:
            try:
                found = self._source.read_sorted(wanted, self._store_into(out, resize_short))
                break
            except VideoDecodeError:
                raise
            except Exception as err:
                if isinstance(err, _DecoderProblem):
                    problem = str(err)
                elif self._source.name == "decord":
                    problem = f"decord failed ({_short(err)})"
                else:
                    raise _fail(self.path, f"decoding failed ({_short(err)})") from None
            if not self._auto or self._source.name != "decord":
                raise _fail(self.path, problem, "try --backend pyav" if self._source.name == "decord" else None)
            log.info("%s: %s; switching to PyAV", self.path, problem)
            self._source.close()
            self._source = _PyAVSource(self.path, self._index, self._raw_size)
            self.backend = "pyav"
        if len(found) < len(wanted):
            self._conceal(out, wanted, found)
        return out

    def _store_into(self, out: np.ndarray, resize_short: int | None):
        """A `store(position, frame)` for the sources: check, rotate, resize, write into `out`."""
        rotate = self._source.name != "decord" and self._rot90_k != 0  # decord rotates itself
        height, width = self._decoded_hw
        if self._source.name == "decord" and self._rot90_k % 2:
            height, width = width, height
        expected = (height, width, 3)
        resize = None
        if resize_short is not None and out.shape[1:3] != (self.height, self.width):
            from vswin_cli.transforms import resize_frame_into  # torch only when resizing

            resize = resize_frame_into

        def store(position: int, frame: np.ndarray) -> None:
            if frame.shape != expected or frame.dtype != np.uint8:
                raise _DecoderProblem(f"decoder returned malformed frames {frame.shape} {frame.dtype} "
                                      f"(expected {expected})")
            if rotate:
                frame = np.rot90(frame, self._rot90_k)  # (h, w, 3) counter-clockwise, a view
            if resize is not None:
                resize(np.ascontiguousarray(frame), out[position])  # (H, W, 3) -> (h', w', 3) in place
            else:
                out[position] = frame

        return store

    def _conceal(self, out: np.ndarray, wanted: np.ndarray, found: set[int]) -> None:
        """Frames that failed to decode take the nearest decoded one (earlier first), like a player."""
        have = sorted(found)
        concealed = getattr(self._source, "concealed", set())
        for position in range(len(wanted)):
            if position in found:
                continue
            pos = bisect.bisect_right(have, position) - 1
            out[position] = out[have[pos] if pos >= 0 else have[0]]
            concealed.add(int(wanted[position]))
        log.warning("%s: %d frame(s) could not be decoded and were replaced by the nearest decoded frame",
                    self.path, len(concealed))


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    last = text[-1] if text else type(err).__name__
    return last[-160:]


def open_video(path: str | os.PathLike, backend: str = "auto", short_side: int | None = None) -> VideoReader:
    """Open a video for reading frames by index.

    Args:
        path: the video file.
        backend: "auto" (PyAV, see `_auto_uses_decord`), "decord" (the
            official decoder, no fallback) or "pyav".
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
    _ensure_decoder_logging()
    path = Path(path)
    index = probe_video(path)
    return VideoReader(path, index, backend, short_side)
