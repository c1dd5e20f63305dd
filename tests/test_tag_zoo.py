"""`vswin tag --model NAME`: a zoo entry fetched from a local HTTP server (the fetch tests' fake
`tiny-k400` entry: a tiny network in the official layout with the real Kinetics-400 label map)."""

from __future__ import annotations

import pytest

from conftest import shared_path
from test_fetch import NAME, zoo  # noqa: F401  (zoo is a fixture)
from test_tag_cli import by_record, jsonl, make_video, run


@pytest.mark.slow
def test_zoo_model_by_name_uses_its_labels_and_published_views(zoo, tmp_path):  # noqa: F811
    make_video(tmp_path / "v.mp4", 64)
    args = [str(tmp_path / "v.mp4"), "--model", NAME, "--crop-size", "32", "--workers", "0", "--top-k", "3"]
    result = run([*args, "--views", "paper", "-q"])
    assert result.exit_code == 0, result.stderr
    records = jsonl(result.stdout)
    k400 = shared_path("labels", "label_map_k400.txt").read_text().splitlines()
    for record in by_record(records, "segment") + by_record(records, "video"):
        assert record["views"] == 12 and record["model"] == NAME  # Kinetics protocol: 4 clips x 3 crops
        assert all(k400[t["index"]] == t["label"] for t in record["top"])
        assert sum(t["score"] for t in record["top"]) <= 1.0 + 1e-5
    fast = run([*args, "-q"])
    assert {r["views"] for r in by_record(jsonl(fast.stdout), "segment")} == {1}
