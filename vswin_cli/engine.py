"""One training epoch and one evaluation pass: plain functions with explicit arguments, device-agnostic.

Layout after facebookresearch/mae `engine_finetune.py` (CC BY-NC 4.0; structure only, no code copied):
`train.py` owns the set-up (model, data, optimizer, checkpoints), this file owns the loops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vswin_cli.aggregate import average_views
from vswin_cli.datasets import ClipSpec, EvalClips, ListEntry, collate_eval
from vswin_cli.errors import ConfigError
from vswin_cli.files import write_text_atomic
from vswin_cli.metrics import Metrics, metrics_from_ranked
from vswin_cli.options import autocast


@dataclass(frozen=True)
class EpochStats:
    """Mean training loss over the epoch's clips (all ranks), the learning rate at its end, clips/s."""

    loss: float
    lr: float
    num_clips: int
    seconds: float

    @property
    def clips_per_second(self) -> float:
        return self.num_clips / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class VideoScores:
    """Class probabilities of one video (softmax per view, mean over views), or the reason it failed."""

    index: int
    probs: np.ndarray | None  # (K,) float32
    error: str | None = None


def train_one_epoch(
    model: torch.nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler,
    device: torch.device,
    *,
    precision: str = "fp32",
    accum_steps: int = 1,
    label_smoothing: float = 0.0,
    log=None,
) -> EpochStats:
    """Train over `loader` once; the optimizer and scheduler step once per `accum_steps` batches.

    Args:
        model: the network, possibly wrapped in DistributedDataParallel (then gradients are synchronised
            only on the last batch of each accumulation cycle, via `no_sync`).
        loader: yields (clips (B, 3, T, H, W) float32, labels (B,) int64, errors (B,) str, "" = fine).
        optimizer, scheduler: stepped per optimizer step (the schedule is per step, not per epoch).
        scaler: a `torch.amp.GradScaler` for fp16, else None.
        device: where the model lives.
        precision: "fp32", "bf16" or "fp16" (autocast dtype).
        accum_steps: batches per optimizer step.
        label_smoothing: cross-entropy label smoothing.
        log: optional callable(str) for progress lines.

    Returns:
        `EpochStats`.
    """
    model.train()
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    start = time.perf_counter()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    num_clips = torch.zeros((), dtype=torch.float64, device=device)
    num_batches = len(loader)
    optimizer.zero_grad(set_to_none=True)
    for step, (clips, labels, errors) in enumerate(loader):
        bad = [e for e in errors if e]
        if bad:
            raise ConfigError(f"a training video cannot be decoded: {bad[0]}",
                              hint="remove it from the list or re-encode it; `vswin eval` on the list names every unreadable video")
        clips = clips.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        is_update = (step + 1) % accum_steps == 0 or step + 1 == num_batches
        sync = contextlib.nullcontext() if (is_update or not is_ddp) else model.no_sync()
        with sync:
            with autocast(device, precision):
                logits = model(clips)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
            scaled = loss / accum_steps
            if scaler is not None:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if is_update:
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        loss_sum += loss.detach().double() * len(labels)
        num_clips += len(labels)
        if log is not None and (step + 1) % 50 == 0:
            log(f"  step {step + 1}/{num_batches}  loss {loss.item():.4f}")
    if dist.is_available() and dist.is_initialized():
        totals = torch.stack([loss_sum, num_clips])
        dist.all_reduce(totals)
        loss_sum, num_clips = totals[0], totals[1]
    return EpochStats(
        loss=float(loss_sum / num_clips.clamp(min=1)),
        lr=optimizer.param_groups[-1]["lr"],
        num_clips=int(num_clips),
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader,
    device: torch.device,
    *,
    precision: str = "fp32",
    max_views: int = 8,
    on_video=None,
) -> list[VideoScores]:
    """Score every video of `loader` on this process: softmax per view, mean over views.

    Args:
        model: the network (unwrapped or DDP; evaluation runs the plain module).
        loader: yields lists of `EvalClips` items (dicts with index, views (V, 3, T, H, W) or None, error).
        device: where the model lives.
        precision: autocast precision.
        max_views: views per forward pass (views of several videos are batched together).
        on_video: optional callable(VideoScores) called as each video is done (for streaming output).

    Returns:
        one `VideoScores` per item, in loader order; failed videos carry their error and no scores.
    """
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    net.eval()
    results: list[VideoScores] = []
    for items in loader:
        good = [item for item in items if item["views"] is not None]
        logits_per_video: list[torch.Tensor] = []
        if good:
            views = torch.cat([item["views"] for item in good])  # (sum V_i, 3, T, H, W)
            chunks = []
            for chunk in views.split(max_views):
                with autocast(device, precision):
                    chunks.append(net(chunk.to(device, non_blocking=True)).float().cpu())
            logits_per_video = list(torch.cat(chunks).split([len(item["views"]) for item in good]))
        by_index = {item["index"]: logits for item, logits in zip(good, logits_per_video)}
        for item in items:
            if item["views"] is None:
                scores = VideoScores(index=item["index"], probs=None, error=item["error"])
            else:
                scores = VideoScores(index=item["index"], probs=average_views(by_index[item["index"]]).numpy())
            results.append(scores)
            if on_video is not None:
                on_video(scores)
    return results


# --- evaluation over a list, across processes --------------------------------------------------------------


def gather_to_rank0(items: list) -> list:
    """All processes' lists concatenated on rank 0 (others get []); the input itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(items, gathered, dst=0)
    return [x for part in gathered for x in part] if gathered is not None else []


def eval_loader(entries: list[ListEntry], spec: ClipSpec, batch_size: int, workers: int, rank: int, world_size: int):
    """A loader over this rank's share of `entries` (every world_size-th video, no padding)."""
    shard = list(range(rank, len(entries), world_size))
    dataset = EvalClips([entries[i] for i in shard], spec)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_eval)
    return loader, shard


