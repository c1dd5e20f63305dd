"""Metrics against values computed by hand from the authors' definitions, and against a transcription of
the authors' code (tests/mmaction_reference.py) on random predictions."""

import io
import math

import numpy as np
import pytest

import mmaction_reference as authors
from vswin_cli.errors import ConfigError
from vswin_cli.files import write_bytes_atomic
from vswin_cli.metrics import (
    compute_metrics, mean_class_accuracy, metrics_from_probs, metrics_from_scores_file, per_class_accuracy,
    scores_file_bytes, top_k_accuracy, write_per_class_csv,
)

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


def one_hot(classes, num_classes):
    """Scores whose argmax is `classes[i]` for row i."""
    scores = np.full((len(classes), num_classes), 0.01)
    scores[np.arange(len(classes)), classes] = 0.9
    return scores


def test_top_k_by_hand():
    assert top_k_accuracy(SCORES, LABELS, 1) == 0.5  # videos 0 and 3
    assert top_k_accuracy(SCORES, LABELS, 2) == 0.75  # + video 1
    assert top_k_accuracy(SCORES, LABELS, 5) == 0.75  # video 2's label is 6th
    assert top_k_accuracy(SCORES, LABELS, 6) == 1.0
    assert top_k_accuracy(SCORES, LABELS, 100) == 1.0  # k clipped to the class count


def test_mean_class_accuracy_on_a_partial_class_set_counts_predicted_classes_as_the_authors_do():
    # The case: 14 clips of two true classes. Class 0: 7 videos, all right; class 1: 7 videos,
    # all predicted as class 2, which no video has. Authors: classes {0, 1, 2} -> (1 + 0 + 0) / 3.
    labels = np.array([0] * 7 + [1] * 7)
    scores = one_hot([0] * 7 + [2] * 7, 5)
    metrics = compute_metrics(scores, labels, list("vwxyz"))
    assert metrics.mean_class_accuracy == pytest.approx(1 / 3)
    assert metrics.mean_class_accuracy_present == 0.5  # (1 + 0) / 2, the classes the list holds
    assert metrics.top1 == 0.5
    assert metrics.summary()["mean_class_accuracy"] == metrics.mean_class_accuracy
    assert metrics.summary()["mean_class_accuracy_present"] == 0.5


def test_mean_class_accuracy_by_hand_partial_and_full():
    # Labels 0, 0, 1, 3; predictions 0, 1, 1, 2. Classes {0, 1, 2, 3}: 1/2, 1/1, 0 (no video), 0/1 -> 1.5 / 4.
    scores = one_hot([0, 1, 1, 2], 4)
    labels = np.array([0, 0, 1, 3])
    assert mean_class_accuracy(scores, labels) == pytest.approx(0.375)
    assert compute_metrics(scores, labels, list("wxyz")).mean_class_accuracy_present == pytest.approx(0.5)  # 1.5 / 3
    # Every class has a video and nothing is predicted outside them: the two agree.
    labels_full = np.array([0, 1, 2, 3, 0])
    full = compute_metrics(one_hot([0, 1, 3, 3, 1], 4), labels_full, list("wxyz"))
    assert full.mean_class_accuracy == full.mean_class_accuracy_present == pytest.approx((0.5 + 1 + 0 + 1) / 4)


def test_a_class_unused_by_labels_and_predictions_does_not_count():
    scores = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=float)
    labels = np.array([0, 0, 1, 2])
    per_class = per_class_accuracy(scores[:, :3], labels, ["x", "y", "z"])
    assert [(c.count, c.correct) for c in per_class] == [(2, 1), (1, 1), (1, 0)]
    metrics = compute_metrics(scores, labels, ["x", "y", "z", "unused"])
    assert metrics.mean_class_accuracy == pytest.approx(0.5)  # classes {0, 1, 2}: (0.5 + 1 + 0) / 3
    assert metrics.mean_class_accuracy_present == pytest.approx(0.5)
    assert metrics.top1 == 0.5
    assert math.isnan(metrics.per_class[3].accuracy)


def test_ties_rank_the_lower_class_first_and_mean_class_accuracy_uses_argmax_as_the_authors_do():
    scores = np.array([[0.5, 0.5, 0.0]])
    assert top_k_accuracy(scores, np.array([0]), 1) == 1.0
    assert top_k_accuracy(scores, np.array([1]), 1) == 0.0
    # Authors' mean class accuracy: argmax -> class 0. Label 1: classes {0, 1}: 0 (no video), 0/1 -> 0.
    assert mean_class_accuracy(scores, np.array([1])) == 0.0 == authors.mean_class_accuracy(scores, [1])
    assert mean_class_accuracy(scores, np.array([0])) == 1.0 == authors.mean_class_accuracy(scores, [0])
    # A tie inside the top k cannot matter: classes 1, 2, 3 tie for the top of 8; label 3 is in the top 3.
    tied = np.array([[0.0, 0.3, 0.3, 0.3, 0.05, 0.05, 0.0, 0.0]])
    assert top_k_accuracy(tied, np.array([3]), 3) == 1.0 == authors.top_k_accuracy(tied, [3], (3,))[0]
    assert top_k_accuracy(tied, np.array([3]), 5) == 1.0 == authors.top_k_accuracy(tied, [3], (5,))[0]


