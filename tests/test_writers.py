"""Writers into StringIO against exact text; atomic output files; reading a killed run back for --resume."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from vswin_cli.aggregate import Event, LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary
from vswin_cli.errors import ConfigError
from vswin_cli.outputs import OutputFile
from vswin_cli.resume import read_completed_jsonl
from vswin_cli.writers import get_writer

NAME = 'dir/a "b", c\td.mp4'
TOP = (LabelScore("x", 0, 0.75), LabelScore("y, z", 1, 0.25))
GOOD = VideoResult(
    video=NAME,
    segments=(SegmentResult(NAME, 0, 0.0, 2.133, 0, 64, TOP, 12, "tiny"),),
    summary=VideoSummary(NAME, 1, 2.133, 64, 30.0, TOP, 12, "tiny"),
    events=(Event(NAME, "x", 0, 0.75, 0.0, 2.133, 0, 64, 0, 0, "tiny"),),
)
BAD = VideoResult(video="bad.mp4", error=VideoError("bad.mp4", "VideoDecodeError", "bad.mp4: not a video file"))


def _write(fmt):
    stream = io.StringIO()
    writer = get_writer(fmt, stream)
    writer.write_video(GOOD)
    writer.write_video(BAD)
    writer.close()
    return stream.getvalue()


def test_jsonl_golden_text():
    top = '[{"label": "x", "index": 0, "score": 0.75}, {"label": "y, z", "index": 1, "score": 0.25}]'
    video = json.dumps(NAME)
    assert _write("jsonl").splitlines() == [
        f'{{"record": "segment", "video": {video}, "segment": 0, "start": 0.0, "end": 2.133, "start_frame": 0, '
        f'"end_frame": 64, "top": {top}, "views": 12, "model": "tiny"}}',
        f'{{"record": "event", "video": {video}, "label": "x", "index": 0, "score": 0.75, "start": 0.0, '
        f'"end": 2.133, "start_frame": 0, "end_frame": 64, "first_segment": 0, "last_segment": 0, "model": "tiny"}}',
        f'{{"record": "video", "video": {video}, "num_segments": 1, "duration": 2.133, "num_frames": 64, '
        f'"fps": 30.0, "top": {top}, "views": 12, "model": "tiny"}}',
        '{"record": "error", "video": "bad.mp4", "error": {"type": "VideoDecodeError", "message": "bad.mp4: not a video file"}}',
    ]


def test_json_document():
    doc = json.loads(_write("json"))
    good, bad = doc["videos"]
    assert good["video"] == NAME and good["summary"]["num_frames"] == 64
    assert good["segments"][0]["top"][1] == {"label": "y, z", "index": 1, "score": 0.25}
    assert good["events"][0]["label"] == "x"
    assert bad == {"video": "bad.mp4", "error": {"type": "VideoDecodeError", "message": "bad.mp4: not a video file"}}


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_csv_and_tsv_load_with_pandas(fmt, sep):
    table = pd.read_csv(io.StringIO(_write(fmt)), sep=sep)
    assert list(table["record"]) == ["segment", "segment", "event", "video", "video", "error"]
    seg = table[table.record == "segment"]
    assert list(seg["rank"]) == [1, 2] and list(seg["label"]) == ["x", "y, z"]
    assert list(seg["video"]) == [NAME, NAME] and list(seg["score"]) == [0.75, 0.25]
    assert table[table.record == "error"]["error_type"].item() == "VideoDecodeError"


def test_output_file_is_atomic_and_resume_keeps_only_complete_videos(tmp_path):
    target = tmp_path / "out.jsonl"
    out = OutputFile(str(target))
    writer = get_writer("jsonl", out.open())
    writer.write_video(GOOD)
    assert not target.exists() and out.part_path.exists()  # nothing at PATH until the run ends
    writer.write_video(BAD)
    # a killed run: half a video (segment, no summary) and a torn line
    half = json.dumps({"record": "segment", "video": "half.mp4", "segment": 0}) + "\n"
    out.stream.write(half + '{"record": "seg')
    out.stream.flush()
    found = read_completed_jsonl(out.part_path)
    kept = found.lines
    assert found.done == {NAME} and len(kept) == 3
    assert found.partial == {"half.mp4": [json.loads(half)]}  # cut inside: resumed after its segment 0

    out.release()  # the killed run's lock went with its process
    resumed = OutputFile(str(target), resume=True)
    assert resumed.done == {NAME}
    writer = get_writer("jsonl", resumed.open())
    writer.write_video(BAD)
    writer.close()
    resumed.commit()
    assert target.exists() and not resumed.part_path.exists()
    assert target.read_text(encoding="utf-8") == "".join(kept) + _write("jsonl").splitlines(keepends=True)[-1]


def test_resume_refuses_a_file_that_is_not_ours(tmp_path):
    (tmp_path / "out.jsonl").write_text("video,segment\nx,1\n")
    with pytest.raises(ConfigError, match="cannot resume"):
        OutputFile(str(tmp_path / "out.jsonl"), resume=True)
    with pytest.raises(ConfigError, match="needs an output file"):
        OutputFile("-", resume=True)


def test_a_streams_skipped_segments_and_gaps_are_in_its_video_record(tmp_path):
    from vswin_cli.results import summary_from_record

    stream = VideoSummary("rtsp://cam/1", 2, 9.6, 240, 25.0, TOP, 1, "tiny",
                          skipped=((2.56, 5.12),), gaps=((5.12, 7.04), (8.0, 8.5)))
    result = VideoResult(video="rtsp://cam/1", segments=(), summary=stream)
    out = io.StringIO()
    writer = get_writer("jsonl", out)
    writer.write_video(result)
    writer.close()
    record = json.loads(out.getvalue())
    assert record["skipped"] == [[2.56, 5.12]] and record["gaps"] == [[5.12, 7.04], [8.0, 8.5]]
    assert summary_from_record(record) == stream  # read back as written
    assert "skipped" not in _write("jsonl") and "gaps" not in _write("jsonl")  # a file's records have neither

    pytest.importorskip("pyarrow")
    with open(tmp_path / "tags.parquet", "w") as parquet:
        writer = get_writer("parquet", parquet)
        writer.write_video(result)
        writer.write_video(GOOD)
        writer.close()
    rows = pd.read_parquet(tmp_path / "tags.parquet").to_dict("records")
    assert [list(span) for span in rows[0]["gaps"]] == record["gaps"]
    assert [list(span) for span in rows[0]["skipped"]] == record["skipped"]
    assert rows[-1]["gaps"] is None and rows[-1]["skipped"] is None  # GOOD's video row
