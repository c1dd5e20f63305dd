"""`vswin train`: fine-tune or train a Video Swin model on a video list (one readable loop: vswin_cli/train.py)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.checks import check_arch, check_input, check_model, check_output_folder
from vswin_cli.errors import UsageError
from vswin_cli.options import Precision, QuietOpt, VerboseOpt
from vswin_cli.train_config import TrainConfig


class Flip(str, Enum):
    auto = "auto"
    yes = "yes"
    no = "no"


class Sampling(str, Enum):
    kinetics = "kinetics"
    uniform = "uniform"


DATA = "Data"
MODEL = "Model"
RECIPE = "Recipe (defaults: the official Video Swin fine-tuning recipe)"
CLIP = "Clip shape (defaults: the released models' 32 frames x 2 at 224)"
RUN = "Run"


def train(
    train_list: Annotated[Path, typer.Option(help="Training list: 'relative/path.mp4 LABEL' per line, or CSV/TSV with a 'path,label' header.", rich_help_panel=DATA)],
    out_dir: Annotated[Path, typer.Option("--out-dir", "--output", "-o", help="Folder for checkpoints (epoch_NNN.pt, best.pt, last.pt) and metrics.jsonl/csv (created).", rich_help_panel=DATA, show_default=False)],
    val_list: Annotated[Optional[Path], typer.Option(help="Validation list, scored after every epoch (top-1/top-5).", rich_help_panel=DATA)] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the list's paths are relative to (default: the list's folder).", rich_help_panel=DATA)] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Label map: one class name per line, line i = class i (default: class numbers).", rich_help_panel=DATA)] = None,
    arch: Annotated[Optional[str], typer.Option(help="Train this architecture: swin-t, swin-s, swin-b or a config.json.", rich_help_panel=MODEL)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Fine-tune from a zoo model (e.g. swin-t-k400) or a vswin checkpoint; the head is replaced when the classes differ.", rich_help_panel=MODEL)] = None,
    init: Annotated[Optional[Path], typer.Option(help="With --arch: start from these weights (video checkpoint, or ImageNet-2D Swin file inflated to 3D).", rich_help_panel=MODEL)] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.", rich_help_panel=RECIPE)] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per batch per process.", rich_help_panel=RECIPE)] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, betas 0.9/0.999) of the head; the backbone gets x0.1 when starting from pretrained weights.", rich_help_panel=RECIPE)] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (none on norms, biases, relative-position tables).", rich_help_panel=RECIPE)] = 0.05,
    warmup_epochs: Annotated[float, typer.Option(help="Linear warmup before the cosine decay, in epochs.", rich_help_panel=RECIPE)] = 2.5,
    accum_steps: Annotated[int, typer.Option(min=1, help="Batches per optimizer step (gradient accumulation).", rich_help_panel=RECIPE)] = 1,
    drop_path: Annotated[Optional[float], typer.Option(help="Stochastic depth rate (default: the variant's, 0.1 swin-t/s, 0.3 swin-b).", rich_help_panel=RECIPE)] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Default: 0.1 for direction-sensitive labels (SSv2-like), else 0.", rich_help_panel=RECIPE)] = None,
    flip: Annotated[Flip, typer.Option(help="Horizontal flip augmentation; auto = on unless a label says left/right.", rich_help_panel=RECIPE)] = Flip.auto,
    min_crop_area: Annotated[float, typer.Option(help="Smallest random-resized-crop area (fraction of the frame).", rich_help_panel=RECIPE)] = 0.08,
    sampling: Annotated[Sampling, typer.Option(help="kinetics: clip of --clip-len frames --frame-interval apart; uniform: one frame per segment (SSv2).", rich_help_panel=CLIP)] = Sampling.kinetics,
    clip_len: Annotated[int, typer.Option(min=1, help="Frames per clip.", rich_help_panel=CLIP)] = 32,
    frame_interval: Annotated[int, typer.Option(min=1, help="Step between sampled frames.", rich_help_panel=CLIP)] = 2,
    crop_size: Annotated[int, typer.Option(min=8, help="Training crop side in pixels (small values train tiny models on CPU).", rich_help_panel=CLIP)] = 224,
    precision: Annotated[Precision, typer.Option(help="auto: bf16 on CUDA, fp32 on CPU; fp16 uses a GradScaler (CUDA only).", rich_help_panel=RUN)] = Precision.auto,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", help="Recompute blocks in the backward pass: less memory, ~30% slower.", rich_help_panel=RUN)] = False,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes per training process (0: in the main process). Default: CPU cores, at most 4.", rich_help_panel=RUN, show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initialisation, shuffling and augmentation.", rich_help_panel=RUN)] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda.", rich_help_panel=RUN)] = "auto",
    keep_checkpoints: Annotated[int, typer.Option(min=0, help="epoch_NNN.pt files kept besides best.pt and last.pt (0: all).", rich_help_panel=RUN)] = 2,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out-dir from last.pt (repeat the original options).", rich_help_panel=RUN)] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a video classifier on your own videos; checkpoints work with `vswin tag/eval --weights`.

    Examples:

      vswin train --train-list train.txt --val-list val.txt --data-root videos/ --labels labels.txt -m swin-t-k400 --out-dir runs/a

      vswin train ... --out-dir runs/a --resume    (after an interruption: same result as an uninterrupted run)

      torchrun --standalone --nproc-per-node 8 -m vswin_cli train ...    (DDP, rank 0 writes)
    """
    def text(path):
        return str(path) if path is not None else None

    config = TrainConfig(
        train_list=str(train_list), out_dir=str(out_dir), val_list=text(val_list), data_root=text(data_root),
        arch=arch, model=model, init=text(init), labels=text(labels), epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, drop_path=drop_path, label_smoothing=label_smoothing,
        flip=flip.value, min_crop_area=min_crop_area, accum_steps=accum_steps, precision=precision.value,
        grad_checkpointing=grad_checkpointing, sampling=sampling.value, clip_len=clip_len, frame_interval=frame_interval,
        crop_size=crop_size, workers=workers, seed=seed, device=device, keep_checkpoints=keep_checkpoints, resume=resume,
    )  # checks the option values
    _check_paths(config)
    from vswin_cli import decode  # PyTorch and PyAV load only now that the command line is known to be usable
    from vswin_cli.train import train as run_training

    if hasattr(decode, "set_decoder_logging"):  # FFmpeg's and decord's own log lines: only with -v
        decode.set_decoder_logging(verbose)
    quiet_log = (lambda msg: None) if quiet else None
    run_training(config, log=quiet_log, progress="none" if quiet else "auto")


def _check_paths(config: TrainConfig) -> None:
    """Inputs exist, names are known and --out-dir can take the run, before PyTorch loads."""
    check_input(config.train_list, "--train-list")
    check_input(config.val_list, "--val-list")
    check_input(config.data_root, "--data-root", folder=True)
    check_input(config.labels, "--labels")
    check_input(config.init, "--init")
    check_arch(config.arch)
    check_model(config.model)
    check_output_folder(config.out_dir, "--out-dir")
    last = Path(config.out_dir) / "last.pt"
    if config.resume and not last.is_file():
        raise UsageError(f"{last}: nothing to resume", hint="run without --resume first (same --out-dir)")
    if not config.resume and last.exists():
        raise UsageError(f"{config.out_dir} already holds a training run", hint="add --resume to continue it, or use another --out-dir")
