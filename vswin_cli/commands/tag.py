"""`vswin tag`: sliding-window, multi-view tags for files, folders and path lists (JSON Lines by default)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vswin_cli.errors import ConfigError
from vswin_cli.options import Precision, resolve_precision
from vswin_cli.inputs import find_videos, read_path_list


class Views(str, Enum):
    fast = "fast"
    paper = "paper"


class Format(str, Enum):
    jsonl = "jsonl"
    json = "json"
    csv = "csv"
    tsv = "tsv"


class Backend(str, Enum):
    auto = "auto"
    pyav = "pyav"
    decord = "decord"


MODEL = "Model"
VIEWS = "Segments and views"
OUT = "Output"
RUN = "Speed and devices"


def tag(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Video files and folders (searched recursively); `-` reads paths from stdin, one per line.",
        show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Zoo model name, e.g. swin-b-k600 (see `vswin models`).", rich_help_panel=MODEL)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local checkpoint instead of --model (official, torchvision or vswin layout).", rich_help_panel=MODEL)] = None,
    arch: Annotated[Optional[str], typer.Option(help="With --weights: swin-t, swin-s, swin-b or a config.json.", rich_help_panel=MODEL)] = None,
    labels: Annotated[Optional[str], typer.Option(help="With --weights: class-name file (one per line) or a label set name.", rich_help_panel=MODEL)] = None,
    from_list: Annotated[Optional[Path], typer.Option("--from-list", help="Read video paths from this file, one per line.", show_default=False)] = None,
    glob: Annotated[Optional[str], typer.Option(help="Only files in folders whose relative path matches, e.g. '*.mp4' (replaces the extension filter).")] = None,
    window: Annotated[Optional[float], typer.Option(help="Segment length in seconds. Default: the model's clip span (32 frames x 2 at the video's fps).", rich_help_panel=VIEWS)] = None,
    stride: Annotated[Optional[float], typer.Option(help="Step between segment starts in seconds. Default: --window (no overlap).", rich_help_panel=VIEWS)] = None,
    views: Annotated[Views, typer.Option(help="fast: 1 clip x 1 centre crop. paper: the model's published protocol (Kinetics 4 clips x 3 crops, SSv2 1 x 3).", rich_help_panel=VIEWS)] = Views.fast,
    clips: Annotated[Optional[int], typer.Option(min=1, help="Clips per segment (overrides --views).", rich_help_panel=VIEWS)] = None,
    crops: Annotated[Optional[int], typer.Option(min=1, max=3, help="Crops per clip: 1 (centre) or 3 (overrides --views).", rich_help_panel=VIEWS)] = None,
    clip_len: Annotated[Optional[int], typer.Option(min=1, help="Frames per clip (default: the model's, 32).", rich_help_panel=VIEWS)] = None,
    frame_interval: Annotated[Optional[int], typer.Option(min=1, help="Frame step inside a clip (default: the model's, 2).", rich_help_panel=VIEWS)] = None,
    crop_size: Annotated[Optional[int], typer.Option(min=8, help="Short-side resize and crop size (default: the model's: 224 for the released models; a `vswin train` checkpoint stores its own).", rich_help_panel=VIEWS)] = None,
    top_k: Annotated[int, typer.Option(min=0, help="Tags kept per segment and per video (0: none, e.g. with --features).", rich_help_panel=OUT)] = 5,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Drop tags scoring below this.", rich_help_panel=OUT)] = 0.0,
    merge: Annotated[bool, typer.Option(help="Also write events joining consecutive segments with the same top label.", rich_help_panel=OUT)] = False,
    features: Annotated[bool, typer.Option(help="Add each segment's pooled embedding (JSONL/JSON only).", rich_help_panel=OUT)] = False,
    output_format: Annotated[Format, typer.Option("--format", "-f", help="Output format.", rich_help_panel=OUT)] = Format.jsonl,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (written atomically), or - for stdout.", rich_help_panel=OUT)] = "-",
    resume: Annotated[bool, typer.Option(help="Skip videos already complete in the JSON Lines file -o (after an interrupted run).", rich_help_panel=OUT)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or per-file messages on stderr.", rich_help_panel=OUT)] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Views per forward pass (across segments and videos).", rich_help_panel=RUN)] = 8,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes (0: decode in the main process). Default: CPU cores, at most 8.", rich_help_panel=RUN)] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:N.", rich_help_panel=RUN)] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto: bf16 autocast on CUDA, fp32 on CPU.", rich_help_panel=RUN)] = Precision.auto,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow start, faster after).", rich_help_panel=RUN)] = False,
    fast_decode: Annotated[bool, typer.Option(help="Decode at reduced resolution: faster, but pixels differ slightly from the official pipeline.", rich_help_panel=RUN)] = False,
    backend: Annotated[Backend, typer.Option(help="Video decoder (auto: decord when installed and safe for the file, else PyAV).", rich_help_panel=RUN)] = "auto",
) -> None:
    """Tag videos with labels per time segment, plus a summary per video.

    Examples:

      vswin tag ./clips --model swin-b-k600 > tags.jsonl

      find /data -name '*.mp4' | vswin tag - -m swin-t-k400 -o tags.jsonl

      vswin tag ./clips -m swin-t-k400 -o tags.jsonl --resume    (continue after an interruption)

    Exit status: 0 all videos tagged, 1 some failed (each has an error record), 2 usage error, 130 interrupted.
    """
    from vswin_cli.inference import TagOptions, Tagger, current_shard, run_tag
    from vswin_cli.video import ClipSpec
    from vswin_cli.pretrained import resolve_model

    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(levelname)s: %(message)s")
    sources = _sources(inputs or [], from_list)
    _check_usage(resume, output, output_format, features, crops, window, stride)
    videos = find_videos(sources, glob=glob)
    shard = current_shard()
    run_device = _device(device, shard)
    resolved = resolve_model(model=model, weights=weights, arch=arch, labels=labels, device=run_device,
                             progress=not quiet)
    protocol, paper = resolved.protocol, views == Views.paper
    spec = ClipSpec(  # --views picks the protocol's views (paper) or 1 x 1 (fast); explicit options win
        sampling=protocol.sampling, clip_len=clip_len or protocol.clip_len,
        frame_interval=frame_interval or protocol.frame_interval,
        num_clips=clips or (protocol.num_clips if paper else 1),
        num_crops=crops or (protocol.num_crops if paper else 1),
        crop_size=crop_size or protocol.crop_size, resize_short=crop_size or protocol.crop_size,
    )
    options = TagOptions(
        window_s=window, stride_s=stride, batch_size=batch_size,
        workers=workers if workers is not None else min(8, os.cpu_count() or 1),
        device=run_device, precision=resolve_precision(precision, run_device), compile=compile_model,
        top_k=top_k, threshold=threshold, merge=merge, features=features, fast_decode=fast_decode,
        backend=Backend(backend).value, resize_on_device=run_device.startswith("cuda"),
    )
    tagger = Tagger(resolved.model, resolved.labels, resolved.name, spec, options)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # batch schedulers stop jobs with SIGTERM: stop as cleanly as Ctrl-C
    with _Progress(len(videos[shard.rank::shard.world_size]), quiet or shard.rank != 0) as on_result:
        report = run_tag(tagger, videos, output, output_format.value, resume=resume, shard=shard, on_result=on_result)
    if not quiet:
        skipped = f", {report.num_skipped} already done" if report.num_skipped else ""
        sys.stderr.write(f"tagged {report.num_tagged - report.num_failed} video(s), {report.num_segments} segment(s);"
                         f" {report.num_failed} failed{skipped}\n")
    if report.interrupted:
        sys.stderr.write("interrupted: the finished videos are kept; rerun with --resume -o FILE to continue\n")
        raise typer.Exit(130)
    raise typer.Exit(1 if report.num_failed else 0)


def _sources(inputs: list[str], from_list: Path | None) -> list[str]:
    sources = []
    for item in inputs:
        sources.extend(read_path_list(sys.stdin) if item == "-" else [item])
    if from_list is not None:
        try:
            with open(from_list, encoding="utf-8") as f:
                sources.extend(read_path_list(f))
        except OSError as err:
            raise ConfigError(f"{from_list}: cannot read the list file ({err.strerror})") from None
    if not sources:
        raise typer.BadParameter("give video files or folders, --from-list FILE, or - to read paths from stdin",
                                 param_hint="INPUTS")
    return sources


def _check_usage(resume, output, output_format, features, crops, window, stride) -> None:
    for name, seconds in (("--window", window), ("--stride", stride)):
        if seconds is not None and not seconds > 0:
            raise typer.BadParameter(f"must be a positive number of seconds, got {seconds}", param_hint=name)
    if crops not in (None, 1, 3):
        raise typer.BadParameter("must be 1 (centre crop) or 3 (left, right, middle)", param_hint="--crops")
    if resume and (output == "-" or output_format != Format.jsonl):
        raise typer.BadParameter("--resume needs --format jsonl and an output file (-o PATH)", param_hint="--resume")
    if features and output_format in (Format.csv, Format.tsv):
        raise typer.BadParameter("--features needs --format jsonl or json", param_hint="--features")


def _device(device: str, shard) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if shard.world_size > 1 else "cuda"
    return "cpu"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class _Progress:
    """A Rich progress bar on stderr, plus one warning line per failed video; the callback updates both."""

    def __init__(self, total: int, quiet: bool):
        self.quiet = quiet
        console = Console(stderr=True)
        self.bar = Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=console, disable=quiet, transient=True)
        self.task = self.bar.add_task("tag", total=total)

    def __enter__(self):
        self.bar.__enter__()
        return self.update

    def __exit__(self, *exc):
        self.bar.__exit__(*exc)

    def update(self, result) -> None:
        self.bar.advance(self.task)
        if result.error is not None and not self.quiet:
            self.bar.console.print(f"failed: {result.error.message}", markup=False, highlight=False)
