"""Progress on stderr: plain lines when stderr is not a terminal, counting segments and video time."""

from __future__ import annotations

from vswin_cli import progress
from vswin_cli.aggregate import SegmentResult, VideoError, VideoResult


def _segment(i: int) -> SegmentResult:
    return SegmentResult(video="v.mp4", segment=i, start=2.5 * i, end=2.5 * (i + 1), start_frame=64 * i,
                         end_frame=64 * (i + 1), top=(), views=1, model="tiny")


def test_plain_lines_count_segments_video_time_and_videos(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    with progress.TagProgress(2, quiet=False) as bar:
        for i in range(4):
            bar.on_segment(_segment(i))
        bar.on_result(VideoResult(video="v.mp4"))
        bar.on_result(VideoResult(video="w.mp4", error=VideoError("w.mp4", "VideoDecodeError", "w.mp4: " + "x" * 200)))
    err = capsys.readouterr().err
    assert "tagging: 0/2 videos, 4 segments, 10 s of video" in err
    assert "tagging: 2/2 videos, 4 segments" in err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert failed == ["failed: w.mp4: " + "x" * 200]  # one line however long: `grep failed:` keeps the reason


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    with progress.TagProgress(1, quiet=True) as bar:
        bar.on_segment(_segment(0))
        bar.on_result(VideoResult(video="w.mp4", error=VideoError("w.mp4", "VideoDecodeError", "w.mp4: bad")))
    assert capsys.readouterr().err == ""


def test_a_live_stream_shows_stream_time_lag_and_dropped_segments(capsys, monkeypatch):
    from vswin_cli.live import LIVE_STATS, LiveStats

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setitem(LIVE_STATS, "v.mp4", LiveStats("v.mp4", stream_s=12.34, lag_s=0.5, skipped=2, reconnects=1))
    with progress.TagProgress(1, quiet=False) as bar:
        bar.on_segment(_segment(0))
    err = capsys.readouterr().err
    assert "stream 12.3 s, lag 0.50 s, 2 dropped, 1 reconnect(s)" in err and "video-s/s" not in err
