"""Video Swin Transformer network, variants and checkpoint loading.

Importable alone: no CLI, no downloads, no file I/O except the files you name.

    from models import VideoSwin, load_checkpoint
    model = VideoSwin(**get_config("swin-b", num_classes=600).to_dict())
    report = load_checkpoint(model, "swin_base_patch244_window877_kinetics600_22k.pth")
"""

from models.checkpoint import CheckpointError, LoadReport, load_checkpoint, load_model, save_checkpoint
from models.config import VARIANTS, Swin3DConfig, UnknownArchError, config_from_dict, get_config
from models.swin3d import VideoSwin, average_views

__all__ = [
    "VARIANTS",
    "CheckpointError",
    "LoadReport",
    "Swin3DConfig",
    "UnknownArchError",
    "VideoSwin",
    "average_views",
    "config_from_dict",
    "get_config",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
