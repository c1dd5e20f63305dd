"""One training epoch and one evaluation pass: plain functions with explicit arguments, device-agnostic.

Layout after facebookresearch/mae `engine_finetune.py` (CC BY-NC 4.0; structure only, no code copied):
`train.py` owns the set-up (model, data, optimizer, checkpoints), this file owns the loops.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from vswin_cli.aggregate import average_views

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(device: torch.device, precision: str):
    """The autocast context for `precision` ("fp32" = none)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        loader: yields (clips (B, 3, T, H, W) float32, labels (B,) int64).
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
    for step, (clips, labels) in enumerate(loader):
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
