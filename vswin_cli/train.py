"""Fine-tune or train a Video Swin model on a video list: the one training loop behind `vswin train`.

Recipe: SwinTransformer/Video-Swin-Transformer @ db018fb `configs/recognition/swin/*.py` (Apache-2.0):
AdamW (lr 1e-3, betas 0.9/0.999), no weight decay on norms, biases and relative-position tables,
backbone lr x0.1 when starting from pretrained weights, per-step cosine schedule after a linear warmup
(mmcv's `warmup='linear'`, warmup ratio 0.1), drop path per variant. Loop layout after karpathy/nanoGPT
`train.py` and facebookresearch/mae `main_finetune.py` (structure only).

Reproducibility: the shuffle order and every augmentation depend only on (seed, epoch, index) and the
torch RNG is re-seeded at each epoch start, so `--resume` after a kill reaches the same weights as an
uninterrupted run (to float tolerance). DDP via torchrun: DistributedSampler, rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from models import save_checkpoint
from vswin_cli.cache import load_labels
from vswin_cli.datasets import TrainClips, parse_list
from vswin_cli.distributed import setup_device
from vswin_cli.engine import score_entries, train_one_epoch
from vswin_cli.errors import ConfigError
from vswin_cli.files import atomic_file, write_text_atomic
from vswin_cli.metrics import metrics_from_probs
from vswin_cli.precision import resolve_precision
from vswin_cli.progress import StepProgress
from vswin_cli.protocol import ClipSpec
from vswin_cli.train_augment import is_direction_sensitive
from vswin_cli.train_config import TrainConfig

CHECKPOINT_VERSION = 1
# Options that may differ between a run and its --resume (they do not change the result).
RESUME_MAY_DIFFER = ("resume", "workers", "device")
METRIC_FIELDS = ("epoch", "train_loss", "lr", "val_top1", "val_top5", "val_mean_class_accuracy", "clips_per_second", "seconds")


def lr_factor(step: int, total_steps: int, warmup_steps: int, warmup_ratio: float = 0.1) -> float:
    """Learning-rate multiplier at optimizer step `step`: cosine to 0, times mmcv's linear warmup.

    Warmup multiplies the cosine value by 1 - (1 - step / warmup_steps) * (1 - warmup_ratio).
    """
    progress = min(step / max(total_steps, 1), 1.0)
    factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < warmup_steps:
        factor *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
    return factor


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float) -> list[dict]:
    """AdamW groups: (backbone | head) x (decay | no decay).

    No decay on 1-d parameters (norm weights, biases), relative-position tables and absolute position
    embeddings; the backbone (everything outside `model.head`) gets `lr * backbone_lr_mult`.
    """
    head = getattr(model, "head", None)
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, torch.nn.Module) else set()
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or "relative_position_bias_table" in name or "absolute_pos_embed" in name
        is_head = id(param) in head_ids or (not head_ids and name.startswith("head"))
        groups.setdefault((is_head, no_decay), []).append(param)
    return [
        {"params": params, "lr": lr * (1.0 if is_head else backbone_lr_mult), "weight_decay": 0.0 if no_decay else weight_decay}
        for (is_head, no_decay), params in sorted(groups.items())
    ]


def eval_spec_for_training(cfg: TrainConfig, num_clips: int | None = None, num_crops: int = 3) -> ClipSpec:
    """The test protocol that matches how `cfg` trained (stored in checkpoints for `vswin eval --weights`)."""
    if num_clips is None:
        num_clips = 1 if cfg.sampling == "uniform" else 4
    return cfg.clip_spec(num_clips, num_crops)


def val_spec(cfg: TrainConfig) -> ClipSpec:
    """The official val pipeline: 1 clip, Resize(-1, 256/224 * crop), CenterCrop(crop)."""
    return cfg.clip_spec(resize_short=round(cfg.crop_size * 256 / 224))


# --- model -------------------------------------------------------------------------------------------


def build_model(cfg: TrainConfig, num_classes: int) -> tuple[torch.nn.Module, bool]:
    """The network to train and whether it starts from pretrained weights.

    A pretrained model (`--model`) or `--init` checkpoint with another number of classes keeps its backbone
    and gets a freshly initialised head (MAE's rule: only head keys may be missing).
    """
    from models import VideoSwin, get_config

    overrides = {"num_classes": num_classes}
    if cfg.drop_path is not None:
        overrides["drop_path_rate"] = cfg.drop_path
    if cfg.model is not None:
        source, pretrained_config = _load_start_model(cfg.model)
        model = VideoSwin.from_config(pretrained_config.replace(**overrides))
        _load_backbone(model, source.state_dict(), cfg.model)
        return model, True
    try:
        config = get_config(cfg.arch, **overrides)
    except ValueError as err:
        raise ConfigError(f"--arch {cfg.arch}: {err}") from None
    model = VideoSwin.from_config(config)
    if cfg.init is None:
        return model, False
    from models import load_checkpoint

    report = load_checkpoint(model, cfg.init, strict=False)  # a head of another size is dropped
    _check_only_head_missing(report.missing_keys, cfg.init,
                             hint="--init needs a checkpoint of the same architecture (or its ImageNet-2D Swin)")
    return model, True


def _load_start_model(name_or_path: str):
    """(model, its config) for `--model`: a zoo name, or a weights file (a `vswin train` checkpoint...)."""
    from vswin_cli.resolve import resolve_model

    resolved = resolve_model(model=name_or_path)
    return resolved.model, resolved.model.config


def _load_backbone(model: torch.nn.Module, state: dict, source: str) -> None:
    """Copy every tensor whose name and shape match; only the classification head may be left out."""
    target = model.state_dict()
    kept = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
    _check_only_head_missing([k for k in target if k not in kept], source,
                             hint="--model needs a checkpoint of the architecture being trained")
    model.load_state_dict(kept, strict=False)


def _check_only_head_missing(missing: list[str], source, hint: str) -> None:
    """MAE's rule for a starting point: every weight but the classification head must be there."""
    not_head = [k for k in missing if not k.startswith("head.")]
    if not_head:
        raise ConfigError(f"{source}: these weights are not in the file: {', '.join(not_head[:5])} ...", hint=hint)


# --- checkpoints and metrics files ---------------------------------------------------------------------


def _link_atomic(source: Path, path: Path) -> None:
    """Make `path` a copy of `source` (a hard link where possible), atomically."""
    with atomic_file(path, temp=path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp:
        tmp.unlink(missing_ok=True)  # a leftover of a killed run with this pid: os.link will not overwrite
        try:
            os.link(source, tmp)
        except OSError:
            import shutil

            shutil.copyfile(source, tmp)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],  # lists: loadable with weights_only
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_metrics(out_dir: Path, rows: list[dict]) -> None:
    write_text_atomic(out_dir / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    lines = [",".join(METRIC_FIELDS)] + [",".join(_csv_value(row.get(k)) for k in METRIC_FIELDS) for row in rows]
    write_text_atomic(out_dir / "metrics.csv", "\n".join(lines) + "\n")


def _csv_value(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# --- the loop --------------------------------------------------------------------------------------------


def default_train_workers() -> int:
    """Decoding processes per training process when `--workers` is not given: min(4, CPU cores)."""
    return min(4, os.cpu_count() or 1)


def train(cfg: TrainConfig, stop_after_epoch: int | None = None, log=None, progress: str = "auto") -> list[dict]:
    """Train as `cfg` says; write checkpoints and metrics under `cfg.out_dir` (rank 0).

    Args:
        cfg: the options.
        stop_after_epoch: end early after this epoch (as a kill would; `--resume` continues). For tests.
        log: callable(str) for progress (default: stderr on rank 0).
        progress: steps within each epoch on rank 0 (`StepProgress` style): "auto" (tqdm in a notebook,
            a Rich bar on a terminal, else a plain line every 10 s), "rich", "plain", "tqdm" or "none".
            With a custom `log` and "auto", nothing is shown.

    Returns:
        the metrics rows of all epochs so far (one dict per epoch).
    """
    device, rank, world_size = setup_device(cfg.device)
    is_main = rank == 0
    if progress == "auto" and log is not None:
        progress = "none"  # the caller routes messages itself (tests, scripts)
    steps = StepProgress(cfg.epochs, progress if is_main else "none")
    if log is None:
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if is_main else (lambda msg: None)
    out_dir = Path(cfg.out_dir)
    last_path = out_dir / "last.pt"
    resume_state = None
    if cfg.resume:
        if not last_path.is_file():
            raise ConfigError(f"{last_path}: nothing to resume", hint="run without --resume first (same --out-dir)")
        resume_state = torch.load(last_path, map_location="cpu", weights_only=True)
        _check_same_config(cfg, resume_state["train_config"], last_path)
    elif last_path.exists():
        raise ConfigError(f"{out_dir} already holds a training run", hint="add --resume to continue it, or use another --out-dir")
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    class_names = load_labels(Path(cfg.labels)) if cfg.labels else None
    train_entries = parse_list(cfg.train_list, cfg.data_root, class_names)
    if class_names is None:
        class_names = [str(i) for i in range(max(e.label for e in train_entries) + 1)]
    val_entries = parse_list(cfg.val_list, cfg.data_root, class_names) if cfg.val_list else []
    # SSv2-like label sets (a class names left or right): the official recipe never flips and smooths labels.
    direction_sensitive = is_direction_sensitive(class_names)
    flip = cfg.flip == "yes" or (cfg.flip == "auto" and not direction_sensitive)
    smoothing = cfg.label_smoothing if cfg.label_smoothing is not None else (0.1 if direction_sensitive else 0.0)
    precision = resolve_precision(cfg.precision, device)

    torch.manual_seed(cfg.seed)
    model, pretrained = build_model(cfg, len(class_names))
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model.to(device)
    train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world_size > 1 else model

    spec = cfg.clip_spec()
    train_set = TrainClips(train_entries, spec, flip=flip, seed=cfg.seed, min_crop_area=cfg.min_crop_area)
    # One sampler for 1 or many processes: the order depends only on (seed, epoch).
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed, drop_last=False)
    workers = default_train_workers() if cfg.workers is None else cfg.workers
    if workers > (os.cpu_count() or 1):
        log(f"note: {workers} decoding workers on {os.cpu_count()} CPU cores; fewer may be faster (--workers)")
    # PyTorch repeats its own "will create N worker processes" warning at every epoch: said once above instead.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda",
                        persistent_workers=False)

    backbone_mult = cfg.backbone_lr_mult if pretrained else 1.0
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, backbone_mult), lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(len(loader) / cfg.accum_steps)
    total_steps, warmup_steps = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps))
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    start_epoch, best_top1, rows = 0, -math.inf, []  # the first epoch is always the best so far
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        _set_rng_state(resume_state["rng"])
        start_epoch, best_top1, rows = resume_state["epoch"], resume_state["best_top1"], list(resume_state["metrics"])
        log(f"resuming {last_path} after epoch {start_epoch}")
    log(f"training {len(train_entries)} videos, {len(val_entries)} for validation, {len(class_names)} classes, "
        f"{cfg.epochs} epochs of {steps_per_epoch} steps on {device} ({precision}, world size {world_size})")

    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)  # dropout/drop path: same draws after a resume
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        steps.start_epoch(epoch + 1, len(loader))
        try:
            stats = train_one_epoch(train_model, loader, optimizer, scheduler, scaler, device, precision=precision,
                                    accum_steps=cfg.accum_steps, label_smoothing=smoothing, log=log,
                                    on_step=steps.on_step if steps.style != "none" else None)
        finally:
            steps.end_epoch()
        row = {"epoch": epoch + 1, "train_loss": stats.loss, "lr": stats.lr, "clips_per_second": stats.clips_per_second,
               "seconds": stats.seconds, "val_top1": None, "val_top5": None, "val_mean_class_accuracy": None}
        if val_entries:
            scores = score_entries(model, val_entries, val_spec(cfg), class_names, device,
                                   max_views=cfg.batch_size, workers=workers, precision=precision)
            if is_main:
                metrics = metrics_from_probs([p for _, p, _ in scores], [val_entries[i].label for i, _, _ in scores], class_names)
                row.update(val_top1=metrics.top1, val_top5=metrics.top5, val_mean_class_accuracy=metrics.mean_class_accuracy)
        rows.append(row)
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {stats.loss:.4f}, lr {stats.lr:.3g}, "
            + (f"val top-1 {row['val_top1']:.3f} top-5 {row['val_top5']:.3f}, " if row["val_top1"] is not None else "")
            + f"{stats.clips_per_second:.1f} clips/s")
        if is_main:
            score = row["val_top1"] if row["val_top1"] is not None else -stats.loss
            is_best = score > best_top1
            best_top1 = max(best_top1, score)
            epoch_path = out_dir / f"epoch_{epoch + 1:03d}.pt"
            # The {"format": "vswin", "config", "model", "labels"} layout of docs/architecture.md, plus the
            # training state that `load_checkpoint` ignores. Everything is plain data (weights_only loads).
            save_checkpoint(
                epoch_path, model, class_names,
                version=CHECKPOINT_VERSION,
                protocol=dataclasses.asdict(eval_spec_for_training(cfg)),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if scaler is not None else None,
                epoch=epoch + 1,
                best_top1=best_top1,
                metrics=rows,
                rng=_rng_state(),
                train_config=dataclasses.asdict(cfg),
            )
            if is_best:
                _link_atomic(epoch_path, out_dir / "best.pt")
            _link_atomic(epoch_path, last_path)
            _write_metrics(out_dir, rows)
            old = out_dir / f"epoch_{epoch + 1 - cfg.keep_checkpoints:03d}.pt"
            if cfg.keep_checkpoints > 0 and old != epoch_path:
                old.unlink(missing_ok=True)
        if world_size > 1:
            dist.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return rows


def _check_same_config(cfg: TrainConfig, saved: dict, path: Path) -> None:
    differ = [
        f"{name}: {saved.get(name)!r} in the checkpoint, {value!r} now"
        for name, value in dataclasses.asdict(cfg).items()
        if name not in RESUME_MAY_DIFFER and saved.get(name) != value
    ]
    if differ:
        raise ConfigError(f"{path}: --resume needs the options of the interrupted run; these differ: " + "; ".join(differ),
                          hint="repeat the original command line and add --resume")
