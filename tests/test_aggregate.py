"""Aggregation on hand-built logits: softmax-then-mean, weights for repeated views, top-k, merge."""

from __future__ import annotations

import math

import torch

from vswin_cli.aggregate import LabelScore, RunningMean, SegmentResult, average_views, merge_segments, top_k

LABELS = ["a", "b", "c", "d"]


def test_average_is_softmax_then_mean_not_mean_then_softmax():
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    probs = average_views(logits)
    expected_a = (math.exp(4) / (math.exp(4) + 3) + 0.25) / 2
    assert math.isclose(probs[0].item(), expected_a, rel_tol=1e-6)
    assert math.isclose(probs.sum().item(), 1.0, rel_tol=1e-6)


def test_weighted_unique_views_equal_the_repeated_views():
    torch.manual_seed(0)
    unique = torch.randn(3, 4)
    repeated = unique.repeat(4, 1)  # 12 views, 4 copies of each of 3 crops
    weighted = average_views(unique, "prob", torch.tensor([4.0, 4.0, 4.0]))
    torch.testing.assert_close(weighted, average_views(repeated))
    uneven = average_views(unique, "prob", torch.tensor([2.0, 1.0, 1.0]))
    torch.testing.assert_close(uneven, average_views(unique[[0, 0, 1, 2]]))


def test_top_k_order_and_threshold():
    probs = torch.tensor([0.1, 0.6, 0.05, 0.25])
    assert top_k(probs, LABELS, k=2) == (LabelScore("b", 1, 0.6), LabelScore("d", 3, 0.25))
    assert [t.label for t in top_k(probs, LABELS, k=4, threshold=0.1)] == ["b", "d", "a"]
    assert top_k(probs, LABELS, k=0) == ()
    assert len(top_k(probs, LABELS, k=10)) == 4


def test_summary_weights_segments_by_frames():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mean = RunningMean()
    for row, frames in zip(probs, [3, 1]):
        mean.add(row, frames)
    torch.testing.assert_close(mean.mean(), torch.tensor([0.75, 0.25]))


def _seg(i, label_index, score):
    top = (LabelScore(LABELS[label_index], label_index, score),) if score else ()
    return SegmentResult("v.mp4", i, i * 2.0, i * 2.0 + 2.0, i * 64, i * 64 + 64, top, 1, "m")


def test_merge_joins_runs_of_the_same_top_label():
    segs = [_seg(0, 1, 0.5), _seg(1, 1, 0.7), _seg(2, 2, 0.9), _seg(3, 0, 0.0), _seg(4, 2, 0.4), _seg(5, 2, 0.6)]
    events = merge_segments(segs)
    assert [(e.label, e.first_segment, e.last_segment) for e in events] == [("b", 0, 1), ("c", 2, 2), ("c", 4, 5)]
    assert events[0].start == 0.0 and events[0].end == 4.0 and events[0].end_frame == 128
    assert math.isclose(events[0].score, 0.6)
    assert merge_segments([]) == ()
