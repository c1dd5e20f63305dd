"""How clips are sampled and cropped (`ClipSpec`), and the published test protocols.

A leaf module (no torch, no decoder) so that the zoo table and `--help` can use it cheaply. The
protocols are those of the Video Swin test configs (SwinTransformer/Video-Swin-Transformer @ db018fb,
Apache-2.0; `../shared/spec/pipeline.md`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vswin_cli.errors import ConfigError, UsageError


def check_crops(num_crops: int, given: str | None = None) -> None:
    """Crops per clip are 1 (CenterCrop) or 3 (ThreeCrop: left, right, middle); anything else is a usage error.

    Args:
        given: the option as the user wrote it (default `--crops N`).
    """
    if num_crops not in (1, 3):
        raise UsageError(f"{given or f'--crops {num_crops}'}: crops 1 or 3 only (1: centre crop; 3: left, right, middle)",
                         hint="e.g. --views 4x3, --views 1x1 or --crops 3")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and cropped: a model's test protocol, the views `tag` takes of a segment,
    and the clip shape for training.

    Attributes:
        sampling: "kinetics" (`num_clips` clips of `clip_len` frames `frame_interval` apart, spread
            evenly, wrapping; official SampleFrames test mode) or "uniform" (one clip of `clip_len`
            frames spread over the whole video or segment: the SSv2 protocol).
        clip_len, frame_interval, num_clips: 32, 2, 4 for the released Kinetics models.
        num_crops: 3 (ThreeCrop: left, right, middle) or 1 (CenterCrop).
        crop_size: crop side (224 for the released models).
        resize_short: short side before cropping; None (the default) = the crop size, as the official
            test pipeline does.
    """

    sampling: str = "kinetics"
    clip_len: int = 32
    frame_interval: int = 2
    num_clips: int = 4
    num_crops: int = 3
    crop_size: int = 224
    resize_short: int | None = None

    def __post_init__(self):
        if self.resize_short is None:
            object.__setattr__(self, "resize_short", self.crop_size)
        if self.sampling not in ("kinetics", "uniform"):
            raise ConfigError(f"unknown sampling {self.sampling!r}", hint="use 'kinetics' or 'uniform'")
        check_crops(self.num_crops)
        if self.sampling == "uniform" and self.num_clips != 1:
            raise ConfigError("uniform (SSv2) sampling takes one clip", hint="use 1 clip")
        for name in ("clip_len", "frame_interval", "num_clips", "crop_size", "resize_short"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.resize_short < self.crop_size:
            raise ConfigError(f"resize_short {self.resize_short} is smaller than the crop size {self.crop_size}")
        if self.num_crops == 3 and self.resize_short != self.crop_size:
            raise ConfigError("three crops need the short side resized to the crop size (ThreeCrop)")

    @classmethod
    def for_views(cls, base: ClipSpec, clips: int | None = None, crops: int | None = None, *,
                  clip_len: int | None = None, frame_interval: int | None = None,
                  crop_size: int | None = None) -> ClipSpec:
        """A spec from the run's options over a model's `base` protocol (tag and eval; training has
        `train_config.TrainConfig.clip_spec`, over its own recipe rather than a model's protocol).

        Args:
            base: the model's protocol (its sampling, clip shape and published views).
            clips, crops: views per segment (`parse_views` of `--views`, or `--clips`/`--crops`);
                None keeps the base's (the published protocol).
            clip_len, frame_interval, crop_size: override the base's (None keeps it).
        """
        size = crop_size or base.crop_size
        return cls(sampling=base.sampling, clip_len=clip_len or base.clip_len,
                   frame_interval=frame_interval or base.frame_interval, num_clips=clips or base.num_clips,
                   num_crops=crops or base.num_crops, crop_size=size, resize_short=size)

    @property
    def num_views(self) -> int:
        """Views per video or segment as the protocol counts them (identical ones included)."""
        return self.num_clips * self.num_crops

    @property
    def span_frames(self) -> int:
        """Frames one Kinetics-style clip spans: the default segment length of `tag`."""
        return self.clip_len * self.frame_interval


def resized_size(height: int, width: int, short_side: int = 224) -> tuple[int, int]:
    """Size after Resize(scale=(-1, short_side)): factor short_side/min(h, w), round half up.

    Args:
        height, width: frame size.
        short_side: length of the short side after the resize.

    Returns:
        (new_height, new_width).
    """
    factor = short_side / min(height, width)
    return int(height * factor + 0.5), int(width * factor + 0.5)


PROTOCOLS = {
    "k400": ClipSpec("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "k600": ClipSpec("kinetics", clip_len=32, frame_interval=2, num_clips=4, num_crops=3),
    "sthv2": ClipSpec("uniform", clip_len=32, frame_interval=2, num_clips=1, num_crops=3),
}


def get_protocol(protocol: str | ClipSpec) -> ClipSpec:
    """A `ClipSpec` from its name ("k400", "k600", "sthv2") or itself."""
    if isinstance(protocol, ClipSpec):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise ConfigError(f"unknown test protocol {protocol!r}", f"choose one of: {', '.join(PROTOCOLS)}") from None


def parse_views(views: str | None) -> tuple[int | None, int | None]:
    """(clips, crops) of a `--views` value: "paper"/None = (None, None), the model's published protocol;
    "fast" = (1, 1); "CxK" = (C, K).

    Raises:
        UsageError: naming the value and the accepted forms.
    """
    if views is None or views == "paper":
        return None, None
    if views == "fast":
        return 1, 1
    try:
        clips, crops = (int(x) for x in views.lower().split("x"))
    except ValueError:
        raise UsageError(f"--views {views!r} is not fast, paper or CLIPSxCROPS",
                          hint="e.g. --views fast, --views paper or --views 4x3") from None
    if clips < 1:
        raise UsageError(f"--views {views!r}: clips must be >= 1", hint="e.g. --views 4x3 or 1x1")
    check_crops(crops, f"--views {views!r}")
    return clips, crops
