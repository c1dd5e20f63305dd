"""`vswin annotate`: labelled copies that decode, keep the input's frames, size, rate, timestamps and audio,
and differ from the input only inside the label box.

Codec noise is separated from drawing by encoding the same video with the same settings and no labels
(`top_k=0`): outside the label box the labelled copy must match that re-encode, inside it must not.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import shared_path
from report_helpers import make_video, tag, tiny_model_args
from vswin_cli.annotate import annotate_video, annotate_videos, output_path
from vswin_cli.app import app
from vswin_cli.decode import open_video
from vswin_cli.results import read_results


def decode(path: Path) -> tuple[np.ndarray, list[int], Fraction]:
    """All frames (N, H, W, 3) uint8, their pts, and the stream's average rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
        return np.stack([f for _, f in frames]), [p for p, _ in frames], stream.average_rate


def packets(path: Path, kind: str) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        if not getattr(container.streams, kind):
            return []
        stream = getattr(container.streams, kind)[0]
        return [(p.pts, p.size) for p in container.demux(stream) if p.size]


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    clips = root / "clips"
    make_video(clips / "talk.mp4", 100, fps=25, height=120, width=160, seed=4, audio=True)
    (clips / "broken.mp4").write_bytes(b"\x00" * 64)
    results = root / "tags.jsonl"
    result = tag([str(clips), *tiny_model_args(root / "model"), "--window", "1", "--top-k", "3", "-o", str(results)])
    assert result.exit_code == 1  # broken.mp4 has an error record
    return root, clips, results


def test_labelled_copy_keeps_frames_size_rate_and_audio(tagged, tmp_path):
    root, clips, results = tagged
    out = CliRunner().invoke(app, ["annotate", str(results), "--videos", str(clips), "-o", str(tmp_path / "out")])
    assert out.exit_code == 0, out.output
    assert "annotated 1 video(s); 0 failed, 1 error record(s) skipped" in out.stderr
    labelled = tmp_path / "out" / "talk.mp4"
    frames, pts, rate = decode(labelled)
    source_frames, source_pts, source_rate = decode(clips / "talk.mp4")
    assert frames.shape == source_frames.shape == (100, 120, 160, 3)
    assert rate == source_rate == 25
    assert [p - pts[0] for p in pts] == [p - source_pts[0] for p in source_pts]  # same timing
    with av.open(str(labelled)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
    assert packets(labelled, "audio") == packets(clips / "talk.mp4", "audio")  # copied, not re-encoded


def test_pixels_change_only_inside_the_label_box(tagged, tmp_path):
    root, clips, results = tagged
    video = next(v for v in read_results(results) if v.video == "talk.mp4")
    drawn = annotate_video(clips / "talk.mp4", video, tmp_path / "drawn.mp4", top_k=3)
    plain = annotate_video(clips / "talk.mp4", video, tmp_path / "plain.mp4", top_k=0)  # same encoder, no labels
    assert plain.box is None and drawn.box is not None
    x0, y0, x1, y1 = drawn.box
    assert (x0, y0) == (0, 0) and 0 < x1 < 160 and 0 < y1 < 120
    a, _, _ = decode(tmp_path / "drawn.mp4")
    b, _, _ = decode(tmp_path / "plain.mp4")
    source, _, _ = decode(clips / "talk.mp4")
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=-1)  # (N, H, W)
    inside = np.zeros(diff.shape[1:], bool)
    inside[y0:y1, x0:x1] = True
    assert diff[:, inside].mean() > 25  # the labels are there, in every frame
    assert (diff[:, inside].reshape(len(diff), -1).mean(axis=1) > 10).all()
    # Outside the box the two encodes differ by codec noise only (x264's rate control decides each frame
    # anew, so they are not bit-identical): no pixel there changes by much on average over the video,
    # and the labelled copy is as close to the source there as the plain re-encode is.
    near = np.zeros_like(inside)
    near[: y1 + 4, : x1 + 4] = True  # 4:2:0 chroma and the deblocking filter reach a few pixels past the edge
    assert diff.mean(axis=0)[~near].max() < 6 and diff[:, ~inside].mean() < 3
    noise = np.abs(b.astype(np.int16) - source.astype(np.int16)).mean(axis=-1)[:, ~inside].mean()
    error = np.abs(a.astype(np.int16) - source.astype(np.int16)).mean(axis=-1)[:, ~inside].mean()
    assert error < 1.2 * noise + 0.2 and diff[:, inside].mean() > 10 * noise


