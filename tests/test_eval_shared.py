"""`vswin eval` over the files in ../shared/videos with a tiny model: broken files are listed with their
reason and counted, every readable video is scored, the run completes and exits 1; on a list that holds
only some classes the metrics are the authors' code's on the saved scores."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import shared_path
from models import VideoSwin, get_config, save_checkpoint
from vswin_cli.app import app


@pytest.mark.slow
def test_eval_on_the_shared_videos_reports_failures_and_completes(tmp_path):
    videos = shared_path("videos")
    catalogue = json.loads((videos / "catalogue.json").read_text())["files"]
    expected = {info["name"]: info["expected"] for info in catalogue}
    names = sorted(p.name for p in videos.iterdir() if p.name != "catalogue.json")
    assert set(names) == set(expected)

    with (tmp_path / "list.csv").open("w", newline="") as f:  # CSV: one name has spaces and quotes
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([name, i % 3] for i, name in enumerate(names))
    torch.manual_seed(0)
    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                                             window_size=(2, 4, 4), num_classes=3))
    weights = save_checkpoint(tmp_path / "tiny.pt", model, ["a", "b", "c"],
                              protocol={"sampling": "kinetics", "clip_len": 4, "frame_interval": 2, "num_clips": 2,
                                        "num_crops": 3, "crop_size": 32, "resize_short": 32})

    out = tmp_path / "m.json"
    preds = tmp_path / "p.jsonl"
    args = ["eval", "--dataset", str(tmp_path / "list.csv"), "--data-root", str(videos), "--weights", str(weights),
            "-o", str(out), "--predictions", str(preds), "--workers", "2", "--batch-views", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # some inputs failed, after all others were done
    metrics = json.loads(out.read_text())
    failed = {f["video"]: f["reason"] for f in metrics["failed"]}
    assert metrics["num_videos_listed"] == len(names)
    assert metrics["num_videos_used"] + metrics["num_videos_failed"] == len(names)
    assert metrics["num_videos_failed"] == len(failed)
    for name, what in expected.items():
        if what.startswith("clear error"):
            assert name in failed and failed[name], name
            assert f"failed: {name}" in result.output
        if what.startswith("decode OK") and " or " not in what:
            assert name not in failed, (name, failed.get(name))
    assert metrics["protocol"]["num_clips"] == 2 and metrics["protocol"]["crop_size"] == 32
    records = [json.loads(line) for line in preds.read_text().splitlines()]
    assert sorted(r["video"] for r in records) == names
    assert {r["video"] for r in records if "error" in r} == set(failed)

    # --resume keeps the records already written and evaluates nothing again.
    result = CliRunner().invoke(app, args + ["--resume"])
    assert result.exit_code == 1
    again = json.loads(out.read_text())
    assert again["num_videos_resumed"] == len(names)
    assert {k: again[k] for k in ("top1", "top5", "failed")} == {k: metrics[k] for k in ("top1", "top5", "failed")}


READABLE = ["short_20f.mp4", "tiny_16x16.mp4", "codec_vp9.webm", "carphone_distorted.mp4", "gray_x264.mp4",
            "codec_h264.mkv", "frames_64.mp4", "codec_hevc.mp4", "portrait_180x320.mp4", "odd_33x17.mkv",
            "rotated_90.mp4", "h265_video.mp4", "wide_1280x72.mp4", "vfr.mp4"]


def _tiny_weights(tmp_path, num_classes=5):
    torch.manual_seed(0)
    model = VideoSwin.from_config(get_config("swin-t", embed_dim=8, depths=(1, 1), num_heads=(1, 2),
                                             window_size=(2, 4, 4), num_classes=num_classes))
    with torch.no_grad():
        model.head.weight.mul_(50.0)  # spread the videos over several predicted classes
    return save_checkpoint(tmp_path / "tiny.pt", model, [f"class{i}" for i in range(num_classes)],
                           protocol={"sampling": "kinetics", "clip_len": 4, "frame_interval": 2, "num_clips": 1,
                                     "num_crops": 1, "crop_size": 32, "resize_short": 32})


def _write_list(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)


def test_eval_on_a_partial_class_list_reports_what_the_authors_code_reports(tmp_path):
    import numpy as np

    import mmaction_reference as authors
    from vswin_cli.metrics import metrics_from_scores_file

    videos = shared_path("videos")
    weights = _tiny_weights(tmp_path)
    base = ["eval", "--data-root", str(videos), "--weights", str(weights), "--workers", "0", "-q"]

    # First pass, all labelled 0, with one unreadable file: which class does the model give each video?
    names = READABLE + ["not_a_video.mp4"]
    _write_list(tmp_path / "first.csv", [(name, 0) for name in names])
    first = base + ["--dataset", str(tmp_path / "first.csv"), "--predictions", str(tmp_path / "p.jsonl"),
                    "-o", str(tmp_path / "first.json"), "--scores", str(tmp_path / "first.npz")]
    result = CliRunner().invoke(app, first)
    assert result.exit_code == 1, result.output  # the unreadable file failed, after the others
    with np.load(tmp_path / "first.npz") as data:
        assert data["videos"].tolist() == names and data["failed"].tolist() == [False] * len(READABLE) + [True]
        assert np.isnan(data["scores"][-1]).all() and data["errors"][-1]
        scores = data["scores"][:-1]
    predicted = scores.argmax(axis=1)
    assert len(set(predicted.tolist())) >= 2, predicted  # else the partial-class case below is not exercised

    # --resume keeps every video (their probabilities are beside the predictions) and writes the same scores;
    # without those probabilities the kept records cannot give exact metrics, so their videos run again.
    result = CliRunner().invoke(app, first[:-1] + [str(tmp_path / "resumed.npz"), "--resume"])
    assert result.exit_code == 1, result.output
    assert json.loads((tmp_path / "first.json").read_text())["num_videos_resumed"] == len(names)
    with np.load(tmp_path / "first.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert all(np.array_equal(a[key], b[key], equal_nan=key == "scores") for key in a.files)
    (tmp_path / ".p.jsonl.probs").unlink()
    result = CliRunner().invoke(app, first[:-1] + [str(tmp_path / "rescored.npz"), "--resume"])
    assert result.exit_code == 1
    assert json.loads((tmp_path / "first.json").read_text())["num_videos_resumed"] == 1  # the failed one
    with np.load(tmp_path / "first.npz") as a, np.load(tmp_path / "rescored.npz") as b:
        assert np.array_equal(a["scores"], b["scores"], equal_nan=True)

    # The real list: two true classes. Videos predicted as the first predicted class are labelled with it
    # (right); all others get a class nobody predicts (wrong), so the other predicted classes have no video.
    right = int(predicted[0])
    unpredicted = next(c for c in range(5) if c not in set(predicted.tolist()))
    labels = [right if p == right else unpredicted for p in predicted]
    _write_list(tmp_path / "list.csv", list(zip(READABLE, labels)))
    out, npz = tmp_path / "m.json", tmp_path / "s.npz"
    result = CliRunner().invoke(app, base + ["--dataset", str(tmp_path / "list.csv"), "-o", str(out), "--scores", str(npz)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    with np.load(npz) as data:
        assert np.array_equal(data["scores"], scores) and data["labels"].tolist() == labels
    top1, top5 = authors.top_k_accuracy(scores, labels, (1, 5))
    assert metrics["top1"] == top1 and metrics["top5"] == top5
    assert metrics["mean_class_accuracy"] == authors.mean_class_accuracy(scores, labels)
    num_classes = len(set(predicted.tolist()) | {unpredicted})
    assert metrics["mean_class_accuracy"] == 1 / num_classes  # the right class 1, every other class 0
    assert metrics["mean_class_accuracy_present"] == 0.5  # classes present: the right one 1, the other 0
    assert metrics_from_scores_file(npz).summary() == {k: metrics[k] for k in metrics_from_scores_file(npz).summary()}


def test_resume_after_a_kill_gives_the_scores_of_an_uninterrupted_run(tmp_path):
    import numpy as np

    videos = shared_path("videos")
    names = READABLE[:8] + ["not_a_video.mp4"]
    _write_list(tmp_path / "list.csv", [(name, i % 3) for i, name in enumerate(names)])
    preds, probs_log = tmp_path / "p.jsonl", tmp_path / ".p.jsonl.probs"
    args = ["eval", "--dataset", str(tmp_path / "list.csv"), "--data-root", str(videos), "--weights",
            str(_tiny_weights(tmp_path)), "--workers", "0", "-q", "--predictions", str(preds), "-o", str(tmp_path / "m.json")]
    assert CliRunner().invoke(app, args + ["--scores", str(tmp_path / "whole.npz")]).exit_code == 1
    whole = json.loads((tmp_path / "m.json").read_text())

    # As a kill leaves it: PATH.part with 6 records and a torn 7th, the probabilities of only the first 4
    # scored videos and a torn 5th. The 2 scored records without probabilities must run again.
    lines = preds.read_text(encoding="utf-8").splitlines(keepends=True)
    assert [json.loads(line)["video"] for line in lines] == names
    preds.unlink()
    (tmp_path / "p.jsonl.part").write_text("".join(lines[:6]) + lines[6][:20], encoding="utf-8")
    saved = probs_log.read_text().splitlines(keepends=True)
    probs_log.write_text("".join(saved[:4]) + saved[4][:30])
    result = CliRunner().invoke(app, args + ["--scores", str(tmp_path / "resumed.npz"), "--resume"])
    assert result.exit_code == 1, result.output
    resumed = json.loads((tmp_path / "m.json").read_text())
    assert resumed["num_videos_resumed"] == 4
    assert {k: v for k, v in resumed.items() if k != "num_videos_resumed"} == {k: v for k, v in whole.items() if k != "num_videos_resumed"}
    with np.load(tmp_path / "whole.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert all(np.array_equal(a[key], b[key], equal_nan=key == "scores") for key in a.files)
    assert sorted(json.loads(line)["video"] for line in preds.read_text(encoding="utf-8").splitlines()) == sorted(names)
