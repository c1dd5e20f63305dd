"""Classification metrics for `vswin eval` and the per-epoch validation of `vswin train`: one computation,
on each video's full probability vector.

The definitions are the authors' evaluation code, `mmaction/core/evaluation/accuracy.py` of the VST fork
(SwinTransformer/Video-Swin-Transformer, Apache-2.0; identical in open-mmlab/mmaction2 0.x, read at
open-mmlab/mmaction2@01436f0 and kanguyen-vn/Video-Swin-Transformer@6f95939), so that the same scores give
the same numbers as its `tools/test.py --eval top_k_accuracy mean_class_accuracy` on any list:

- top-k accuracy: the fraction of videos whose true label is among the k highest scores
  (`top_k_accuracy`: `np.argsort(scores, axis=1)[:, -k:][:, ::-1]`, then any match).
- mean class accuracy: `pred = np.argmax(scores, 1)`; a confusion matrix over the *union* of the
  predicted and the true classes (`confusion_matrix(pred, labels)`, `np.unique` of both); the mean over
  that union of hits / videos, a class with no video (predicted but never true) counting 0.
- `mean_class_accuracy_present` (ours): the same per-class top-1 averaged over the classes that have at
  least one video. On a list that holds every class of the model the two are equal; on a subset
  (`--limit`, a copy of Kinetics with missing videos) only `mean_class_accuracy` matches the authors'
  code, while `mean_class_accuracy_present` does not let wrong predictions into classes outside the
  list drag the mean down.

Ties: a video's classes are ranked by score with equal scores in ascending class index (a stable
sort), so top-1 is `np.argmax` and the predictions file's `top` order. The authors' `np.argsort` uses
numpy's default, unstable sort, whose order among equal scores depends on the numpy version and the
CPU's SIMD sort; with tied scores at the k-th place their top-k can go either way. Mean class accuracy
uses `np.argmax` in both and agrees exactly, ties or not.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vswin_cli.errors import ConfigError

SCORES_FILE_KEYS = ("scores", "failed", "labels", "videos", "errors", "class_names")


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

    `mean_class_accuracy` is the authors' (over predicted and true classes), `mean_class_accuracy_present`
    ours (over the classes that have videos); see the module docstring. `top1_all` counts failed videos
    as wrong (denominator `num_used + num_failed`), so a run with failures never looks better than it is.
    """

    top1: float
    top5: float
    mean_class_accuracy: float
    mean_class_accuracy_present: float
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
            "mean_class_accuracy_present": self.mean_class_accuracy_present,
            "top1_counting_failed_as_wrong": self.top1_all,
            "num_videos_used": self.num_used,
            "num_videos_failed": self.num_failed,
        }


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (equal scores: lower class index first).

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
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k) best first
    return float((top == labels[:, None]).any(axis=1).mean())


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The authors' mean class accuracy: mean top-1 accuracy over the predicted and the true classes.

    Args:
        scores: (N, K) float.
        labels: (N,) int, 0-based.

    Returns:
        the mean over `np.unique(concat(argmax(scores, 1), labels))` of hits / videos of that class
        (0 for a class that is predicted but has no video); NaN when N == 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    predicted = np.argmax(scores, axis=1)  # (N,)
    classes = np.unique(np.concatenate([predicted, labels]))
    size = int(classes[-1]) + 1
    counts = np.bincount(labels, minlength=size)[classes].astype(np.float64)
    hits = np.bincount(labels[predicted == labels], minlength=size)[classes].astype(np.float64)
    # Elementwise hit / cnt then np.mean over the sorted union: the authors' operations in their order.
    return float(np.mean(np.where(counts > 0, hits / np.maximum(counts, 1), 0.0)))


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
    """Top-1, top-5, both mean class accuracies and per-class accuracy of scored videos.

    The one accuracy computation: `vswin eval`, `vswin train`'s validation and
    `metrics_from_scores_file` all come here with full probability vectors.

    Args:
        scores: (N, K) float, one row per scored video.
        labels: (N,) int true labels.
        class_names: K class names.
        num_failed: videos that could not be scored (not in `scores`).

    Returns:
        `Metrics`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(labels), len(class_names))
    per_class = per_class_accuracy(scores, labels, class_names)
    present = [c.accuracy for c in per_class if c.count > 0]
    total = len(labels) + num_failed
    return Metrics(
        top1=top_k_accuracy(scores, labels, 1),
        top5=top_k_accuracy(scores, labels, 5),
        mean_class_accuracy=mean_class_accuracy(scores, labels),
        mean_class_accuracy_present=float(np.mean(present)) if present else float("nan"),
        top1_all=sum(c.correct for c in per_class) / total if total else float("nan"),
        num_used=len(labels),
        num_failed=num_failed,
        per_class=per_class,
    )


def metrics_from_probs(probs: Sequence[np.ndarray | None], labels: Sequence[int], class_names: list[str]) -> Metrics:
    """`Metrics` of listed videos from their probabilities, None for a video that failed (counted, not used).

    Args:
        probs: per video, (K,) float probabilities or None.
        labels: per video, the true label.
        class_names: K class names.
    """
    used = [i for i, p in enumerate(probs) if p is not None]
    scores = np.stack([probs[i] for i in used]) if used else np.zeros((0, len(class_names)), np.float32)
    return compute_metrics(scores, np.array([labels[i] for i in used], dtype=np.int64), class_names,
                           num_failed=len(probs) - len(used))


def scores_file_bytes(videos: Sequence[str], labels: Sequence[int], probs: Sequence[np.ndarray | None],
                      errors: Sequence[str | None], class_names: list[str]) -> bytes:
    """The `--scores` file (numpy `.npz`) of listed videos, in list order, as bytes.

    Arrays: `scores` (N, K) float32 probabilities (a NaN row for a failed video), `failed` (N,) bool,
    `labels` (N,) int64, `videos` (N,) str as listed, `errors` (N,) str ("" when scored),
    `class_names` (K,) str. No pickled objects: `np.load(path)` reads it as is.
    """
    scores = np.full((len(videos), len(class_names)), np.nan, dtype=np.float32)
    for row, p in enumerate(probs):
        if p is not None:
            scores[row] = p
    stream = io.BytesIO()
    np.savez(stream, scores=scores, failed=np.array([p is None for p in probs], dtype=bool).reshape(-1),
             labels=np.asarray(labels, dtype=np.int64).reshape(-1), videos=np.array(list(videos), dtype=str).reshape(-1),
             errors=np.array([e or "" for e in errors], dtype=str).reshape(-1),
             class_names=np.array(list(class_names), dtype=str))
    return stream.getvalue()


def metrics_from_scores_file(path: str | Path) -> Metrics:
    """Recompute `vswin eval`'s metrics from its `--scores` file (the same numbers, bit for bit).

    Raises:
        ConfigError: the file is not a `vswin eval --scores` file.
    """
    try:
        with np.load(path) as data:
            missing = [key for key in SCORES_FILE_KEYS if key not in data.files]
            arrays = {key: data[key] for key in SCORES_FILE_KEYS if key not in missing}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read a scores file: {e}", hint="give the .npz that `vswin eval --scores` wrote") from e
    if missing:
        raise ConfigError(f"{path}: not a `vswin eval --scores` file (no {', '.join(missing)})",
                          hint="give the .npz that `vswin eval --scores` wrote")
    failed, scores = arrays["failed"], arrays["scores"]
    if scores.ndim != 2 or scores.shape != (len(failed), len(arrays["class_names"])) or len(arrays["labels"]) != len(failed):
        raise ConfigError(f"{path}: the scores file's arrays disagree in size: scores {scores.shape}, "
                          f"{len(arrays['labels'])} labels, {len(failed)} failed flags, {len(arrays['class_names'])} classes",
                          hint="give the .npz that `vswin eval --scores` wrote, unchanged")
    return compute_metrics(arrays["scores"][~failed], arrays["labels"][~failed], [str(n) for n in arrays["class_names"]],
                           num_failed=int(failed.sum()))


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
