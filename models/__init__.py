"""Video Swin Transformer network, variants and checkpoint loading (importable alone: no I/O but files
you name, no CLI, no downloads). Being built: see issue 2."""


class CheckpointError(ValueError):
    """A weights file that cannot be loaded into the model (format, keys or shapes)."""
