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
