"""Classification metrics for `vswin eval` and the per-epoch validation of `vswin train`.

Definitions follow mmaction2's `top_k_accuracy` and `mean_class_accuracy` (Apache-2.0): top-k counts a
video as right when its true label is among the k highest scores; mean class accuracy is the mean of the
per-class top-1 accuracies over the classes that have at least one video.
"""

from __future__ import annotations

import csv
import io
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
    scores = np.asarray(scores, dtype=np.float64).reshape(len(labels), len(class_names))
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :5]  # (N, min(5, K)) best first
    return metrics_from_ranked(ranked, labels, class_names, num_failed)


def metrics_from_ranked(ranked: np.ndarray, labels: np.ndarray, class_names: list[str], num_failed: int = 0) -> Metrics:
    """`Metrics` from each video's best classes (what a predictions file keeps), not full scores.

    Args:
        ranked: (N, k) int class indices, best first, k >= 1 (top-5 needs k >= min(5, K)).
        labels: (N,) int true labels.
        class_names: K class names.
        num_failed: videos that could not be scored.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ranked = np.asarray(ranked, dtype=np.int64).reshape(len(labels), -1) if len(labels) else np.zeros((0, 1), np.int64)
    hits = ranked == labels[:, None]  # (N, k)
    counts = np.bincount(labels, minlength=len(class_names))
    correct = np.bincount(labels[hits[:, 0]], minlength=len(class_names)) if len(labels) else np.zeros(len(class_names), int)
    per_class = tuple(
        ClassAccuracy(index=i, name=name, count=int(counts[i]), correct=int(correct[i])) for i, name in enumerate(class_names)
    )
    present = [c.accuracy for c in per_class if c.count > 0]
    total = len(labels) + num_failed
    nan = float("nan")
    return Metrics(
        top1=float(hits[:, 0].mean()) if len(labels) else nan,
        top5=float(hits[:, :5].any(axis=1).mean()) if len(labels) else nan,
        mean_class_accuracy=float(np.mean(present)) if present else nan,
        top1_all=int(hits[:, 0].sum()) / total if total else nan,
        num_used=len(labels),
        num_failed=num_failed,
        per_class=per_class,
    )


def per_class_csv(metrics: Metrics) -> str:
    """Per-class accuracy as CSV text: index,name,count,correct,accuracy (empty accuracy when count is 0)."""
    stream = io.StringIO()
    write_per_class_csv(metrics, stream)
    return stream.getvalue()


def eval_summary(report, model_name: str, dataset, spec, num_listed: int) -> dict:
    """The `vswin eval` metrics document: model, dataset, protocol, accuracies, and every failed video."""
    return {
        "model": model_name, "dataset": str(dataset),
        "protocol": {"sampling": spec.sampling, "clip_len": spec.clip_len, "frame_interval": spec.frame_interval,
                     "num_clips": spec.num_clips, "num_crops": spec.num_crops, "crop_size": spec.crop_size},
        **report.metrics.summary(), "num_videos_listed": num_listed, "num_videos_resumed": report.num_resumed,
        "failed": [{"video": video, "reason": reason} for video, reason in report.failed],
    }


def write_per_class_csv(metrics: Metrics, stream) -> None:
    """Per-class accuracy as CSV: index,name,count,correct,accuracy (empty accuracy when count is 0)."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["index", "name", "count", "correct", "accuracy"])
    for c in metrics.per_class:
        writer.writerow([c.index, c.name, c.count, c.correct, f"{c.accuracy:.6f}" if c.count else ""])
