"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest

from vswin_cli.metrics import compute_metrics, metrics_from_ranked, per_class_accuracy, top_k_accuracy, write_per_class_csv

# 4 videos, 6 classes. Ranks of the true label: video 0 -> 1st, 1 -> 2nd, 2 -> 6th, 3 -> 1st.
SCORES = np.array(
    [
        [0.9, 0.05, 0.02, 0.01, 0.01, 0.01],  # label 0: top-1
        [0.5, 0.3, 0.1, 0.05, 0.03, 0.02],  # label 1: 2nd
        [0.3, 0.25, 0.2, 0.15, 0.07, 0.03],  # label 5: last (6th)
        [0.1, 0.1, 0.6, 0.1, 0.05, 0.05],  # label 2: top-1
    ]
)
LABELS = np.array([0, 1, 5, 2])
NAMES = ["a", "b", "c", "d", "e", "f"]


def test_top_k_by_hand():
    assert top_k_accuracy(SCORES, LABELS, 1) == 0.5  # videos 0 and 3
    assert top_k_accuracy(SCORES, LABELS, 2) == 0.75  # + video 1
    assert top_k_accuracy(SCORES, LABELS, 5) == 0.75  # video 2's label is 6th
    assert top_k_accuracy(SCORES, LABELS, 6) == 1.0
    assert top_k_accuracy(SCORES, LABELS, 100) == 1.0  # k clipped to the class count


def test_ties_break_to_the_lower_class_like_argmax():
    scores = np.array([[0.5, 0.5, 0.0]])
    assert top_k_accuracy(scores, np.array([0]), 1) == 1.0
    assert top_k_accuracy(scores, np.array([1]), 1) == 0.0


def test_per_class_and_mean_class_accuracy_by_hand():
    # Class 0: 2 videos, 1 right; class 1: 1 video, right; class 2: 1 video, wrong. Mean = (0.5 + 1 + 0) / 3.
    scores = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=float)
    labels = np.array([0, 0, 1, 2])
    per_class = per_class_accuracy(scores[:, :3], labels, ["x", "y", "z"])
    assert [(c.count, c.correct) for c in per_class] == [(2, 1), (1, 1), (1, 0)]
    metrics = compute_metrics(scores, labels, ["x", "y", "z", "unused"])
    assert metrics.mean_class_accuracy == pytest.approx(0.5)  # a class with no video does not count
    assert metrics.top1 == 0.5
    assert math.isnan(metrics.per_class[3].accuracy)


def test_failed_videos_are_counted_not_hidden():
    metrics = compute_metrics(SCORES, LABELS, NAMES, num_failed=4)
    assert metrics.top1 == 0.5  # over the 4 scored videos
    assert metrics.top1_all == 0.25  # 2 right of 8 listed
    summary = metrics.summary()
    assert summary["num_videos_used"] == 4 and summary["num_videos_failed"] == 4
    assert summary["top5"] == 0.75


def test_no_scored_video_gives_nan_not_a_crash():
    metrics = compute_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int), ["x", "y", "z"], num_failed=2)
    assert math.isnan(metrics.top1) and metrics.top1_all == 0.0 and metrics.num_failed == 2


def test_metrics_from_ranked_classes_equal_metrics_from_scores():
    ranked = np.argsort(-SCORES, axis=1)[:, :5]
    from_scores = compute_metrics(SCORES, LABELS, NAMES, num_failed=1)
    assert metrics_from_ranked(ranked, LABELS, NAMES, num_failed=1) == from_scores


def test_per_class_csv():
    import io

    stream = io.StringIO()
    write_per_class_csv(compute_metrics(SCORES, LABELS, NAMES), stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "index,name,count,correct,accuracy"
    assert lines[1] == "0,a,1,1,1.000000"
    assert lines[2] == "1,b,1,0,0.000000"
    assert lines[4] == "3,d,0,0,"  # no video of class d