def test_current_segment_is_the_latest_started_and_patches_follow_the_labels():
    """Overlapping windows (stride < window): a frame shows the latest segment that started and has not ended."""
    from vswin_cli.annotate import _Overlays
    from vswin_cli.records import LabelScore, SegmentResult

    def seg(number, start, end, start_frame, end_frame, top):
        return SegmentResult("a.mp4", number, start, end, start_frame, end_frame, top, 1, "m")

    archery, bowling = LabelScore("archery", 0, 0.9), LabelScore("bowling", 1, 0.5)
    segs = [seg(0, 0.0, 2.0, 0, 50, (archery,)), seg(1, 1.0, 3.0, 25, 75, (bowling,)),
            seg(2, 2.0, 4.0, 50, 100, ()), seg(3, 5.0, 6.0, 125, 150, (archery,))]
    overlays = _Overlays(segs, 160, 120, top_k=2)
    current = [overlays.current(f) for f in range(150)]
    assert [c.segment if c else None for c in current[::25]] == [0, 1, 2, 2, None, 3]
    frames = np.full((150, 120, 160, 3), 200, np.uint8)
    overlays = _Overlays(segs, 160, 120, top_k=2)  # a fresh cursor: frames come once, in order
    for f in range(150):
        overlays.draw(frames[f], f)
    drawn = (frames != 200).any(axis=-1)  # (N, H, W)
    assert drawn[0].any() and drawn[30].any() and not drawn[60].any() and not drawn[110].any()  # no tag; a gap
    assert (frames[0] == frames[130]).all() and not (frames[0] == frames[30]).all()  # same labels, same patch
    cols, rows = drawn[[0, 30]].any(axis=(0, 1)).nonzero()[0], drawn[[0, 30]].any(axis=(0, 2)).nonzero()[0]
    assert overlays.box == (0, 0, cols[-1] + 1, rows[-1] + 1) and cols[0] == rows[0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rotated_90.mp4", "odd_33x17.mkv", "vfr.mp4", "test.avi", "corrupt_mid_mdat.mp4"])
def test_shared_videos_keep_display_size_and_frame_count(tmp_path, name):
    source = shared_path("videos", name)
    results = tmp_path / "tags.jsonl"
    result = tag([str(source), *tiny_model_args(tmp_path / "model"), "--top-k", "2", "--window", "1",
                  "-o", str(results)])
    assert result.exit_code == 0, result.output
    annotated = []
    summary = annotate_videos(results, tmp_path / "out", video_root=Path("/"),
                              on_video=lambda key, result, reason: annotated.append(result))
    assert summary.num_written == 1 and not summary.failures
    (labelled,) = (tmp_path / "out").rglob("*.mp4")
    box = next(iter(annotated)).box
    with open_video(source, backend="pyav") as original, open_video(labelled, backend="pyav") as copy:
        assert (copy.num_frames, copy.height, copy.width) == (original.num_frames, original.height, original.width)
        assert copy.duration == pytest.approx(original.duration, abs=1e-3)
        assert np.allclose(copy.timestamps - copy.timestamps[0], original.timestamps - original.timestamps[0], atol=1e-3)
        # the same pictures in the same order (test.avi's decoder returns frames out of order; damaged frames of
        # corrupt_mid_mdat.mp4 are concealed): compare the decodable frames below the label box
        # (frames decoded after damage depend on the decoding path, hence "nearly all")
        wanted = [i for i in range(original.num_frames) if i not in set(original.concealed_frames)][::7]
        outside = np.ones((original.height, original.width), bool)
        outside[: box[3] + 4, : box[2] + 4] = False
        if outside.sum() >= 16:  # odd_33x17.mkv is nearly all label box
            a, b = original.read(wanted)[:, outside], copy.read(wanted)[:, outside]
            errors = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(1, 2))
            assert np.median(errors) < 6 and (errors < 12).mean() >= 0.9, errors


def test_output_paths_mirror_keys_and_stay_inside():
    out = Path("/o")
    assert output_path(out, "cat/a.mp4") == Path("/o/cat/a.mp4")
    assert output_path(out, "cat/a.mkv") == Path("/o/cat/a.mkv.mp4")  # a.mkv and a.mp4 never collide
    assert output_path(out, "/data/x.MP4") == Path("/o/data/x.MP4")
    assert output_path(out, "../../etc/x.avi") == Path("/o/_/_/etc/x.avi.mp4")


def test_missing_videos_fail_with_exit_1(tagged, tmp_path, monkeypatch):
    root, clips, results = tagged
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["annotate", str(results), "-o", "labelled"])
    assert out.exit_code == 1
    assert "failed: talk.mp4: video file not found" in out.stderr and "--videos DIR" in out.stderr
    assert "Traceback" not in out.output and not list((tmp_path / "labelled").rglob("*.mp4"))
