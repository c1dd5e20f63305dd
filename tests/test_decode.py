"""open_video on videos generated here (frame-index barcodes), hostile files, and backend selection."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from test_video_helpers import read_barcode, sequential_frames_by_pts, write_audio_only, write_barcode_video
from vswin_cli import decode
from vswin_cli.decode import open_video
from vswin_cli.errors import ConfigError, VideoDecodeError, VswinError

HAVE_DECORD = decode.decord_version() is not None
BACKENDS = ["pyav"] + (["decord"] if HAVE_DECORD else [])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Generated once per module: constant rate with B-frames, VFR, MPEG-TS with a non-zero start."""
    root = tmp_path_factory.mktemp("videos")
    vfr_pts = np.cumsum([0] + [1 if i % 3 else 3 for i in range(1, 60)]).tolist()  # irregular steps
    return {
        "cfr": write_barcode_video(root / "cfr.mp4", 150, gop=10),
        "vfr": write_barcode_video(root / "vfr.mp4", 60, pts=vfr_pts, time_base=Fraction(1, 30)),
        "ts": write_barcode_video(root / "start.ts", 50, container_format="mpegts", pts=list(range(50, 100)),
                                  time_base=Fraction(1, 25)),
        "mkv": write_barcode_video(root / "vp9.mkv", 40, codec="libvpx-vp9"),
        "root": root,
    }


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_reads_the_frames_asked_in_the_order_asked(videos, backend):
    indices = np.array([140, 3, 3, 77, 0, 149, 12, 13, 76, 141])  # backwards, repeats, across keyframes
    with open_video(videos["cfr"], backend=backend) as reader:
        assert reader.num_frames == 150 and (reader.height, reader.width) == (64, 128)
        assert reader.backend == (backend if backend != "auto" else reader.backend)
        frames = reader.read(indices)
        assert frames.shape == (10, 64, 128, 3) and frames.dtype == np.uint8
        assert [read_barcode(f) for f in frames] == indices.tolist()
        assert [read_barcode(f) for f in reader.read(np.arange(150))] == list(range(150))


def test_reader_metadata(videos):
    with open_video(videos["cfr"]) as reader:
        assert reader.fps == pytest.approx(25.0)
        assert reader.timestamps == pytest.approx(np.arange(150) / 25.0)
        assert reader.duration == pytest.approx(6.0)
        assert reader.rotation == 0 and reader.stream_index == 0 and len(reader) == 150


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_timestamps(videos, backend):
    with open_video(videos["vfr"], backend=backend) as reader:
        expected = np.cumsum([0] + [1 if i % 3 else 3 for i in range(1, 60)]) / 30.0
        assert reader.num_frames == 60
        assert reader.timestamps == pytest.approx(expected)
        picks = np.array([59, 30, 1, 2])
        assert [read_barcode(f) for f in reader.read(picks)] == picks.tolist()


def test_mpegts_with_start_offset_uses_pyav(videos):
    """decord returns frame i+offset in such files; auto must choose PyAV and get the frames right."""
    with open_video(videos["ts"]) as reader:
        assert reader.backend == "pyav"
        assert reader.timestamps[0] == pytest.approx(2.0)  # the file's own clock, first frame at 2 s
        assert reader.num_frames == 50
        picks = np.array([0, 1, 25, 49, 48])
        assert [read_barcode(f) for f in reader.read(picks)] == picks.tolist()


def test_vp9_in_matroska(videos):
    with open_video(videos["mkv"], backend="pyav") as reader:
        assert [read_barcode(f) for f in reader.read(np.array([39, 0, 20]))] == [39, 0, 20]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduced_resolution_decode(videos, backend):
    with open_video(videos["cfr"], backend=backend, short_side=32) as reader:
        assert (reader.height, reader.width) == (32, 64)
        frames = reader.read(np.array([5, 100]))
        assert frames.shape == (2, 32, 64, 3)
        assert [read_barcode(f, cell=4) for f in frames] == [5, 100]


