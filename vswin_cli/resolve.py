"""From `--model NAME` or `--weights FILE [--arch A] [--labels L]` to a loaded model with its labels and protocol.

The whisper-shaped path: name -> zoo entry (`vswin_cli.zoo`) -> verified cache file (`vswin_cli.cache`)
-> `models.load_checkpoint` -> `ResolvedModel`. Used by `tag`, `eval`, `train` and `export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vswin_cli.cache import fetch, load_labels
from vswin_cli.errors import ConfigError, UsageError, from_checkpoint_error
from vswin_cli.protocol import ClipSpec
from vswin_cli.zoo import KINETICS_TEST, PRETRAINED, SSV2_TEST, entry_config, get_entry

@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for inference or fine-tuning.

    Args:
        model: `VideoSwin` in eval mode on the CPU (the run that uses it moves it, once).
        labels: class names, `len(labels) == model.config.num_classes`.
        protocol: the entry's test protocol; for local files the one a `vswin train` checkpoint stores,
            else `KINETICS_TEST` (`SSV2_TEST` with the SSv2 labels).
        name: the zoo entry name, or the weights file path.
        sha256: the weights file's SHA-256 (a zoo entry's verified hash; a local file is hashed).
        arch: the architecture ("swin-t", "swin-s", "swin-b"), or "custom" for another config.
    """

    model: Any
    labels: list[str]
    protocol: ClipSpec
    name: str
    sha256: str = ""
    arch: str = ""


def resolve_model(
    model: str | None = None,
    weights: str | Path | None = None,
    arch: str | None = None,
    labels: str | Path | None = None,
    offline: bool | None = None,
    drop_head: bool = False,
    mirror: str | None = None,
    progress: bool = True,
) -> ResolvedModel:
    """Turn `--model NAME` or `--weights FILE [--arch A] [--labels L]` into a loaded model (used by tag/eval/train).

    Args:
        model: a zoo entry (fetched into the cache on first use unless offline), or a weights file path.
        weights: a local checkpoint: our own vswin file (carries its config and labels), an official
            mmaction file, a torchvision swin3d file, or an ImageNet-2D Swin file (with `drop_head`).
        arch: for `weights` that are not vswin files: `swin-t`, `swin-s`, `swin-b` (the number of classes
            and the temporal window are then read from the file) or a `config.json` path.
        labels: a label file, a label-map name (`kinetics400`...) or a zoo entry name; overrides the
            entry's or file's labels. Its length must equal the head's classes (with `drop_head`, the
            new head gets `len(labels)` classes).
        offline: never download (default `VSWIN_OFFLINE`).
        drop_head: keep a freshly initialised classifier (fine-tuning on new classes).
        mirror: base URL for downloads (default `VSWIN_MIRROR`).
        progress: show download progress on stderr.

    Returns:
        `ResolvedModel(model (eval mode, on the CPU), labels, protocol, name, sha256, arch)`. Without any labels
        (a file with no stored names and no `labels`), the labels are the class indices "0", "1", ...
    """
    if model is not None and weights is not None:
        raise ConfigError("both a model name and a weights file were given", "use --model NAME or --weights FILE, not both")
    if model is None and weights is None:
        raise ConfigError("no model given", "use --model NAME (see `vswin models`) or --weights FILE --arch swin-t|swin-s|swin-b")
    if model is not None and model not in PRETRAINED and Path(model).expanduser().is_file():
        model, weights = None, model  # a path given as --model
    if model is not None:
        if arch is not None:
            raise ConfigError(f"--arch is only used with --weights; {model} already fixes the architecture", "drop --arch")
        return _resolve_entry(get_entry(model), labels, offline, drop_head, mirror, progress)
    return _resolve_file(Path(weights).expanduser(), arch, labels, offline, drop_head, mirror)


def _resolve_entry(entry, labels, offline, drop_head, mirror, progress) -> ResolvedModel:
    if not entry.is_classifier and not drop_head:
        raise ConfigError(
            f"{entry.name} is an ImageNet 2D initialisation, not a video classifier",
            "use it to initialise training (`vswin train --init ...`), or pick a video model from `vswin models`",
        )
    path = fetch(entry, mirror=mirror, offline=offline, progress=progress)
    names = load_labels(labels, offline=offline, mirror=mirror) if labels is not None else None
    if names is None and not drop_head:
        names = load_labels(entry.labels, offline=offline, mirror=mirror)
    cfg = entry_config(entry)
    if drop_head and names is not None:
        cfg = cfg.replace(num_classes=len(names))
    net = _load(cfg, path, entry.format, drop_head)
    names = names if names is not None else [str(i) for i in range(cfg.num_classes)]
    _check_label_count(names, cfg.num_classes, labels or entry.labels)
    return ResolvedModel(net.eval(), names, entry.protocol or KINETICS_TEST, entry.name,
                         entry.sha256 or _file_sha256(path), arch_name(cfg))


