"""Configurations of the Video Swin Transformer: one frozen dataclass and the released variants.

The field names are exactly the keys of the fixtures' `config.json` (the official `SwinTransformer3D`
constructor arguments plus the I3D head's), so a config file written by the authors' tooling maps 1:1.
Released settings: SwinTransformer/Video-Swin-Transformer @ db018fb, `configs/recognition/swin/*.py`
(Apache-2.0).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

# Keys that describe where weights came from, not the network; `config_from_dict` ignores them.
_SOURCE_KEYS = ("format", "pretrained2d", "imagenet2d")


class UnknownArchError(ValueError):
    """An architecture name that is not in `VARIANTS` (the message lists the valid names)."""


@dataclass(frozen=True)
class Swin3DConfig:
    """Everything that fixes the shapes and numerics of a `VideoSwin` network.

    Defaults are the released Swin-T Kinetics-400 model. `head_in_channels` is derived
    (embed_dim * 2^(num_stages-1)) when left as None and checked when given.
    """

    patch_size: tuple[int, int, int] = (2, 4, 4)
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    patch_norm: bool = True
    in_chans: int = 3
    num_classes: int = 400
    head_in_channels: int | None = field(default=None)
    head_dropout: float = 0.5

    def __post_init__(self):
        # JSON gives lists; keep tuples so configs are hashable and compare equal.
        for name in ("patch_size", "depths", "num_heads", "window_size"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
                raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("patch_size", "window_size"):
            value = getattr(self, name)
            if len(value) != 3 or min(value) < 1:
                raise ValueError(f"{name} must be 3 positive integers (T, H, W), got {value!r}")
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be positive block counts per stage, got {self.depths!r}")
        if len(self.num_heads) != len(self.depths):
            raise ValueError(
                f"num_heads has {len(self.num_heads)} entries but depths has {len(self.depths)} "
                f"(one head count per stage): {self.num_heads!r} vs {self.depths!r}"
            )
        for name in ("embed_dim", "in_chans", "num_classes"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for stage, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**stage
            if heads < 1 or width % heads:
                raise ValueError(
                    f"num_heads[{stage}]={heads} does not divide the stage width {width} (embed_dim * 2^{stage})"
                )
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if self.qk_scale is not None and not isinstance(self.qk_scale, (int, float)):
            raise ValueError(f"qk_scale must be a number or None, got {self.qk_scale!r}")
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate", "head_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
        for name in ("qkv_bias", "patch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.head_in_channels is None:
            object.__setattr__(self, "head_in_channels", self.num_features)
        elif self.head_in_channels != self.num_features:
            raise ValueError(
                f"head_in_channels={self.head_in_channels} but the backbone ends with "
                f"{self.num_features} channels (embed_dim {self.embed_dim} * 2^{len(self.depths) - 1})"
            )

    @property
    def num_features(self) -> int:
        """Channels of the final stage (the pooled embedding size)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def to_dict(self) -> dict:
        """Plain JSON-friendly dict (tuples become lists); `config_from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **overrides) -> Swin3DConfig:
        """A copy with some fields changed (validated again); `head_in_channels` is derived anew
        unless given."""
        overrides.setdefault("head_in_channels", None)
        return dataclasses.replace(self, **overrides)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))

# The released Kinetics-400 configs (window 8x7x7, 400 classes). Other heads/windows via overrides:
# get_config("swin-b", num_classes=174, window_size=(16, 7, 7), drop_path_rate=0.4) is the SSv2 model.
VARIANTS: dict[str, Swin3DConfig] = {
    "swin-t": Swin3DConfig(),
    "swin-s": Swin3DConfig(depths=(2, 2, 18, 2)),
    "swin-b": Swin3DConfig(**_SWIN_B, drop_path_rate=0.3),
}


def config_from_dict(d: dict) -> Swin3DConfig:
    """Build a config from a `config.json`-style dict.

    Args:
        d: keys are `Swin3DConfig` fields; `format`, `pretrained2d` and `imagenet2d` (which describe
            where weights come from) are ignored; `num_classes` defaults to 400.

    Returns:
        The validated `Swin3DConfig`. Raises ValueError naming unknown keys or bad values.
    """
    fields = {f.name for f in dataclasses.fields(Swin3DConfig)}
    kwargs = {k: v for k, v in d.items() if k not in _SOURCE_KEYS}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(fields)}")
    return Swin3DConfig(**kwargs)


def get_config(name_or_json_path: str | Path, **overrides) -> Swin3DConfig:
    """Look up a variant by name (`swin-t`, `swin-s`, `swin-b`) or read a `config.json`, then override.

    Args:
        name_or_json_path: a key of `VARIANTS`, or the path of a JSON file with config keys.
        **overrides: fields to change, e.g. `num_classes=600`, `window_size=(16, 7, 7)`.

    Returns:
        The `Swin3DConfig`. Raises `UnknownArchError` (listing the valid names) for an unknown name.
    """
    key = str(name_or_json_path)
    if key in VARIANTS:
        base = VARIANTS[key]
    elif key.endswith(".json") and Path(key).is_file():
        try:
            data = json.loads(Path(key).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{key}: cannot read the config file ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{key}: a config file must hold a JSON object of config keys")
        base = config_from_dict(data)
    else:
        raise UnknownArchError(
            f"unknown architecture {key!r}; valid names: {', '.join(VARIANTS)} (or the path of a config.json)"
        )
    return base.replace(**overrides) if overrides else base