def test_auto_without_decord_uses_pyav(videos, monkeypatch):
    monkeypatch.setattr(decode, "decord_version", lambda: None)
    with open_video(videos["cfr"]) as reader:
        assert reader.backend == "pyav"
        assert read_barcode(reader.read([42])[0]) == 42
    with pytest.raises(ConfigError):
        open_video(videos["cfr"], backend="decord")


def test_decord_failure_while_reading_falls_back_to_pyav(videos, monkeypatch):
    if not HAVE_DECORD:
        pytest.skip("decord is not installed (CI installs it)")

    def broken(self, wanted, store):
        raise RuntimeError("DECORDError: simulated")

    monkeypatch.setattr(decode, "_auto_uses_decord", lambda index: True)
    monkeypatch.setattr(decode._DecordSource, "read_sorted", broken)
    with open_video(videos["cfr"]) as reader:
        assert reader.backend == "decord"
        assert read_barcode(reader.read([7])[0]) == 7
        assert reader.backend == "pyav"
    with open_video(videos["cfr"], backend="decord") as reader, pytest.raises(VideoDecodeError):
        reader.read([7])


def test_bad_indices_and_arguments(videos):
    with open_video(videos["cfr"]) as reader:
        with pytest.raises(IndexError):
            reader.read([150])
        with pytest.raises(IndexError):
            reader.read([-1])
        with pytest.raises(TypeError):
            reader.read([1.5])
        assert reader.read([]).shape == (0, 64, 128, 3)
    with pytest.raises(ConfigError):
        open_video(videos["cfr"], backend="opencv")


