"""Turning per-view logits into tags: softmax-then-mean over views, top-k, per-video summary, merging.

The official Video Swin test code (SwinTransformer/Video-Swin-Transformer, Apache-2.0,
`mmaction/models/recognizers/base.py::average_clip` with `average_clips='prob'`) takes a softmax per
view and the mean over views. Views that are identical (same frames, same crop) are computed once
and carry a weight equal to how often the sampling formula produced them, so the weighted mean here
equals the official plain mean.

The records defined here are the seam between inference and the writers.
"""

from __future__ import annotations

from typing import Sequence

import torch

from models import average_views  # noqa: F401  (softmax per view, then the weighted mean: one implementation)
from vswin_cli.records import Event, LabelScore, SegmentResult, VideoError, VideoResult, VideoSummary  # noqa: F401


def top_k(probs: torch.Tensor, labels: Sequence[str], k: int = 5, threshold: float = 0.0) -> tuple[LabelScore, ...]:
    """The k most probable classes whose score is at least `threshold`, best first.

    Args:
        probs: (K,) class probabilities.
        labels: K class names.
        k: how many to keep (0 keeps none).
        threshold: minimum score to keep.

    Returns:
        Up to k `LabelScore`s, scores rounded to 6 decimals.
    """
    k = min(k, probs.numel())
    if k <= 0:
        return ()
    scores, indices = torch.topk(probs.float(), k)
    return tuple(
        LabelScore(label=labels[i], index=i, score=round(s, 6))
        for s, i in zip(scores.tolist(), indices.tolist())
        if s >= threshold
    )


class RunningMean:
    """A video's probabilities: the mean of its segments' weighted by their frame counts.

    Segments are added one at a time, in order, as they stream out (so nothing per segment is kept);
    the sum is in float64, so the order-dependent rounding stays far below the 6 decimals written.
    """

    def __init__(self):
        self.total: torch.Tensor | None = None  # float64 (K,)
        self.weight = 0

    def add(self, probs: torch.Tensor, num_frames: int) -> None:
        """Add one segment's (K,) probabilities; a segment counts at least 1 frame."""
        weighted = probs.double() * max(num_frames, 1)
        self.total = weighted if self.total is None else self.total + weighted
        self.weight += max(num_frames, 1)

    def mean(self) -> torch.Tensor:
        """(K,) float32 probabilities summing to 1."""
        return (self.total / self.weight).float()


def merge_segments(segments: Sequence[SegmentResult]) -> tuple[Event, ...]:
    """Join consecutive segments whose top label is the same into one event.

    Args:
        segments: one video's segments in time order (each with at least one tag to be merged;
            segments without tags, e.g. all below --threshold, break a run and are left out).

    Returns:
        Events in time order; each event's score is the mean of its segments' top scores.
    """
    events: list[Event] = []
    run: list[SegmentResult] = []

    def close_run() -> None:
        if run:
            first, last = run[0], run[-1]
            best = first.top[0]
            mean_score = sum(s.top[0].score for s in run) / len(run)
            events.append(Event(
                video=first.video, label=best.label, index=best.index, score=round(mean_score, 6),
                start=first.start, end=last.end, start_frame=first.start_frame, end_frame=last.end_frame,
                first_segment=first.segment, last_segment=last.segment, model=first.model,
            ))
        run.clear()

    for seg in segments:
        if not seg.top:
            close_run()
            continue
        if run and seg.top[0].index != run[-1].top[0].index:
            close_run()
        run.append(seg)
    close_run()
    return tuple(events)