def evaluate_entries(model, entries, spec, device, *, batch_size=1, workers=0, precision="fp32", max_views=8, on_video=None):
    """Score `entries` across all ranks; rank 0 gets every `VideoScores` (index = position in entries)."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    loader, shard = eval_loader(entries, spec, batch_size, workers, rank, world_size)

    def to_global(s: VideoScores) -> VideoScores:
        return dataclasses.replace(s, index=shard[s.index])

    callback = (lambda s: on_video(to_global(s))) if on_video is not None else None
    local = [to_global(s) for s in evaluate(model, loader, device, precision=precision, max_views=max_views, on_video=callback)]
    return sorted(gather_to_rank0(local), key=lambda s: s.index)


@dataclass(frozen=True)
class EvalReport:
    """The outcome of `evaluate_list`: metrics, and every video that failed with its reason."""

    metrics: Metrics
    failed: tuple[tuple[str, str], ...]  # (path as listed, reason)
    num_resumed: int


def select_entries(entries: list[ListEntry], limit: int | None, shuffle_seed: int | None) -> list[ListEntry]:
    """The videos to evaluate: all, or a seeded random order, then the first `limit` of them."""
    entries = list(entries)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(entries)
    return entries[:limit] if limit is not None else entries


def prediction_record(entry: ListEntry, scores: VideoScores, class_names: list[str], top_k: int = 5) -> dict:
    """One line of the predictions JSONL: the video, its true label, and its top-k classes or its error."""
    record = {"video": entry.rel_path, "line": entry.line, "label": entry.label, "label_name": class_names[entry.label]}
    if scores.probs is None:
        record["error"] = scores.error
        return record
    best = np.argsort(-scores.probs, kind="stable")[:top_k]
    record["correct"] = bool(best[0] == entry.label)
    record["top"] = [{"index": int(i), "label": class_names[i], "score": round(float(scores.probs[i]), 6)} for i in best]
    return record


def read_predictions(path: Path) -> dict[str, dict]:
    """Complete records of an earlier predictions JSONL, by video (a cut-off last line is ignored)."""
    done = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the run was killed
        if isinstance(record, dict) and "video" in record and ("top" in record or "error" in record):
            done[record["video"]] = record
    return done


def evaluate_list(
    model: torch.nn.Module,
    entries: list[ListEntry],
    spec: ClipSpec,
    class_names: list[str],
    device: torch.device,
    *,
    batch_size: int = 1,
    max_views: int = 12,
    workers: int = 0,
    precision: str = "fp32",
    predictions: Path | None = None,
    resume: bool = False,
    progress=None,
) -> EvalReport | None:
    """Evaluate `model` on listed videos with the test protocol `spec`; rank 0 gets the report.

    Args:
        model: the classifier (eval mode is set here).
        entries: the videos (`select_entries` output).
        spec: views per video (sampling, clips, crops, sizes).
        class_names: the label map (K names).
        device: where the model lives.
        batch_size: videos decoded and batched together.
        max_views: views per forward pass.
        workers: decoding processes per rank (torch DataLoader workers).
        precision: autocast precision.
        predictions: JSONL file of per-video records (appended as videos finish on a single process,
            written by rank 0 after the gather under torchrun).
        resume: keep the complete records already in `predictions` and evaluate only the other videos.
        progress: optional callable(done, total) on rank 0.

    Returns:
        `EvalReport` on rank 0, None on other ranks. Failed videos are listed, never dropped silently.
    """
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    done = read_predictions(predictions) if (resume and predictions is not None) else {}
    todo = [i for i, e in enumerate(entries) if e.rel_path not in done]
    stream = None
    if predictions is not None and rank == 0:
        predictions.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            # Rewrite only the complete records, so a half-written last line cannot corrupt the file.
            write_text_atomic(predictions, "".join(json.dumps(r) + "\n" for r in done.values()))
        stream = open(predictions, "a" if resume else "w", encoding="utf-8")
    counter = {"done": len(entries) - len(todo)}

    def on_video(scores: VideoScores) -> None:
        if stream is not None and world_size == 1:
            stream.write(json.dumps(prediction_record(entries[todo[scores.index]], scores, class_names)) + "\n")
            stream.flush()
        counter["done"] += 1
        if progress is not None and rank == 0:
            progress(counter["done"], len(entries))

    try:
        subset = [entries[i] for i in todo]
        scored = evaluate_entries(model, subset, spec, device, batch_size=batch_size, workers=workers,
                                  precision=precision, max_views=max_views, on_video=on_video)
        if rank != 0:
            return None
        records = dict(done)
        for s in scored:
            record = prediction_record(subset[s.index], s, class_names)
            records[record["video"]] = record
            if stream is not None and world_size > 1:
                stream.write(json.dumps(record) + "\n")
    finally:
        if stream is not None:
            stream.close()
    ordered = [records[e.rel_path] for e in entries]
    good = [r for r in ordered if "top" in r]
    ranked = np.array([[t["index"] for t in r["top"]] for r in good], dtype=np.int64).reshape(len(good), -1)
    labels = np.array([r["label"] for r in good], dtype=np.int64)
    metrics = metrics_from_ranked(ranked, labels, class_names, num_failed=len(ordered) - len(good))
    failed = tuple((r["video"], r["error"]) for r in ordered if "error" in r)
    return EvalReport(metrics=metrics, failed=failed, num_resumed=len(entries) - len(todo))
