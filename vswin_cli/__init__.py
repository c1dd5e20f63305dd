"""vswin: video tagging with the Video Swin Transformer (Liu et al., 2021, arXiv 2106.13230).

The front door (`vswin_cli.api`), loaded on first use so that `import vswin_cli` stays cheap (no torch,
typer or rich)::

    import vswin_cli

    tagger = vswin_cli.load("swin-t-k400")
    for result in tagger.tag("clips/"):
        print(result.video, result.top)
"""

__version__ = "0.1.0"

__all__ = ["load", "Tagger", "TagSettings", "Classification", "Frames", "VideoResult", "__version__"]

_LAZY = {
    "load": "vswin_cli.api", "Tagger": "vswin_cli.api", "TagSettings": "vswin_cli.api",
    "Classification": "vswin_cli.api", "Frames": "vswin_cli.frames", "VideoResult": "vswin_cli.records",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vswin_cli' has no attribute {name!r}")