def _resolve_file(path: Path, arch, labels, offline, drop_head, mirror) -> ResolvedModel:
    from models.checkpoint import CheckpointError, detect_format, read_checkpoint
    from models.config import config_from_dict, get_config

    try:
        obj = read_checkpoint(path)
    except CheckpointError as err:
        raise from_checkpoint_error(err) from None
    fmt = detect_format(obj)
    if fmt == "imagenet2d" and not drop_head:
        raise ConfigError(
            f"{path}: an ImageNet 2D Swin file has no video classifier",
            "use it to initialise training (`vswin train --init FILE`), or give a video checkpoint",
        )
    stored_labels = obj.get("labels") if fmt == "vswin" else None
    try:
        if fmt == "vswin" and arch is None:
            cfg = config_from_dict(obj["config"])
        elif arch is None:
            raise ConfigError(
                f"{path}: a {fmt} checkpoint does not say its architecture",
                "add --arch swin-t, swin-s or swin-b (or --arch CONFIG.json)",
            )
        elif str(arch).endswith(".json"):
            cfg = get_config(arch)
        else:
            cfg = get_config(arch, **_shape_overrides(obj, fmt))
    except ValueError as err:  # UnknownArchError or a bad config file: --arch is a usage error, the file's own is not
        error = UsageError if arch is not None else ConfigError
        raise error(f"{arch or path}: {err}", "use --arch swin-t, swin-s, swin-b or a config.json") from None
    names = load_labels(labels, offline=offline, mirror=mirror) if labels is not None else None
    if names is None and stored_labels and not drop_head:
        names = list(stored_labels)
    if drop_head and names is not None:
        cfg = cfg.replace(num_classes=len(names))
    net = _load(cfg, path, fmt, drop_head, checkpoint=obj)
    names = names if names is not None else [str(i) for i in range(cfg.num_classes)]
    _check_label_count(names, cfg.num_classes, labels or path)
    if fmt == "vswin" and obj.get("protocol"):  # the clip shape a `vswin train` model was trained and tested on
        protocol = ClipSpec(**obj["protocol"])
    else:
        protocol = SSV2_TEST if labels == "sthv2" else KINETICS_TEST
    return ResolvedModel(net.eval(), names, protocol, str(path), _file_sha256(path), arch_name(cfg))


def _shape_overrides(obj, fmt: str) -> dict:
    """Number of classes and temporal window read off an mmaction/torchvision file, so `--arch swin-b`
    fits the K600 and SSv2 files too (the other fields come from the architecture)."""
    if fmt not in {"mmaction", "torchvision"}:
        return {}
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    overrides = {}
    head = state.get("cls_head.fc_cls.weight", state.get("head.weight"))
    if head is not None and head.ndim == 2:
        overrides["num_classes"] = int(head.shape[0])
    table = next((v for k, v in state.items() if k.endswith("relative_position_bias_table")), None)
    if table is not None and table.ndim == 2 and table.shape[0] % 169 == 0:  # (2wd-1) * 13 * 13 rows for 7x7 windows
        overrides["window_size"] = ((table.shape[0] // 169 + 1) // 2, 7, 7)
    return overrides


def arch_name(cfg) -> str:
    """The architecture a config is ("swin-t", "swin-s", "swin-b"; the window and class count aside), else "custom"."""
    from models.config import VARIANTS

    for name, variant in VARIANTS.items():
        if (variant.embed_dim, variant.depths, variant.num_heads) == (cfg.embed_dim, cfg.depths, cfg.num_heads):
            return name
    return "custom"


def _file_sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _load(cfg, path: Path, fmt: str, drop_head: bool, checkpoint=None):
    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.swin3d import VideoSwin

    if drop_head:
        net = VideoSwin.from_config(cfg)  # the new head needs its proper initialisation
    else:
        # A strict load overwrites every parameter and buffer, so the random initialisation (seconds for
        # Swin-B on a small CPU) is skipped: build on `meta`, then allocate uninitialised memory.
        with torch.device("meta"):
            net = VideoSwin.from_config(cfg)
        net.to_empty(device="cpu")
    try:
        load_checkpoint(net, path, format=fmt, strict=True, drop_head=drop_head, checkpoint=checkpoint)
    except CheckpointError as err:
        raise from_checkpoint_error(err) from None
    return net


def _check_label_count(names: list[str], num_classes: int, source) -> None:
    if len(names) != num_classes:
        raise ConfigError(
            f"{source}: {len(names)} labels for a model with {num_classes} classes",
            "give a label file with one name per class (line i = class i), or drop --labels to use the model's own",
        )
