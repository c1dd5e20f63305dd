"""Errors a user of vswin can meet.

Every error the library raises on purpose is a `VswinError`; the CLI's single error boundary
(`vswin_cli.app.main`) prints its message and hint and exits 1, or 2 for a `UsageError` (a command
line that cannot work: bad values, unknown names, an output that cannot be written). Anything else is a
bug and keeps its traceback. (`models` is importable alone, so its own `models.CheckpointError` is not in this
tree; the CLI boundary treats it the same way.)

    VswinError
    ├── ConfigError            bad option values, configs or list files
    │   └── UsageError         an option value or combination a command cannot take (exit status 2)
    │       └── UnknownModelError  a model name that is not in the zoo
    ├── VideoDecodeError       a video that cannot be opened or read (names the file and the reason)
    └── DownloadError          a fetch that failed (HTTP error, timeout, refused connection, full disk)
        ├── ChecksumError      the downloaded or cached file does not have the expected SHA-256
        └── OfflineError       offline mode, and the file is not in the cache
"""

from __future__ import annotations


class VswinError(Exception):
    """Base class of every error vswin raises on purpose.

    Args:
        message: what went wrong, naming the file or value concerned.
        hint: what the user can do about it (printed on its own line by the CLI).
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(VswinError):
    """An option, configuration file or list file that cannot be used as given."""


class VideoDecodeError(VswinError):
    """A video that cannot be opened or decoded.

    Args:
        path: the file concerned.
        reason: why it failed, in words (e.g. "no video stream", "not a video file").
    """

    def __init__(self, path, reason: str, hint: str | None = None):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}", hint)


class DownloadError(VswinError):
    """A download that failed."""


class ChecksumError(DownloadError):
    """A file whose SHA-256 (or size) differs from the expected one."""


class OfflineError(DownloadError):
    """Offline mode is on and the needed file is not in the cache."""


class UsageError(ConfigError):
    """An option value or combination the command cannot take (the CLI exits with status 2)."""


class UnknownModelError(UsageError):
    """A model or architecture name that is not known (a usage error: exit status 2)."""


# What to do about a `models.CheckpointError` on the command line (its own hint is Python advice), by `kind`.
CHECKPOINT_HINTS = {
    "format": "give a Video Swin checkpoint: an official (mmaction) or torchvision swin3d .pth file, a `vswin train` "
              "checkpoint, or an ImageNet Swin file for `vswin train --init`",
    "not_weights": "give the .pth weights file itself (it holds other objects where weights belong)",
    "no_config": "add --arch swin-t, swin-s or swin-b (or --arch CONFIG.json)",
    "architecture": "drop --arch: a `vswin train` checkpoint carries its own architecture (or give the one it was saved with)",
    "mismatch": "give the file's architecture with --arch (swin-t, swin-s, swin-b or a config.json) and a label file with "
                "one name per class; to train new classes from it use `vswin train --arch ARCH --init FILE`",
}


def from_checkpoint_error(err) -> ConfigError:
    """A `models.CheckpointError` as the CLI says it: the same message, a hint that names options and commands."""
    return ConfigError(err.message, CHECKPOINT_HINTS.get(getattr(err, "kind", None), err.hint))