def test_random_predictions_equal_the_authors_code_exactly():
    rng = np.random.default_rng(0)
    differ_present = 0
    for case in range(600):
        num_classes = int(rng.integers(2, 30))
        num_videos = int(rng.integers(1, 60))
        # Half the cases draw labels from a few classes only (a subset), half from all of them.
        pool = rng.choice(num_classes, size=int(rng.integers(1, num_classes + 1)), replace=False) if case % 2 else np.arange(num_classes)
        labels = rng.choice(pool, size=num_videos)
        scores = rng.dirichlet(np.full(num_classes, 0.3), size=num_videos).astype(np.float32)  # no exact ties
        metrics = compute_metrics(scores, labels, [str(i) for i in range(num_classes)])
        top1, top5 = authors.top_k_accuracy(scores, labels, (1, 5))
        assert metrics.top1 == top1 and metrics.top5 == top5, case
        assert metrics.mean_class_accuracy == authors.mean_class_accuracy(scores, labels), case
        differ_present += metrics.mean_class_accuracy != metrics.mean_class_accuracy_present
    assert differ_present > 100  # the classes-present mean is a different statistic on most of these lists


def test_tied_scores_mean_class_equals_the_authors_and_top_k_lies_within_their_tie_orders():
    # The authors' order among equal scores is numpy's unstable default sort's: their top-k on a tie at
    # the k-th place can be any value between "the label loses every tie" and "wins every tie".
    rng = np.random.default_rng(1)
    for case in range(300):
        num_classes = int(rng.integers(2, 24))
        labels = rng.integers(0, num_classes, size=int(rng.integers(1, 40)))
        scores = rng.integers(0, 3, size=(len(labels), num_classes)).astype(np.float32)  # many ties
        metrics = compute_metrics(scores, labels, [str(i) for i in range(num_classes)])
        assert metrics.mean_class_accuracy == authors.mean_class_accuracy(scores, labels), case
        true_scores = scores[np.arange(len(labels)), labels]
        above = (scores > true_scores[:, None]).sum(axis=1)
        level = (scores >= true_scores[:, None]).sum(axis=1)
        for k, ours, theirs in ((1, metrics.top1, authors.top_k_accuracy(scores, labels, (1,))[0]),
                                (5, metrics.top5, authors.top_k_accuracy(scores, labels, (5,))[0])):
            lowest, highest = np.mean(level <= k), np.mean(above < k)
            assert lowest <= theirs <= highest and lowest <= ours <= highest, case


def test_failed_videos_are_counted_not_hidden():
    metrics = compute_metrics(SCORES, LABELS, NAMES, num_failed=4)
    assert metrics.top1 == 0.5  # over the 4 scored videos
    assert metrics.top1_all == 0.25  # 2 right of 8 listed
    summary = metrics.summary()
    assert summary["num_videos_used"] == 4 and summary["num_videos_failed"] == 4
    assert summary["top5"] == 0.75
    with_failures = metrics_from_probs([SCORES[0], None, SCORES[1], SCORES[2], None, None, SCORES[3], None],
                                       [0, 3, 1, 5, 4, 4, 2, 1], NAMES)
    assert with_failures == metrics


def test_no_scored_video_gives_nan_not_a_crash():
    metrics = compute_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int), ["x", "y", "z"], num_failed=2)
    assert math.isnan(metrics.top1) and math.isnan(metrics.mean_class_accuracy) and metrics.top1_all == 0.0
    assert metrics.num_failed == 2


def test_scores_file_reproduces_the_metrics(tmp_path):
    probs = [SCORES[0].astype(np.float32), None, SCORES[1].astype(np.float32), SCORES[2].astype(np.float32),
             SCORES[3].astype(np.float32)]
    labels = [0, 4, 1, 5, 2]
    videos = ["a.mp4", "b.mp4", "c d.mp4", "日本.mp4", "e.mp4"]
    path = tmp_path / "s.npz"
    write_bytes_atomic(path, scores_file_bytes(videos, labels, probs, [None, "no frames", None, None, None], NAMES))
    assert metrics_from_scores_file(path) == metrics_from_probs(probs, labels, NAMES)
    with np.load(path) as data:  # plain arrays, no pickle
        assert data["scores"].dtype == np.float32 and data["scores"].shape == (5, 6)
        assert np.isnan(data["scores"][1]).all() and data["failed"].tolist() == [False, True, False, False, False]
        assert data["videos"].tolist() == videos and data["errors"][1] == "no frames"
        assert data["class_names"].tolist() == NAMES and data["labels"].tolist() == labels


def test_a_file_that_is_not_a_scores_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot read a scores file"):
        metrics_from_scores_file(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", scores=np.zeros((1, 2)))
    with pytest.raises(ConfigError, match="no failed, labels"):
        metrics_from_scores_file(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", scores=SCORES.astype(np.float32), failed=np.zeros(4, bool), labels=LABELS,
             videos=np.array(list("abcd")), errors=np.array([""] * 4), class_names=np.array(NAMES[:5]))
    with pytest.raises(ConfigError, match="disagree in size"):  # 6 scores per video, 5 class names
        metrics_from_scores_file(tmp_path / "z.npz")


def test_per_class_csv():
    stream = io.StringIO()
    write_per_class_csv(compute_metrics(SCORES, LABELS, NAMES), stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "index,name,count,correct,accuracy"
    assert lines[1] == "0,a,1,1,1.000000"
    assert lines[2] == "1,b,1,0,0.000000"
    assert lines[4] == "3,d,0,0,"  # no video of class d


def test_the_readme_recomputes_the_metrics_from_a_scores_file(tmp_path, monkeypatch):
    import re

    from conftest import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "metrics_from_scores_file" in b)
    probs = [row.astype(np.float32) for row in SCORES] + [None]
    labels = [0, 1, 5, 2, 3]
    write_bytes_atomic(tmp_path / "scores.npz", scores_file_bytes([f"{i}.mp4" for i in range(5)], labels, probs,
                                                                  [None] * 4 + ["no frames"], NAMES))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 (the README's own example)
    assert namespace["metrics"] == metrics_from_probs(probs, labels, NAMES)
    assert namespace["right"].tolist() == [True, False, False, True]
