"""Classification metrics for `vswin eval` and the per-epoch validation of `vswin train`.

Definitions follow mmaction2's `top_k_accuracy` and `mean_class_accuracy` (Apache-2.0): top-k counts a
video as right when its true label is among the k highest scores; mean class accuracy is the mean of the
per-class top-1 accuracies over the classes that have at least one video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassAccuracy:
    """Top-1 accuracy of one class: `correct` of `count` videos whose true label is `index`."""

    index: int
    name: str
    count: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")


@dataclass(frozen=True)
class Metrics:
    """Accuracies over the videos that were scored (`num_used`); `num_failed` could not be scored.

    `top1_all` counts failed videos as wrong (denominator `num_used + num_failed`), so a run with
    failures never looks better than it is.
    """

    top1: float
    top5: float
    mean_class_accuracy: float
    top1_all: float
    num_used: int
    num_failed: int
    per_class: tuple[ClassAccuracy, ...]

    def summary(self) -> dict:
        """The scalar fields as a JSON-ready dict (per-class accuracy goes to its own CSV)."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "top1_counting_failed_as_wrong": self.top1_all,
            "num_videos_used": self.num_used,
            "num_videos_failed": self.num_failed,
        }


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores.

    Args:
        scores: (N, K) float, any monotone score (logits or probabilities).
        labels: (N,) int, 0-based.
        k: how many top classes count; clipped to K.

    Returns:
        accuracy in [0, 1]; NaN when N == 0.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    # A stable sort on the negated scores breaks ties by the lower class index, as argmax does.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((top == labels[:, None]).any(axis=1).mean())


def per_class_accuracy(scores: np.ndarray, labels: np.ndarray, class_names: list[str]) -> tuple[ClassAccuracy, ...]:
    """Top-1 accuracy per class, one entry per class in `class_names` (count 0 where no video has it).

    Args:
        scores: (N, K) float.
        labels: (N,) int.
        class_names: K names, index i = class i.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.argmax(scores, axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(class_names))
    correct = np.bincount(labels[predicted == labels], minlength=len(class_names))
    return tuple(
        ClassAccuracy(index=i, name=name, count=int(counts[i]), correct=int(correct[i]))
        for i, name in enumerate(class_names)
    )


def compute_metrics(scores: np.ndarray, labels: np.ndarray, class_names: list[str], num_failed: int = 0) -> Metrics:
    """Top-1, top-5, mean class accuracy and per-class accuracy of scored videos.

    Args:
        scores: (N, K) float, one row per scored video.
        labels: (N,) int true labels.
        class_names: K class names.
        num_failed: videos that could not be scored (not in `scores`).

    Returns:
        `Metrics`.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(len(labels), -1) if len(labels) else np.zeros((0, len(class_names)))
    labels = np.asarray(labels, dtype=np.int64)
    per_class = per_class_accuracy(scores, labels, class_names)
    present = [c.accuracy for c in per_class if c.count > 0]
    top1 = top_k_accuracy(scores, labels, 1)
    num_correct = sum(c.correct for c in per_class)
    total = len(labels) + num_failed
    return Metrics(
        top1=top1,
        top5=top_k_accuracy(scores, labels, 5),
        mean_class_accuracy=float(np.mean(present)) if present else float("nan"),
        top1_all=num_correct / total if total else float("nan"),
        num_used=len(labels),
        num_failed=num_failed,
        per_class=per_class,
    )
