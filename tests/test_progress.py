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
    assert "tagging: 0/2 videos, 4 segments, 10.0 s of video" in err
    assert "tagging: 2/2 videos, 4 segments" in err
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert failed == ["failed: w.mp4: " + "x" * 200]  # one line however long: `grep failed:` keeps the reason


def test_video_time_is_exact_seconds_of_video(capsys, monkeypatch):
    """Issue 22: a 3.2 s clip whose last window reaches past its end, and overlapping windows, count 3.2 s."""
    from vswin_cli.records import VideoSummary

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    windows = [(0.0, 2.56), (1.28, 3.84), (2.56, 5.12)]  # --stride half the window; the last one is padded
    segments = [SegmentResult(video="c.mp4", segment=i, start=s, end=e, start_frame=0, end_frame=0, top=(), views=1,
                              model="tiny") for i, (s, e) in enumerate(windows)]
    summary = VideoSummary(video="c.mp4", num_segments=3, duration=3.2, num_frames=80, fps=25.0, top=(), views=1,
                           model="tiny")
    with progress.TagProgress(1, quiet=False) as bar:
        for segment in segments[:2]:
            bar.on_segment(segment)
        assert bar.video_seconds == 3.84  # as far as the scored windows reach
        bar.on_segment(segments[2])
        bar.on_result(VideoResult(video="c.mp4", segments=tuple(segments), summary=summary))
    err = capsys.readouterr().err
    assert bar.video_seconds == 3.2
    assert err.splitlines()[-1].startswith("tagging: 1/1 videos, 3 segments, 3.2 s of video"), err


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    with progress.TagProgress(1, quiet=True) as bar:
        bar.on_segment(_segment(0))
        bar.on_result(VideoResult(video="w.mp4", error=VideoError("w.mp4", "VideoDecodeError", "w.mp4: bad")))
    assert capsys.readouterr().err == ""


def test_download_bar_shows_the_file_and_its_bytes_on_stderr_only(capsys):
    with progress.download_progress("weights.pth", enabled=True) as bar:
        bar.start(total=2048, completed=1024)  # a resumed download starts at its offset
        bar.advance(1024)
    out, err = capsys.readouterr()
    assert out == "" and "weights.pth" in err and "2.0" in err and "kB" in err
    with progress.download_progress("weights.pth", enabled=False) as bar:
        bar.start(total=10, completed=0)
        bar.advance(10)
    assert capsys.readouterr() == ("", "")


def test_a_live_stream_shows_stream_time_lag_and_dropped_segments(capsys, monkeypatch):
    from vswin_cli.live import LIVE_STATS, LiveStats

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setitem(LIVE_STATS, "v.mp4", LiveStats("v.mp4", stream_s=12.34, lag_s=0.5, skipped_spans=[(0.0, 2.56), (2.56, 5.12)], reconnects=1))
    with progress.TagProgress(1, quiet=False) as bar:
        bar.on_segment(_segment(0))
    err = capsys.readouterr().err
    assert "stream 12.3 s, lag 0.50 s, 2 dropped, 1 reconnect(s)" in err and "video-s/s" not in err
