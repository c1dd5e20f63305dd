"""One training epoch and one evaluation pass: plain functions with explicit arguments, device-agnostic.

Layout after facebookresearch/mae `engine_finetune.py` (CC BY-NC 4.0; structure only, no code copied):
`train.py` owns the set-up (model, data, optimizer, checkpoints), this file owns the loops.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from vswin_cli.files import sibling, temp_file, write_bytes_atomic
from vswin_cli.metrics import Metrics, metrics_from_probs, scores_file_bytes
from vswin_cli.precision import autocast
from vswin_cli.outputs import OutputFile
from vswin_cli.results import read_jsonl
from vswin_cli.resume import Kept, ResumeLog
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
                                  ray_address=ray_address, verbose=verbose) if videos else ():
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


def read_predictions(path: Path, probs_log: ResumeLog | None = None, probs: dict[str, np.ndarray] | None = None) -> Kept:
    """The complete records of an earlier predictions JSONL (a torn last line is dropped), for `--resume`.

    Args:
        path: the predictions file (or its `.part`).
        probs_log: the probabilities kept beside it; with it, a scored video is kept only when its
            probabilities are there too (else it is evaluated again), and they are added to `probs`.
        probs: receives {video: (K,) float32 probabilities} of the kept scored videos.
    """
    records = [r for r in read_jsonl(path) if "video" in r and ("top" in r or "error" in r)]
    if probs_log is not None:
        found = probs_log.read({r["video"]: [{"segment": 0}] for r in records if "top" in r})
        saved = {video: rows[0].numpy() for video, rows in found.items() if rows}
        records = [r for r in records if "error" in r or r["video"] in saved]
        if probs is not None:
            probs.update((r["video"], saved[r["video"]]) for r in records if "top" in r)
    return Kept([json.dumps(r) + "\n" for r in records], {r["video"] for r in records})


def _reopen_probs_log(log: ResumeLog, kept: dict[str, np.ndarray]) -> None:
    """Open `log` holding the kept videos' probabilities, swapped in whole: under torchrun the other
    ranks may still be reading the old file for `--resume`."""
    fd, tmp = temp_file(log.path.parent)
    log.stream = open(fd, "w", encoding="utf-8")
    for video, row in kept.items():
        log.write(video, 0, torch.from_numpy(row))
    os.replace(tmp, log.path)  # the open handle now writes into the log


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
    scores: Path | None = None,
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
            it finishes on a single process; by rank 0 after the gather under torchrun). Each scored
            video's probabilities go to the hidden `.PATH.probs` beside it first, for `resume`.
        resume: keep the complete records already in `predictions` (those whose probabilities are in
            `.PATH.probs`, and the failed ones) and evaluate only the other videos.
        scores: `.npz` file of every listed video's probabilities (`metrics.scores_file_bytes`),
            written atomically by rank 0 when the run ends.
        progress: optional callable(done, total) on rank 0.
        engine, ray_address, verbose: "local", or "ray" on a Ray cluster (`api.Tagger.engine`).

    Returns:
        `EvalReport` on rank 0, None on other ranks. Failed videos are listed, never dropped silently.
    """
    shard = current_shard()
    probs_log = ResumeLog(sibling(predictions, ".probs", hidden=True)) if predictions is not None else None
    probs: dict[str, np.ndarray] = {}
    out = OutputFile(str(predictions) if predictions is not None else "-", resume=resume,
                     read_done=lambda path: read_predictions(path, probs_log, probs), lock=shard.rank == 0)
    records = {r["video"]: r for r in map(json.loads, out.kept_lines)}
    todo = [e for e in entries if e.rel_path not in out.done]
    stream = out.open() if predictions is not None and shard.rank == 0 else None
    if stream is not None:
        _reopen_probs_log(probs_log, probs)
    done = len(entries) - len(todo)

    def keep(index, video_probs, error) -> None:
        record = prediction_record(todo[index], video_probs, error, class_names)
        records[record["video"]] = record
        if video_probs is not None:
            probs[record["video"]] = video_probs
        if stream is not None:
            if video_probs is not None:  # before the record, so a kept record always has its probabilities
                probs_log.write(record["video"], 0, torch.from_numpy(video_probs))
            stream.write(json.dumps(record) + "\n")
            stream.flush()

    def on_video(index, video_probs, error) -> None:
        nonlocal done
        done += 1
        if shard.world_size == 1:  # as videos finish, so --resume keeps them; else after the gather
            keep(index, video_probs, error)
        if progress is not None and shard.rank == 0:
            progress(done, len(entries))

    try:
        scored = score_entries(model, todo, spec, class_names, device, max_views=max_views, workers=workers,
                               precision=precision, runtime=runtime, runtime_cache=runtime_cache, on_video=on_video,
                               engine=engine, ray_address=ray_address, verbose=verbose)
    except BaseException:
        if stream is not None:
            out.commit(final=False)  # keep PATH.part for --resume
            probs_log.close(delete=False)
        raise
    if shard.rank != 0:
        return None
    if shard.world_size > 1:
        for item in scored:
            keep(*item)
    out.commit()
    if stream is not None:
        probs_log.close(delete=False)  # a later --resume of this finished file still has every probability
    ordered = [records[e.rel_path] for e in entries]
    listed_probs = [probs[r["video"]] if "top" in r else None for r in ordered]
    metrics = metrics_from_probs(listed_probs, [e.label for e in entries], class_names)
    if scores is not None:
        write_bytes_atomic(scores, scores_file_bytes([e.rel_path for e in entries], [e.label for e in entries],
                                                     listed_probs, [r.get("error") for r in ordered], class_names))
    failed = tuple((r["video"], r["error"]) for r in ordered if "error" in r)
    return EvalReport(metrics=metrics, failed=failed, num_resumed=len(entries) - len(todo))
