"""`vswin tag` end to end with a tiny random model on generated videos and on ../shared/videos.

The tiny model is saved in the official mmaction layout and loaded through `--weights --arch
CONFIG.json --labels FILE`, as a user with their own checkpoint would. Crops are 32 px
(`--crop-size 32`, which the CLI exposes for such models) so every run takes well under a second.
"""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import LABELS, TINY, save_tiny_model, shared_path  # noqa: F401  (TINY, LABELS: used by other test files)
from vswin_cli.app import app

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """CLI options that load a seeded tiny model from an official-layout checkpoint."""
    return [*save_tiny_model(tmp_path_factory.mktemp("tiny-model")), "--workers", "0"]


def make_video(path, num_frames: int, fps: int = 25, height: int = 48, width: int = 64, seed: int = 0):
    """Encode `num_frames` frames of moving noise at a constant frame rate (MPEG-4 Part 2)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            shift = (i * 3) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, shift:shift + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def run(args, stdin: str | None = None):
    return CliRunner().invoke(app, ["tag", *args], input=stdin)


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def by_record(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["record"] == kind]


def check_scores(records: list[dict]) -> None:
    for record in records:
        if record["record"] in ("segment", "video"):
            scores = [t["score"] for t in record["top"]]
            assert scores == sorted(scores, reverse=True)
            assert all(0.0 <= s <= 1.0 for s in scores) and sum(scores) <= 1.0 + 1e-5
            assert all(LABELS[t["index"]] == t["label"] for t in record["top"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A folder with two equal-named videos in different sub-folders, and one text file."""
    root = tmp_path_factory.mktemp("clips")
    make_video(root / "cat" / "000.mp4", 150, fps=25, seed=1)  # 6 s
    make_video(root / "dog" / "000.mp4", 40, fps=20, seed=2)  # 2 s, shorter than one window
    (root / "readme.txt").write_text("not a video")
    return root


def test_folder_to_stdout_keeps_equal_names_apart_and_holds_data_only(tiny, clips):
    result = run([str(clips), *tiny, "--top-k", "3"])
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)  # every stdout line is a JSON record: no progress or logs there
    check_scores(records)
    summaries = by_record(records, "video")
    assert [s["video"] for s in summaries] == ["cat/000.mp4", "dog/000.mp4"]
    cat = [r for r in by_record(records, "segment") if r["video"] == "cat/000.mp4"]
    dog = [r for r in by_record(records, "segment") if r["video"] == "dog/000.mp4"]
    # default window = 32 frames x 2 at the video's own rate: 64 frames = 2.56 s at 25 fps; the last
    # window is moved back to end with the video (6 s) so that it is as long as the others
    assert [(s["start_frame"], s["end_frame"]) for s in cat] == [(0, 64), (64, 128), (86, 150)]
    assert [(s["start"], s["end"]) for s in cat] == [(0.0, 2.56), (2.56, 5.12), (3.44, 6.0)]
    assert [(s["start_frame"], s["end_frame"], s["start"], s["end"]) for s in dog] == [(0, 40, 0.0, 2.0)]
    assert all(s["views"] == 1 and len(s["top"]) == 3 and s["model"].endswith("tiny.pth") for s in cat + dog)
    assert summaries[0]["num_segments"] == 3 and summaries[0]["num_frames"] == 150
    assert summaries[1]["duration"] == 2.0 and summaries[1]["fps"] == 20.0
    assert "tagged 2 video(s)" in result.stderr


def test_long_video_segments_are_exact(tiny):
    """long_60s_segments.mp4: 1800 frames at 30 fps, colour changes every 10 s (catalogue)."""
    video = shared_path("videos", "long_60s_segments.mp4")
    result = run([str(video), *tiny, "--window", "10"])
    assert result.exit_code == 0, result.stderr
    segments = by_record(jsonl(result.stdout), "segment")
    assert [(s["start"], s["end"]) for s in segments] == [(10.0 * k, 10.0 * k + 10) for k in range(6)]
    assert [(s["start_frame"], s["end_frame"]) for s in segments] == [(300 * k, 300 * k + 300) for k in range(6)]

    default = run([str(video), *tiny, "--top-k", "1"])
    segments = by_record(jsonl(default.stdout), "segment")
    # 64-frame windows at 30 fps: 28 of them, then one moved back to end at 60 s (frames 1736..1799)
    assert len(segments) == 29
    assert [s["start_frame"] for s in segments] == [64 * k for k in range(28)] + [1736]
    assert segments[1]["start"] == round(64 / 30, 3) and segments[27]["end"] == round(1792 / 30, 3)
    assert (segments[-1]["start"], segments[-1]["end"], segments[-1]["end_frame"]) == (round(1736 / 30, 3), 60.0, 1800)


