"""The structural check of a downloaded zoo checkpoint: does the file hold exactly its entry's weights?

The publishers give no checksums, so the cache accepts a file without a pinned SHA-256 only after this
check (the exact key layout and shapes of the entry's architecture), then records its hash.
"""

from __future__ import annotations

from pathlib import Path

from vswin_cli.errors import ChecksumError
from vswin_cli.download import check_sha256_prefix
from vswin_cli.zoo import PretrainedEntry, entry_config


def check_checkpoint(path: Path, entry: PretrainedEntry) -> None:
    """Check that `path` loads with `weights_only=True` and has exactly `entry`'s key layout and shapes.

    The model is built on the `meta` device, so this costs the file read and no weight memory.

    Raises:
        ChecksumError: naming the problem (not a checkpoint, missing/unexpected keys, a wrong shape).
    """
    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.swin3d import VideoSwin

    with torch.device("meta"):
        model = VideoSwin.from_config(entry_config(entry))
    try:
        load_checkpoint(model, path, format=entry.format, strict=True)
    except CheckpointError as err:
        reason = err.message.removeprefix(f"{path}: ")
        raise ChecksumError(
            f"{path}: not a {entry.name} checkpoint ({entry.arch}, {entry.num_classes} classes, {entry.format} layout): "
            f"{reason}",
            f"the file is damaged or for another model; {entry.name} expects {entry.filename} from {entry.url}",
        ) from None
    check_sha256_prefix(path, entry.filename_sha256, entry.filename, entry.url)  # torchvision's names carry it
