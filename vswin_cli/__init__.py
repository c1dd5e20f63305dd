"""vswin: video tagging with the Video Swin Transformer (Liu et al., 2021, arXiv 2106.13230)."""

__version__ = "0.1.0"
