"""`vswin tag --report FILE --annotate DIR`: the report and the labelled videos straight after a run."""

from __future__ import annotations

import av
from test_tag_cli import make_video, run, tiny  # noqa: F401  (tiny is a fixture)


def test_report_and_annotate_after_a_run(tiny, tmp_path):
    for i in range(2):
        make_video(tmp_path / "in" / f"{i}.mp4", 40, seed=i)
    out = tmp_path / "tags.jsonl"
    result = run([str(tmp_path / "in"), *tiny, "-o", str(out), "--report", str(tmp_path / "r.html"),
                  "--annotate", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "0.mp4" in page and "1.mp4" in page
    for i in range(2):
        with av.open(str(tmp_path / "drawn" / f"{i}.mp4")) as drawn:
            assert sum(1 for _ in drawn.decode(video=0)) == 40


def test_report_needs_an_output_file(tiny, tmp_path):
    make_video(tmp_path / "v.mp4", 10)
    result = run([str(tmp_path / "v.mp4"), *tiny, "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "add -o FILE" in result.stderr
