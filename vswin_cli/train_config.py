"""`TrainConfig`: every `vswin train` option, 1:1, checked on construction (no torch: the command builds
it before the training loop in `vswin_cli.train` loads PyTorch, so a bad option answers at once)."""

from __future__ import annotations

from dataclasses import dataclass

from vswin_cli.errors import UsageError
from vswin_cli.protocol import ClipSpec


@dataclass(frozen=True)
class TrainConfig:
    """Every `vswin train` option, 1:1; stored in each checkpoint as `train_config`."""

    train_list: str
    out_dir: str
    val_list: str | None = None
    data_root: str | None = None
    arch: str | None = None  # "swin-t" | "swin-s" | "swin-b" | a config.json path
    model: str | None = None  # a pretrained zoo name or a video checkpoint to start from
    init: str | None = None  # a video checkpoint or an ImageNet-2D Swin file (inflated) for --arch
    labels: str | None = None  # label map file, one class per line
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.5
    backbone_lr_mult: float = 0.1  # applied only when starting from pretrained weights
    drop_path: float | None = None  # None = the variant's
    label_smoothing: float | None = None  # None = 0.1 for direction-sensitive label sets (SSv2), else 0
    flip: str = "auto"  # "auto" = flip unless the labels name left/right
    min_crop_area: float = 0.08  # RandomResizedCrop's smallest area fraction (official 0.08)
    accum_steps: int = 1
    precision: str = "auto"  # "auto" = bf16 on CUDA, fp32 on CPU
    grad_checkpointing: bool = False
    sampling: str = "kinetics"  # "kinetics" (clip_len x frame_interval) or "uniform" (SSv2)
    clip_len: int = 32
    frame_interval: int = 2
    crop_size: int = 224
    workers: int | None = None  # None = min(4, CPU cores)
    seed: int = 0
    device: str = "auto"
    keep_checkpoints: int = 2  # epoch_NNN.pt files kept besides best.pt and last.pt
    resume: bool = False

    def __post_init__(self):
        if (self.arch is None) == (self.model is None):
            raise UsageError("give exactly one of --arch and --model", hint="--arch swin-t to train from scratch "
                              "(or with --init), --model swin-t-k400 to fine-tune a pretrained model")
        if self.init and not self.arch:
            raise UsageError("--init goes with --arch", hint="--model already names the starting weights")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise UsageError(f"unknown precision {self.precision!r}", hint="use bf16, fp16 or fp32")
        if self.flip not in ("auto", "yes", "no"):
            raise UsageError(f"--flip must be auto, yes or no, got {self.flip!r}")
        for name in ("epochs", "batch_size", "accum_steps", "clip_len", "frame_interval", "crop_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.min_crop_area <= 1:
            raise UsageError(f"--min-crop-area must be in (0, 1], got {self.min_crop_area}")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise UsageError("--lr must be positive, --weight-decay and --warmup-epochs non-negative")
        self.clip_spec()  # validates the clip shape

    def clip_spec(self, num_clips: int = 1, num_crops: int = 1, resize_short: int | None = None) -> ClipSpec:
        """The clips this recipe trains on (1 clip, 1 crop), or its validation and test views."""
        return ClipSpec(sampling=self.sampling, clip_len=self.clip_len, frame_interval=self.frame_interval,
                        num_clips=num_clips, num_crops=num_crops, crop_size=self.crop_size, resize_short=resize_short)
