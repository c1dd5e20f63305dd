"""One training epoch and one evaluation pass: plain functions with explicit arguments, device-agnostic.

Layout after facebookresearch/mae `engine_finetune.py` (CC BY-NC 4.0; structure only, no code copied):
`train.py` owns the set-up (model, data, optimizer, checkpoints), this file owns the loops.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from vswin_cli.datasets import ListEntry
from vswin_cli.distributed import current_shard, gather_to_rank0
from vswin_cli.errors import ConfigError
from vswin_cli.inputs import VideoInput
from vswin_cli.metrics import Metrics, metrics_from_ranked
from vswin_cli.precision import autocast
from vswin_cli.outputs import OutputFile
from vswin_cli.resume import Kept, read_jsonl
from vswin_cli.protocol import ClipSpec


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
    on_step=None,
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
        log: optional callable(str) for a progress line every 50 batches (when `on_step` is not given).
        on_step: optional callable(batches done, batches in the epoch, loss (a 0-d tensor: `.item()` it only
            when shown, to keep CUDA asynchronous), clips in the batch), after every batch.

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
        if on_step is not None:
            on_step(step + 1, num_batches, loss.detach(), len(labels))
        elif log is not None and (step + 1) % 50 == 0:
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


# --- evaluation: the tag engine with one whole-video segment per video --------------------------------------


def score_entries(model: torch.nn.Module, entries: list[ListEntry], spec: ClipSpec, class_names: list[str],
                  device: torch.device, *, max_views: int = 12, workers: int = 0, precision: str = "fp32",
                  runtime: str = "torch", runtime_cache: str | None = None, on_video=None,
                  engine: str = "local", ray_address: str | None = None,
                  verbose: bool = False) -> list[tuple[int, np.ndarray | None, str | None]]:
    """Class probabilities of listed videos with the published test protocol, across ranks.

    Each video is one segment (the whole video) scored by `api.Tagger.classify`: the same decode, views and
    softmax-then-mean as `vswin tag`, so tag and eval cannot drift apart.

    Args:
        model: the classifier (set to eval mode here; the caller sets train mode again).
        entries: the videos, all ranks alike; this rank scores every world_size-th.
        spec: the views (sampling, clips, crops, sizes).
        class_names: the label map.
        device: where the model lives.
        max_views: views per forward pass.
        workers: decoding processes.
        precision: "fp32", "bf16" or "fp16" (see `inference.RunOptions`).
        runtime, runtime_cache: the CPU runtime of the network (see `inference.RunOptions`).
        on_video: optional callable(index, probs | None, error | None) as each of this rank's videos is done.
        engine, ray_address, verbose: "local", or "ray" on a Ray cluster (`api.Tagger.engine`).

    Returns:
        On rank 0, `(index in entries, (K,) float32 probabilities or None, error or None)` for every
        entry, in order; [] on other ranks.
    """
    from vswin_cli.api import Tagger

    shard = current_shard()
    mine = shard.take(range(len(entries)))
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    tagger = Tagger(net, class_names, name="eval", device=device, precision=precision, runtime=runtime,
                    runtime_cache=runtime_cache)
    videos = [VideoInput(entries[i].path, str(i)) for i in mine]
    local = []
    for scored in tagger.classify(videos, spec=spec, batch_views=max_views, workers=workers, engine=engine,
                                  ray_address=ray_address, verbose=verbose):
        item = (int(scored.video), scored.probs, scored.error)
        local.append(item)
        if on_video is not None:
            on_video(*item)
    return sorted(gather_to_rank0(local), key=lambda item: item[0])


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


def prediction_record(entry: ListEntry, probs: np.ndarray | None, error: str | None, class_names: list[str],
                      top_k: int = 5) -> dict:
    """One line of the predictions JSONL: the video, its true label, and its top-k classes or its error."""
    record = {"video": entry.rel_path, "line": entry.line, "label": entry.label, "label_name": class_names[entry.label]}
    if probs is None:
        record["error"] = error
        return record
    best = np.argsort(-probs, kind="stable")[:top_k]
    record["correct"] = bool(best[0] == entry.label)
    record["top"] = [{"index": int(i), "label": class_names[i], "score": round(float(probs[i]), 6)} for i in best]
    return record


def read_predictions(path: Path) -> Kept:
    """The complete records of an earlier predictions JSONL (a torn last line is dropped), for `--resume`."""
    kept = Kept([], set())
    for record in read_jsonl(path):
        if "video" in record and ("top" in record or "error" in record):
            kept.lines.append(json.dumps(record) + "\n")
            kept.done.add(record["video"])
    return kept


def evaluate_list(
    model: torch.nn.Module,
    entries: list[ListEntry],
    spec: ClipSpec,
    class_names: list[str],
    device: torch.device,
    *,
    max_views: int = 12,
    workers: int = 0,
    precision: str = "fp32",
    predictions: Path | None = None,
    resume: bool = False,
    progress=None,
    runtime: str = "torch",
    runtime_cache: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    verbose: bool = False,
) -> EvalReport | None:
    """Evaluate `model` on listed videos with the test protocol `spec`; rank 0 gets the report.

    Args:
        model: the classifier (eval mode is set here).
        entries: the videos (`select_entries` output).
        spec: views per video (sampling, clips, crops, sizes).
        class_names: the label map (K names).
        device: where the model lives.
        max_views: views per forward pass.
        workers: decoding processes per rank.
        precision: autocast precision.
        predictions: JSONL file of per-video records, written through `PATH.part` (one line per video as
            it finishes on a single process; by rank 0 after the gather under torchrun).
        resume: keep the complete records already in `predictions` and evaluate only the other videos.
        progress: optional callable(done, total) on rank 0.
        engine, ray_address, verbose: "local", or "ray" on a Ray cluster (`api.Tagger.engine`).

    Returns:
        `EvalReport` on rank 0, None on other ranks. Failed videos are listed, never dropped silently.
    """
    shard = current_shard()
    out = OutputFile(str(predictions) if predictions is not None else "-", resume=resume, read_done=read_predictions,
                     lock=shard.rank == 0)
    records = {r["video"]: r for r in map(json.loads, out.kept_lines)}
    todo = [e for e in entries if e.rel_path not in out.done]
    stream = out.open() if predictions is not None and shard.rank == 0 else None
    done = len(entries) - len(todo)

    def keep(index, probs, error) -> None:
        record = prediction_record(todo[index], probs, error, class_names)
        records[record["video"]] = record
        if stream is not None:
            stream.write(json.dumps(record) + "\n")
            stream.flush()

    def on_video(index, probs, error) -> None:
        nonlocal done
        done += 1
        if shard.world_size == 1:  # as videos finish, so --resume keeps them; else after the gather
            keep(index, probs, error)
        if progress is not None and shard.rank == 0:
            progress(done, len(entries))

    try:
        scored = score_entries(model, todo, spec, class_names, device, max_views=max_views, workers=workers,
                               precision=precision, runtime=runtime, runtime_cache=runtime_cache, on_video=on_video,
                               engine=engine, ray_address=ray_address, verbose=verbose)
    except BaseException:
        if stream is not None:
            out.commit(final=False)  # keep PATH.part for --resume
        raise
    if shard.rank != 0:
        return None
    if shard.world_size > 1:
        for item in scored:
            keep(*item)
    out.commit()
    ordered = [records[e.rel_path] for e in entries]
    good = [r for r in ordered if "top" in r]
    ranked = np.array([[t["index"] for t in r["top"]] for r in good], dtype=np.int64).reshape(len(good), -1)
    labels = np.array([r["label"] for r in good], dtype=np.int64)
    metrics = metrics_from_ranked(ranked, labels, class_names, num_failed=len(ordered) - len(good))
    failed = tuple((r["video"], r["error"]) for r in ordered if "error" in r)
    return EvalReport(metrics=metrics, failed=failed, num_resumed=len(entries) - len(todo))
