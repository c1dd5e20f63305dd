"""The model zoo as data: every released Video Swin checkpoint by name, its label map and test protocol.

`PRETRAINED` is one plain table of `PretrainedEntry` (name -> URL, file name, architecture, labels,
protocol, published accuracy). Pure data: no I/O, no torch, so `vswin models` and `--help` stay fast.
Where the files go and how they are verified is `vswin_cli.cache`; turning a name into a loaded model
is `vswin_cli.resolve`.

Checkpoints: SwinTransformer/Video-Swin-Transformer (release v1.0.4, Apache-2.0), microsoft/Swin-Transformer
(ImageNet 2D, MIT), torchvision swin3d (BSD-3-Clause code, weights ported from the Apache-2.0 originals).
Label maps: open-mmlab/mmaction2 (Apache-2.0). Facts: ../shared/spec/zoo.md.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from vswin_cli.errors import UnknownModelError
from vswin_cli.protocol import PROTOCOLS, ClipSpec

_VIDEO_SWIN = "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
_SWIN_2D = "https://github.com/SwinTransformer/storage/releases/download/"
_TORCHVISION = "https://download.pytorch.org/models/"
_MMACTION_LABELS = "https://raw.githubusercontent.com/open-mmlab/mmaction2/main/tools/data/"


# The published test protocols (the Video Swin test configs); see `vswin_cli.video.PROTOCOLS`.
KINETICS_TEST = PROTOCOLS["k400"]
SSV2_TEST = PROTOCOLS["sthv2"]


@dataclass(frozen=True)
class LabelMap:
    """A class-name list: line i is the name of class i.

    Args:
        name: how users and entries refer to it ("kinetics400").
        url: the public source.
        filename: its name in the cache and on a mirror.
        num_classes: the number of lines it must have.
    """

    name: str
    url: str
    filename: str
    num_classes: int


LABEL_MAPS: dict[str, LabelMap] = {
    m.name: m
    for m in (
        LabelMap("kinetics400", _MMACTION_LABELS + "kinetics/label_map_k400.txt", "label_map_k400.txt", 400),
        LabelMap("kinetics600", _MMACTION_LABELS + "kinetics/label_map_k600.txt", "label_map_k600.txt", 600),
        LabelMap("sthv2", _MMACTION_LABELS + "sthv2/label_map.txt", "label_map_sthv2.txt", 174),
    )
}


@dataclass(frozen=True)
class PretrainedEntry:
    """One released checkpoint.

    Args:
        name: what users type (`swin-b-k600`).
        arch: the architecture it loads into (`swin-t`, `swin-s`, `swin-b`, see `models.VARIANTS`).
        overrides: config fields that differ from the architecture's defaults (window, classes...).
        url: where the publisher serves the file.
        format: "mmaction" (official `{'meta', 'state_dict'}`), "torchvision" (plain state_dict) or
            "imagenet2d" (`{'model': ...}` of a 2D Swin, inflated into `arch` for training).
        dataset: what the head was trained on ("K400", "K600", "SSv2", "ImageNet-1K", "ImageNet-22K").
        pretrain: what the backbone started from.
        labels: a key of `LABEL_MAPS`, or None (ImageNet heads: only an initialisation for training).
        num_classes: the size of the file's classification head.
        protocol: test protocol of the published accuracy; None for initialisation checkpoints.
        top1, top5: published accuracy (%) under `protocol` (or as `notes` says), None if unpublished.
        sha256, size: pinned values when known; upstream publishes none, so None here (the manifest
            records them at first download).
    """

    name: str
    arch: str
    url: str
    format: str
    dataset: str
    pretrain: str
    labels: str | None
    num_classes: int
    protocol: ClipSpec | None
    top1: float | None
    top5: float | None
    source: str
    licence: str
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)
    sha256: str | None = None
    size: int | None = None
    notes: str = ""

    @property
    def filename(self) -> str:
        """The file name in the cache (and on a mirror): the last part of the URL."""
        return urlparse(self.url).path.rsplit("/", 1)[-1]

    @property
    def filename_sha256(self) -> str | None:
        """The start of the file's SHA-256 that its published name carries (torchvision's
        `swin3d_t-7615ae03.pth`, which torchvision checks with `check_hash`), or None."""
        match = re.search(r"-([0-9a-f]{8,64})\.pth$", self.filename) if self.format == "torchvision" else None
        return match.group(1) if match else None

    @property
    def is_classifier(self) -> bool:
        """True if the file loads as a whole `VideoSwin` (False for ImageNet-2D initialisation files)."""
        return self.format != "imagenet2d"


def _video_swin(name, arch, file, dataset, pretrain, labels, num_classes, protocol, top1, top5, notes="", **overrides):
    return PretrainedEntry(
        name=name, arch=arch, url=_VIDEO_SWIN + file, format="mmaction", dataset=dataset, pretrain=pretrain,
        labels=labels, num_classes=num_classes, protocol=protocol, top1=top1, top5=top5,
        source="SwinTransformer/Video-Swin-Transformer release v1.0.4", licence="Apache-2.0",
        overrides={"num_classes": num_classes, **overrides}, notes=notes,
    )  # fmt: skip


def _torchvision(name, arch, file, top1, top5):
    return PretrainedEntry(
        name=name, arch=arch, url=_TORCHVISION + file, format="torchvision", dataset="K400",
        pretrain="ImageNet-22K" if "22k" in file else "ImageNet-1K", labels="kinetics400", num_classes=400,
        protocol=KINETICS_TEST, top1=top1, top5=top5, source="torchvision (swin3d, ported official weights)",
        licence="BSD-3-Clause (torchvision); weights from the Apache-2.0 originals",
        notes="accuracy as torchvision reports it (its 12 clips x 1 crop protocol)",
    )  # fmt: skip


def _imagenet2d(name, arch, release, file, dataset):
    return PretrainedEntry(
        name=name, arch=arch, url=f"{_SWIN_2D}{release}/{file}", format="imagenet2d", dataset=dataset,
        pretrain=dataset, labels=None, num_classes=21841 if dataset == "ImageNet-22K" else 1000, protocol=None,
        top1=None, top5=None, source=f"microsoft/Swin-Transformer release {release}", licence="MIT",
        notes="2D ImageNet Swin: initialisation for `vswin train` (inflated to 3D), not a video classifier",
    )  # fmt: skip


_K400, _K600, _SSV2 = "kinetics400", "kinetics600", "sthv2"
PRETRAINED: dict[str, PretrainedEntry] = {
    e.name: e
    for e in (
        _video_swin("swin-t-k400", "swin-t", "swin_tiny_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 78.8, 93.6),
        _video_swin("swin-s-k400", "swin-s", "swin_small_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 80.6, 94.5),
        _video_swin("swin-b-k400", "swin-b", "swin_base_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 80.6, 94.6),
        _video_swin("swin-b-k400-in22k", "swin-b", "swin_base_patch244_window877_kinetics400_22k.pth", "K400",
                    "ImageNet-22K", _K400, 400, KINETICS_TEST, 82.7, 95.5, drop_path_rate=0.2),
        _video_swin("swin-b-k600", "swin-b", "swin_base_patch244_window877_kinetics600_22k.pth", "K600",
                    "ImageNet-22K", _K600, 600, KINETICS_TEST, 84.0, 96.5, drop_path_rate=0.2),
        _video_swin("swin-b-sthv2", "swin-b", "swin_base_patch244_window1677_sthv2.pth", "SSv2",
                    "K400 (swin-b-k400-in22k-w16)", _SSV2, 174, SSV2_TEST, 69.6, 92.7,
                    window_size=(16, 7, 7), drop_path_rate=0.4),
        # The initialisation of swin-b-sthv2 (no config or accuracy published; drop_path is inert in eval).
        _video_swin("swin-b-k400-in22k-w16", "swin-b", "swin_base_patch244_window1677_kinetics400_22k.pth", "K400",
                    "ImageNet-22K", _K400, 400, KINETICS_TEST, None, None,
                    notes="window 16x7x7; initialisation for swin-b-sthv2, no accuracy published",
                    window_size=(16, 7, 7), drop_path_rate=0.2),
        _torchvision("swin-t-k400-tv", "swin-t", "swin3d_t-7615ae03.pth", 77.715, 93.519),
        _torchvision("swin-s-k400-tv", "swin-s", "swin3d_s-da41c237.pth", 79.521, 94.158),
        _torchvision("swin-b-k400-tv", "swin-b", "swin3d_b_1k-24f7c7c6.pth", 79.427, 94.386),
        _torchvision("swin-b-k400-in22k-tv", "swin-b", "swin3d_b_22k-7c6ae6fa.pth", 81.643, 95.574),
        _imagenet2d("swin-t-in1k", "swin-t", "v1.0.0", "swin_tiny_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-s-in1k", "swin-s", "v1.0.0", "swin_small_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-b-in1k", "swin-b", "v1.0.0", "swin_base_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-t-in22k", "swin-t", "v1.0.8", "swin_tiny_patch4_window7_224_22k.pth", "ImageNet-22K"),
        _imagenet2d("swin-s-in22k", "swin-s", "v1.0.8", "swin_small_patch4_window7_224_22k.pth", "ImageNet-22K"),
        _imagenet2d("swin-b-in22k", "swin-b", "v1.0.0", "swin_base_patch4_window7_224_22k.pth", "ImageNet-22K"),
    )
}  # fmt: skip


def get_entry(name: str) -> PretrainedEntry:
    """The zoo entry called `name`; `UnknownModelError` lists the valid names and suggests a close one."""
    if name in PRETRAINED:
        return PRETRAINED[name]
    close = difflib.get_close_matches(name, PRETRAINED, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + "`vswin models` lists them"
    raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(PRETRAINED)}", hint)



def entry_config(entry: PretrainedEntry):
    """The `Swin3DConfig` of an entry: its architecture plus its overrides."""
    from models.config import get_config

    # head_in_channels=None: re-derived from the (possibly overridden) width and depth
    return get_config(entry.arch, head_in_channels=None, **entry.overrides)

