"""`vswin env`: versions, devices, CPU features, video backends and the cache, to paste into a bug report."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Accepted like every command's -q (env writes only its report, on stdout).")] = False,
) -> None:
    """Show versions (vswin, Python, torch, torchvision, PyAV/FFmpeg, decord, numpy), devices, CPU features,
    torch threads and backends, and the cache folder: paste it into a bug report.
    """
    from vswin_cli.diagnostics import collect, format_text

    info = collect()
    typer.echo(json.dumps(info, indent=2) if as_json else format_text(info), nl=as_json)