def test_variable_frame_rate_segments_follow_timestamps(tiny):
    """vfr.mp4: 90 frames at irregular times (catalogue `pts_ms`); 1 s windows are cut by time."""
    video = shared_path("videos", "vfr.mp4")
    catalogue = json.loads(shared_path("videos", "catalogue.json").read_text())
    entry = next(e for e in catalogue["files"] if e["name"] == "vfr.mp4")
    pts = np.array(entry["generated_facts"]["pts_ms"]) / 1000.0
    end = pts[-1] + np.median(np.diff(pts))  # the last frame lasts the median frame duration: 4.093 s
    result = run([str(video), *tiny, "--window", "1", "--top-k", "1"])
    assert result.exit_code == 0, result.stderr
    segments = by_record(jsonl(result.stdout), "segment")
    # windows start at 0, 1, 2, 3 s, then one moved back to end with the video; each holds the frames
    # whose time lies in [start, start + 1 s) and starts at its first frame's own time
    window_starts = [0.0, 1.0, 2.0, 3.0, end - 1.0]
    first = [int(np.searchsorted(pts, t - 1e-9)) for t in window_starts]
    stop = [int(np.searchsorted(pts, t + 1.0 - 1e-9)) for t in window_starts]
    assert [(s["start_frame"], s["end_frame"]) for s in segments] == list(zip(first, stop))
    assert first == [0, 26, 47, 65, 67] and stop[-1] == 90
    assert [s["start"] for s in segments] == [round(pts[f], 3) for f in first]
    assert [s["end"] for s in segments] == [round(pts[e], 3) for e in stop[:-1]] + [round(end, 3)]


@pytest.mark.parametrize("args,views", [(["--views", "paper"], 12), (["--clips", "2", "--crops", "3"], 6),
                                        (["--views", "paper", "--crops", "1"], 4)])
def test_views_per_segment_as_asked(tiny, clips, args, views):
    result = run([str(clips / "cat"), *tiny, *args])
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)
    check_scores(records)
    assert {r["views"] for r in records if r["record"] in ("segment", "video")} == {views}


def test_every_format_parses(tiny, clips, tmp_path):
    common = [str(clips), *tiny, "--top-k", "2"]
    for fmt in ("json", "csv", "tsv"):
        out = tmp_path / f"tags.{fmt}"
        result = run([*common, "--format", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        assert result.stdout == "" and out.exists() and not out.with_name(out.name + ".part").exists()
        if fmt == "json":
            doc = json.loads(out.read_text())
            assert [v["video"] for v in doc["videos"]] == ["cat/000.mp4", "dog/000.mp4"]
            assert len(doc["videos"][0]["segments"]) == 3 and doc["videos"][0]["summary"]["num_segments"] == 3
        else:
            table = pd.read_csv(out, sep="," if fmt == "csv" else "\t")
            segments = table[table.record == "segment"]
            assert len(segments) == (3 + 1) * 2  # one row per segment and rank
            assert set(segments["rank"]) == {1, 2} and set(segments["label"]) <= set(LABELS)
    stdout_csv = run([*common, "--format", "csv"])
    assert stdout_csv.exit_code == 0
    assert len(pd.read_csv(io.StringIO(stdout_csv.stdout))) == 1 + 8 + 2 * 2  # the run row, segments + summaries, 2 ranks each


def test_bad_files_get_error_records_and_exit_1(tiny, clips, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    paths = [str(tmp_path / "broken.mp4"), str(clips / "cat" / "000.mp4"), str(tmp_path / "missing.mp4"),
             str(shared_path("videos", "not_a_video.mp4"))]
    result = run(["-", *tiny, "--top-k", "1"], stdin="\n".join(paths) + "\n")
    assert result.exit_code == 1
    records = jsonl(result.stdout)
    errors = by_record(records, "error")
    assert [e["video"] for e in errors] == [paths[0], paths[2], paths[3]]
    assert all(e["error"]["type"] == "VideoDecodeError" and e["error"]["message"] for e in errors)
    assert [s["video"] for s in by_record(records, "video")] == [paths[1]]  # the good one was tagged anyway
    assert "3 failed" in result.stderr


def test_hostile_file_name_from_a_list_file(tiny, tmp_path, monkeypatch):
    name = "my clip (1) 'final' \"v2\" ünïcødé 日本語 $HOME;&.mp4"
    monkeypatch.chdir(tmp_path)
    make_video(tmp_path / name, 20)
    (tmp_path / "list.txt").write_text(name + "\n", encoding="utf-8")
    result = run(["--from-list", "list.txt", *tiny, "--format", "tsv"])
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), sep="\t")
    assert set(table[table.record != "run"]["video"]) == {name}


def test_merge_and_features(tiny, clips):
    result = run([str(clips / "cat"), *tiny, "--merge", "--features", "--window", "1"])
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)
    segments, events = by_record(records, "segment"), by_record(records, "event")
    assert len(segments) == 6 and all(len(s["features"]) == 16 for s in segments)  # embed_dim 8 x 2
    assert events[0]["start"] == 0.0 and events[-1]["end"] == 6.0
    assert sum(e["last_segment"] - e["first_segment"] + 1 for e in events) == 6
    for first, second in zip(events, events[1:]):
        assert first["label"] != second["label"] and first["end"] == second["start"]