def _hostile_files(root):
    files = {}
    files["empty.mp4"] = root / "empty.mp4"
    files["empty.mp4"].write_bytes(b"")
    files["random.mp4"] = root / "random.mp4"
    files["random.mp4"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["page.mp4"] = root / "page.mp4"
    files["page.mp4"].write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n" * 20)
    files["audio.m4a"] = write_audio_only(root / "audio.m4a")
    full = write_barcode_video(root / "whole.mp4", 60).read_bytes()
    files["truncated.mp4"] = root / "truncated.mp4"
    files["truncated.mp4"].write_bytes(full[: len(full) // 3])  # moov is at the end: no index
    files["missing.mp4"] = root / "does-not-exist.mp4"
    files["folder.mp4"] = root / "folder.mp4"
    files["folder.mp4"].mkdir()
    return files


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_hostile_files_give_one_clear_error(tmp_path, backend):
    for name, path in _hostile_files(tmp_path).items():
        with pytest.raises(VideoDecodeError) as info:
            with open_video(path, backend=backend) as reader:
                reader.read([0])
        assert isinstance(info.value, VswinError)
        assert str(path) in str(info.value) and info.value.reason, name
    assert "no video stream" in _error(tmp_path / "audio.m4a")
    assert "empty" in _error(tmp_path / "empty.mp4")
    assert "not found" in _error(tmp_path / "does-not-exist.mp4")


def test_oversized_frames_are_refused(videos, monkeypatch):
    monkeypatch.setattr(decode, "MAX_FRAME_PIXELS", 64 * 64)
    with pytest.raises(VideoDecodeError, match="too large"):
        open_video(videos["cfr"])


def _error(path):
    with pytest.raises(VideoDecodeError) as info:
        open_video(path)
    return info.value.reason


def test_damaged_mid_stream_decodes_what_it_can(tmp_path):
    """Garbage over part of the frame data: every frame index still returns a frame; those that decode
    agree with a sequential PyAV decode, the others are concealed and listed."""
    data = bytearray(write_barcode_video(tmp_path / "ok.mp4", 90, gop=30).read_bytes())
    start = len(data) // 2
    data[start:start + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    reference = sequential_frames_by_pts(damaged, 0)
    with open_video(damaged) as reader:
        frames = reader.read(np.arange(reader.num_frames))
        assert frames.shape[0] == reader.num_frames == 90
        assert reader.backend == "pyav" and reader.concealed_frames  # decord (if tried) gave up
        pts = np.round(reader.timestamps * 12800).astype(int)  # the stream's time base is 1/12800
        decoded = [i for i in range(90) if i not in reader.concealed_frames]
        assert len(decoded) >= 45 and read_barcode(frames[0]) == 0
        for i in decoded:
            assert np.array_equal(frames[i], reference[pts[i]]), i


def test_hostile_files_in_a_subprocess_never_crash_or_hang(tmp_path):
    """The whole hostile set (and the shared damaged files) through the public API, in a child process."""
    files = [str(p) for p in _hostile_files(tmp_path).values()]
    script = (
        "import sys\n"
        "from vswin_cli.video import sample_test_views\n"
        "from vswin_cli.errors import VideoDecodeError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        idx, views = sample_test_views(path, 'sthv2')\n"
        "        print('OK', views.shape[0], flush=True)\n"
        "    except VideoDecodeError as err:\n"
        "        print('ERR', err.reason, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, *files], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(files) and all(line.startswith("ERR ") for line in lines), lines


def test_auto_backend_choice(videos, monkeypatch):
    """auto = PyAV, except short high-bit-depth files when decord 0.x (the authors' 10->8 bit conversion)
    is installed; never decord2, never a long file."""
    index = decode.probe_video(videos["cfr"])
    assert index.pix_fmt == "yuv420p"
    ten_bit = dataclasses.replace(index, pix_fmt="yuv420p10le")
    long_ten_bit = dataclasses.replace(ten_bit, pts=np.arange(decode.DECORD_AUTO_MAX_FRAMES + 1))
    for version, expected in [("0.6.0", (False, True, False)), ("3.4.0", (False, False, False)),
                              (None, (False, False, False))]:
        monkeypatch.setattr(decode, "decord_version", lambda v=version: v)
        assert tuple(decode._auto_uses_decord(i) for i in (index, ten_bit, long_ten_bit)) == expected, version
    assert decode._high_bit_depth("p010le") and decode._high_bit_depth("gray12le")
    assert not decode._high_bit_depth("yuvj420p") and not decode._high_bit_depth("rgb24")


def test_set_decoder_logging_is_inherited_by_workers(monkeypatch):
    monkeypatch.delenv("VSWIN_DECODER_LOG", raising=False)
    try:
        decode.set_decoder_logging(True)
        assert os.environ["VSWIN_DECODER_LOG"] == "1" and decode._decoder_logging_verbose()
        decode.set_decoder_logging(False)
        assert os.environ["VSWIN_DECODER_LOG"] == "0" and not decode._decoder_logging_verbose()
    finally:
        decode.set_decoder_logging(False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ffmpeg_log_lines_silenced_by_default(tmp_path, backend):
    """A damaged file through the public API in a fresh process: none of FFmpeg's own lines ("Invalid NAL
    unit size", decord's "[h264 @ 0x...]") on stderr by default; with set_decoder_logging(True) they show."""
    data = bytearray(write_barcode_video(tmp_path / "ok.mp4", 90, gop=30).read_bytes())
    start = len(data) // 2
    data[start:start + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    script = (
        "import sys, numpy as np\n"
        "from vswin_cli import decode\n"
        "if sys.argv[3] == '1': decode.set_decoder_logging(True)\n"
        "try:\n"
        "    with decode.open_video(sys.argv[1], backend=sys.argv[2]) as r: r.read(np.arange(r.num_frames))\n"
        "except decode.VideoDecodeError as err:\n"
        "    print('ERR', err.reason)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("VSWIN_DECODER_LOG", None)
    stderr = {}
    for verbose in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", script, str(damaged), backend, verbose], capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        stderr[verbose] = done.stderr
    assert "NAL unit" not in stderr["0"] and "[h264 @" not in stderr["0"], stderr["0"][-500:]
    assert "NAL unit" in stderr["1"]


def test_consecutive_reads_continue_decoding_without_seeking(videos, monkeypatch):
    """Chunks read one after another (as `vswin tag` reads a long video) continue from where the decoder
    stopped: one seek for the whole file instead of one per read (each re-decoding from a keyframe), and
    no frame lost at chunk edges, including the B-frames flushed at the end of the stream."""
    seeks = []
    original = decode._PyAVSource._seek
    monkeypatch.setattr(decode._PyAVSource, "_seek", lambda self, frame: (seeks.append(frame), original(self, frame)))
    with open_video(videos["cfr"], backend="pyav") as reader:
        got = []
        for start in range(0, 150, 7):
            got += [read_barcode(f) for f in reader.read(np.arange(start, min(start + 7, 150)))]
        assert got == list(range(150)) and not reader.concealed_frames
        assert seeks == [0]
        assert read_barcode(reader.read([3])[0]) == 3 and seeks == [0, 0]  # backwards: seeks again
        assert [read_barcode(f) for f in reader.read([60, 148, 149])] == [60, 148, 149]


def _read_counting(path, reads, skip: bool):
    """(frames of each read, frames the decoder produced) with non-reference skipping on or off."""
    with open_video(path, backend="pyav") as reader:
        source = reader._source
        if not skip:
            source._wanted = None
        decoded = []
        produce = source._decode_from_here

        def counting(anchor):
            for item in produce(anchor):
                decoded.append(item[0])
                yield item

        source._decode_from_here = counting
        return [reader.read(np.asarray(r)) for r in reads], len(decoded)


@pytest.mark.parametrize("reads", [
    [np.arange(0, 150, 2)],  # the tag pattern: every 2nd frame
    [np.arange(0, 60, 2), np.arange(61, 80, 2), np.arange(80, 150, 3)],  # the next read wants what the last passed by
    [np.arange(1, 150, 2), np.array([0, 1, 2, 3])],  # odd frames, then back to the start (a seek)
])
def test_unwanted_non_reference_frames_are_skipped_without_changing_a_pixel(videos, reads):
    """H.264 B-frames that no frame refers to are not decoded when not wanted; the frames returned are
    byte for byte those of a full decode, including frames the next read wants just after the last one."""
    path = videos["root"] / "bframes.mp4"
    if not path.exists():  # B-frames as x264's usual presets make them, a pyramid (some B-frames are references)
        write_barcode_video(path, 150, gop=30, options={"preset": "veryfast", "crf": "12",
                                                         "x264-params": "bframes=3:b-pyramid=normal"})
    skipped, decoded_skipping = _read_counting(path, reads, skip=True)
    full, decoded_full = _read_counting(path, reads, skip=False)
    for a, b, wanted in zip(skipped, full, reads):
        assert np.array_equal(a, b)
        assert [read_barcode(f) for f in a] == list(wanted)
    if reads[0][0] == 0:
        assert decoded_skipping < 0.9 * decoded_full  # unwanted non-reference B-frames were not decoded


@pytest.mark.parametrize("name", [
    "videos/bikes.mp4", "videos/chaplin.mp4", "videos/demo.mp4", "videos/cockatoo.mp4", "videos/h264_10bit.mp4",
    # Damaged files: FFmpeg conceals a broken frame from the last decoded picture, skipped or not, so a
    # decode error turns skipping off and the read is done again (both gave other pixels before).
    "videos/corrupt_mid_mdat.mp4", "videos-extra/corrupted.mp4",
    # H.264 in AVI: packets carry decode order, not the frame they hold (21 frames went missing before).
    "videos-extra/S001C001P001R001A001_rgb.avi",
])
def test_skipping_non_reference_frames_is_exact_on_real_h264(name):
    from conftest import shared_path

    path = shared_path(*name.split("/"))
    with open_video(path, backend="pyav") as reader:
        n = reader.num_frames
    reads = [np.arange(0, n, 2)[i:i + 64] for i in range(0, (n + 1) // 2, 64)]  # tag-sized chunks
    skipped, _ = _read_counting(path, reads, skip=True)
    full, _ = _read_counting(path, reads, skip=False)
    assert all(np.array_equal(a, b) for a, b in zip(skipped, full))
