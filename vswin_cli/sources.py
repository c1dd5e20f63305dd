"""What each input of `vswin tag` is: a file or folder (`inputs.find_videos`), a remote file, a live stream.

An input that names a URL keeps its string as given (a `pathlib.Path` would turn `rtsp://cam/1` into
`rtsp:/cam/1`), and that string is the `video` key of its records. Kinds:

- `remote`: `http://`, `https://` (and `ftp://`): a file on a server. Read once, front to back, and
  tagged like the downloaded file (same records, the file's own clock).
- `live`: `rtsp://`, `rtmp://`, `srt://`, `udp://`, `tcp://`, `pipe:0` (a stream on standard input)
  and capture devices (`/dev/video*`, FFmpeg's v4l2). Timestamps count from the stream's first frame;
  segments are planned as frames arrive (`vswin_cli.live`).

`-` keeps its meaning from before: a list of paths on standard input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from vswin_cli.errors import UsageError
from vswin_cli.inputs import VideoInput, find_videos

REMOTE_SCHEMES = ("http", "https", "ftp")
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp")
STDIN_STREAM = "pipe:0"
LIVE_POLICIES = ("keep", "skip")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CAPTURE_DEVICE = re.compile(r"^/dev/video\d+$")


@dataclass(frozen=True)
class StreamInput:
    """One URL, pipe or capture device to tag, read front to back by `vswin_cli.live`.

    Attributes:
        url: the input exactly as given (FFmpeg opens it).
        key: its name in the records (the URL as given).
        kind: "remote" (a file on a server) or "live" (a stream that is still being produced).
        policy: when the model falls behind a live stream: "keep" every segment (a bounded queue; the
            stream backs up) or "skip" segments to stay live. Remote files always keep.
        reconnect: reopen a network stream that drops, with backoff (`live.RECONNECT_DELAYS_S`).
        queue_segments: segments waiting for the model at most (the bound on memory and lag).
    """

    url: str
    key: str
    kind: str
    policy: str = "keep"
    reconnect: bool = False
    queue_segments: int = 4

    @property
    def path(self) -> str:
        """The input as given (what error messages name, as they name a file's path)."""
        return self.url

    @property
    def format(self) -> str | None:
        """The FFmpeg demuxer to force, or None to let FFmpeg probe (v4l2 for capture devices)."""
        return "v4l2" if is_capture_device(self.url) else None

    @property
    def is_live(self) -> bool:
        return self.kind == "live"


Source = VideoInput | StreamInput


def url_scheme(text: str) -> str | None:
    """The lower-case scheme of a URL (`rtsp`), or None when `text` is not a URL."""
    match = _URL.match(text)
    return match.group(1).lower() if match else None


def is_capture_device(text: str) -> bool:
    return bool(_CAPTURE_DEVICE.match(text))


def stream_kind(text: str) -> str | None:
    """"remote", "live", or None for a file or folder path."""
    scheme = url_scheme(text)
    if scheme in REMOTE_SCHEMES:
        return "remote"
    if scheme in LIVE_SCHEMES or text == STDIN_STREAM or is_capture_device(text):
        return "live"
    if scheme is not None and scheme != "file":
        raise UsageError(f"{text}: unknown kind of URL ({scheme}://)",
                         hint=f"vswin reads files, {', '.join(s + '://' for s in REMOTE_SCHEMES + LIVE_SCHEMES)}, "
                              f"{STDIN_STREAM} and /dev/videoN")
    if text.startswith("pipe:"):
        raise UsageError(f"{text}: only {STDIN_STREAM} (a stream on standard input) can be read",
                         hint="pipe the video into vswin and name pipe:0; `-` reads a list of paths instead")
    return None


def find_sources(inputs: Iterable[str], glob: str | None = None, policy: str = "keep", reconnect: bool = False,
                 queue_segments: int = 4, on_skip: Callable[[str, str], None] | None = None) -> list[Source]:
    """Classify the inputs: files and folders expanded (`inputs.find_videos`, first), then the streams in order.

    Args:
        inputs: paths, folders, URLs, `pipe:0`, capture devices.
        glob, on_skip: as `find_videos`.
        policy, reconnect, queue_segments: the live-stream settings (see `StreamInput`).

    Returns:
        `VideoInput` for files, `StreamInput` for the rest; keys unique.

    Raises:
        UsageError: an unknown URL scheme, `pipe:0` twice, a bad policy.
        ConfigError: as `find_videos` for the paths.
    """
    if policy not in LIVE_POLICIES:
        raise UsageError(f"--live-policy {policy}: must be one of {', '.join(LIVE_POLICIES)}")
    if queue_segments < 1:
        raise UsageError(f"--live-queue must be at least 1, got {queue_segments}")
    paths: list[str] = []
    streams: list[StreamInput] = []
    for text in (str(i) for i in inputs):
        kind = stream_kind(text)
        if kind is None:
            paths.append(text)
            continue
        if text == STDIN_STREAM and any(s.url == text for s in streams):
            raise UsageError(f"{STDIN_STREAM} given twice", hint="standard input holds one stream")
        streams.append(StreamInput(text, text, kind, policy if kind == "live" else "keep",
                                   reconnect and kind == "live" and url_scheme(text) is not None, queue_segments))
    # Files and folders first, expanded together as before (keys relative to a single folder); then the streams.
    found: list[Source] = [*(find_videos(paths, glob=glob, on_skip=on_skip) if paths else []), *streams]
    _check_unique(found)
    return found


def check_stdin_use(inputs: Sequence[str], stdin_is_terminal: bool) -> None:
    """`pipe:0` needs a stream on standard input: not a terminal, and not also `-` (a list of paths there).

    Raises:
        UsageError: either.
    """
    if STDIN_STREAM not in inputs:
        return
    if "-" in inputs:
        raise UsageError(f"`-` and {STDIN_STREAM} both read standard input",
                         hint="`-` reads a list of paths from it, pipe:0 a video stream: give one of them")
    if stdin_is_terminal:
        raise UsageError(f"{STDIN_STREAM} reads a video stream from standard input, which is a terminal",
                         hint="pipe a stream in, e.g. ffmpeg -i IN -c:v libx264 -f mpegts - | vswin tag pipe:0 ...")


def _check_unique(found: Sequence[Source]) -> None:
    keys: set[str] = set()
    for source in found:
        if source.key in keys:
            raise UsageError(f"{source.key!r} is given twice", hint="name each input once")
        keys.add(source.key)


def is_stream_key(key: str) -> bool:
    """Whether a record's `video` key names a URL, pipe or capture device (no file to read again)."""
    return url_scheme(key) is not None or key == STDIN_STREAM or is_capture_device(key)