@pytest.mark.parametrize("args", [["--resume"], ["--format", "csv", "--features"], ["--crops", "2"],
                                  ["--window", "0"], ["--views", "all"], []])
def test_usage_errors_exit_2(tiny, clips, args):
    result = run([*(["x.mp4"] if args else []), *tiny, *args])
    assert result.exit_code == 2, result.stdout


def test_overlapping_windows_and_workers(tiny, clips):
    result = run([str(clips / "cat"), *tiny, "--window", "2", "--stride", "1", "--workers", "2", "--top-k", "1"])
    assert result.exit_code == 0, result.stderr
    segments = by_record(jsonl(result.stdout), "segment")
    assert [s["start"] for s in segments][:5] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(s["end"] - s["start"] <= 2.0 for s in segments)
    single = run([str(clips / "cat"), *tiny, "--window", "2", "--stride", "1", "--top-k", "1"])
    assert single.stdout == result.stdout  # worker processes change nothing in the output


def test_fast_decode_and_quiet(tiny, clips):
    # decord's reduced-size decode, as measured when --fast-decode was added (PyAV's scaler, which `auto`
    # now uses, moves this random tiny model's top score by up to 0.11 on these 48x64 frames)
    exact = run([str(clips / "cat"), *tiny, "--top-k", "1", "--views", "paper", "--backend", "decord"])
    fast = run([str(clips / "cat"), *tiny, "--top-k", "1", "--views", "paper", "--fast-decode", "--quiet",
                "--backend", "decord"])
    assert fast.exit_code == 0 and fast.stderr == ""
    exact_segments, fast_segments = by_record(jsonl(exact.stdout), "segment"), by_record(jsonl(fast.stdout), "segment")
    # the same segments and views; scores close (pixels differ slightly from the official resize)
    assert [(s["start_frame"], s["end_frame"], s["views"]) for s in fast_segments] == \
        [(s["start_frame"], s["end_frame"], s["views"]) for s in exact_segments]
    for a, b in zip(exact_segments, fast_segments):
        assert abs(a["top"][0]["score"] - b["top"][0]["score"]) < 0.1


def test_threshold_drops_low_scores_but_keeps_every_segment(tiny, clips):
    result = run([str(clips / "cat"), *tiny, "--threshold", "0.2", "--top-k", "5", "--window", "1", "-f", "csv"])
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout))
    segments = table[table.record == "segment"]
    assert sorted(set(segments["segment"])) == list(range(6))  # a segment with no tag left keeps one row
    scored = segments.dropna(subset=["score"])
    assert (scored["score"] >= 0.2).all() and len(scored) < 6 * 5
