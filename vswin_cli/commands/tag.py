"""`vswin tag`: sliding-window, multi-view tags for files, folders and path lists (JSON Lines by default)."""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.checks import check_arch, check_engine, check_input, check_labels, check_model, check_output
from vswin_cli.errors import ConfigError, UsageError
from vswin_cli.inputs import VideoInput, read_path_list
from vswin_cli.sources import check_stdin_use
from vswin_cli.writers import FORMATS
from vswin_cli.options import (
    OUT, RUN, VIEWS, ArchOpt, BatchViewsOpt, ClipLenOpt, CropSizeOpt, DeviceOpt, FrameIntervalOpt, LabelsOpt, ModelOpt, OfflineOpt,
    PrecisionOpt, Precision, RuntimeOpt, QuietOpt, VerboseOpt, ViewsOpt, WeightsOpt, WorkersOpt,
)

Format = Enum("Format", {name: name for name in FORMATS}, type=str)
LivePolicy = Enum("LivePolicy", {name: name for name in ("keep", "skip")}, type=str)
LIVE = "Live streams"
Backend = Enum("Backend", {name: name for name in ("auto", "pyav", "decord")}, type=str)
EngineKind = Enum("EngineKind", {name: name for name in ("local", "ray")}, type=str)


def tag(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Video files and folders (searched recursively), http(s) URLs of files, live streams (rtsp://, rtmp://, "
             "srt://, udp://, tcp://, pipe:0 for a stream on stdin, /dev/video0); `-` reads paths from stdin, one per line.",
        show_default=False)] = None,
    model: ModelOpt = None, weights: WeightsOpt = None, arch: ArchOpt = None, labels: LabelsOpt = None,
    offline: OfflineOpt = False,
    from_list: Annotated[Optional[Path], typer.Option("--from-list", help="Read video paths from this file, one per line.", show_default=False)] = None,
    glob: Annotated[Optional[str], typer.Option(help="Only files in folders whose relative path matches, e.g. '*.mp4' (replaces the extension filter).")] = None,
    window: Annotated[Optional[float], typer.Option(help="Segment length in seconds. Default: the model's clip span (32 frames x 2 at the video's fps).", rich_help_panel=VIEWS)] = None,
    stride: Annotated[Optional[float], typer.Option(help="Step between segment starts in seconds. Default: --window (no overlap).", rich_help_panel=VIEWS)] = None,
    views: ViewsOpt = "fast",
    clips: Annotated[Optional[int], typer.Option(help="Clips per segment (overrides --views).", rich_help_panel=VIEWS)] = None,
    crops: Annotated[Optional[int], typer.Option(help="Crops per clip: 1 (centre) or 3 (overrides --views).", rich_help_panel=VIEWS)] = None,
    clip_len: ClipLenOpt = None, frame_interval: FrameIntervalOpt = None, crop_size: CropSizeOpt = None,
    top_k: Annotated[int, typer.Option(help="Tags kept per segment and per video (0: none, e.g. with --features).", rich_help_panel=OUT)] = 5,
    threshold: Annotated[float, typer.Option(help="Drop tags scoring below this.", rich_help_panel=OUT)] = 0.0,
    merge: Annotated[bool, typer.Option("--merge", help="Also write events joining consecutive segments with the same top label.", rich_help_panel=OUT)] = False,
    features: Annotated[bool, typer.Option("--features", help="Add each segment's pooled embedding (JSONL/JSON only).", rich_help_panel=OUT)] = False,
    output_format: Annotated[Optional[Format], typer.Option("--format", "-f", help="Output format (default: from the -o extension, else jsonl).", rich_help_panel=OUT, show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (written atomically), or - for stdout.", rich_help_panel=OUT)] = "-",
    resume: Annotated[bool, typer.Option("--resume", help="Skip videos already complete in the JSON Lines file -o (after an interrupted run).", rich_help_panel=OUT)] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Also write an HTML report of the run (as `vswin report -o FILE`; needs -o).", rich_help_panel=OUT, show_default=False)] = None,
    annotate: Annotated[Optional[Path], typer.Option("--annotate", help="Also write each video again with its labels drawn on, into this folder (as `vswin annotate`; needs -o).", rich_help_panel=OUT, show_default=False)] = None,
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
    batch_views: BatchViewsOpt = 8,
    workers: WorkersOpt = None, device: DeviceOpt = "auto", precision: PrecisionOpt = Precision.auto,
    runtime: RuntimeOpt = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model on PyTorch (CUDA: slow start, faster after; on the CPU it was slower than eager, with a warning).", rich_help_panel=RUN)] = False,
    fast_decode: Annotated[bool, typer.Option("--fast-decode", help="Decode at reduced resolution: faster, but pixels differ slightly from the official pipeline.", rich_help_panel=RUN)] = False,
    live_policy: Annotated[LivePolicy, typer.Option("--live-policy", help="When the model cannot keep up with a live stream: keep every segment (the lag grows, memory stays bounded) or skip segments to stay live (each skip reported).", rich_help_panel=LIVE)] = "keep",
    reconnect: Annotated[bool, typer.Option("--reconnect", help="Reopen a network stream that drops, with backoff (each gap reported); without it a drop ends the stream with an error record.", rich_help_panel=LIVE)] = False,
    live_queue: Annotated[int, typer.Option("--live-queue", min=1, help="Segments of a live stream waiting for the model at most.", rich_help_panel=LIVE)] = 4,
    backend: Annotated[Backend, typer.Option(help="Video decoder (auto: PyAV; decord only for short 10-bit files with the authors' decord 0.x).", show_default=True, rich_help_panel=RUN)] = "auto",
    engine_kind: Annotated[EngineKind, typer.Option("--engine", help="local: decode processes feed the model in this process. ray: a Ray Data pipeline (decode tasks, model actors) on the cluster at --ray-address, else on a local Ray instance on 127.0.0.1 for this run; same output (needs the ray extra: pip install 'vswin[ray]').", rich_help_panel=RUN)] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="With --engine ray: the Ray cluster to join (HOST:PORT, auto, ray://...). Default: start a local instance for the run.", rich_help_panel=RUN, show_default=False)] = None,
) -> None:
    """Tag videos with labels per time segment, plus a summary per video.

    Examples:

      vswin tag ./clips --model swin-b-k600 > tags.jsonl

      find /data -name '*.mp4' | vswin tag - -m swin-t-k400 -o tags.jsonl

      vswin tag ./clips -m swin-t-k400 -o tags.jsonl --resume    (continue after an interruption)

      vswin tag rtsp://camera.local/stream -m swin-t-k400 --reconnect    (a live stream: records as it goes)

    Exit status: 0 all videos tagged, 1 some failed (each has an error record), 2 usage error, 130 interrupted.
    """
    # Everything that can be checked without PyTorch is checked first, so a usage error answers at once.
    from vswin_cli.api import TagSettings, find_inputs

    fmt = _output_format(output, output_format)
    _check_usage(resume, output, fmt, features)
    if (report or annotate) and output == "-":
        raise UsageError("--report and --annotate read the results back from the output file", hint="add -o FILE")
    settings = TagSettings(
        window=window, stride=stride, views=views, clips=clips, crops=crops, clip_len=clip_len,
        frame_interval=frame_interval, crop_size=crop_size, top_k=top_k, threshold=threshold, merge=merge,
        features=features, batch_views=batch_views, workers=workers, backend=Backend(backend).value,
        fast_decode=fast_decode, compile=compile_model,
    )
    check_model(model)
    check_arch(arch)
    check_labels(labels)
    skipped = []

    def skip(path: str, why: str) -> None:
        skipped.append(path)
        if not quiet:
            sys.stderr.write(f"warning: skipped {path}: {why}\n")

    check_stdin_use(inputs or [], sys.stdin.isatty())
    videos = find_inputs(_sources(inputs or [], from_list), glob, on_skip=skip, live_policy=LivePolicy(live_policy).value,
                         reconnect=reconnect, live_queue=live_queue)
    missing = [v.path for v in videos if isinstance(v, VideoInput) and not v.path.exists()]
    if len(missing) == len(videos):  # nothing to tag at all: say so before any model is loaded
        raise UsageError(f"{missing[0]}: no such file or folder" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                         hint="check the paths")
    check_input(weights, "--weights")
    check_output(output)
    check_engine(EngineKind(engine_kind).value, videos)

    # The heavy modules (torch, PyAV) load only now that the command line is known to be usable.
    from vswin_cli.api import load
    from vswin_cli.decode import set_decoder_logging
    from vswin_cli.distributed import current_shard
    from vswin_cli.outputs import run_tag
    from vswin_cli.progress import TagProgress
    from vswin_cli.runtime import COMPILE_ON_CPU, cpu_extra_notice

    shard = current_shard()
    tagger = load(model, weights=weights, arch=arch, labels=labels, device=device, precision=precision, runtime=runtime,
                  offline=True if offline else None, progress=not quiet)
    if compile_model and tagger.device.type == "cpu":
        sys.stderr.write(f"warning: {COMPILE_ON_CPU}\n")
    set_decoder_logging(verbose)  # FFmpeg's and decord's own lines only with -v (decode workers inherit it)
    if not quiet and runtime == "auto" and shard.rank == 0 and (notice := cpu_extra_notice(tagger.device, tagger.precision)):
        sys.stderr.write(notice + "\n")
    if EngineKind(engine_kind).value == "ray" and shard.world_size > 1:
        raise UsageError("--engine ray runs one driver; under torchrun every rank would tag every video",
                         hint="start vswin tag --engine ray once, without torchrun")
    engine = tagger.engine(settings, kind=EngineKind(engine_kind).value, ray_address=ray_address, verbose=verbose)
    sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)  # batch schedulers stop jobs with SIGTERM: stop as cleanly as Ctrl-C
    try:
        with TagProgress(len(shard.take(videos)), quiet or shard.rank != 0) as progress:
            run = run_tag(engine, videos, output, fmt, resume=resume, shard=shard, on_result=progress.on_result,
                          on_segment=progress.on_segment, run=tagger.run_record(settings, engine))
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # the output is published: a later SIGTERM ends the process as usual
    if not quiet:
        done = f", {run.num_skipped} already done" if run.num_skipped else ""
        left_out = f", {len(skipped)} path(s) skipped while scanning (see the warnings)" if skipped else ""
        sys.stderr.write(f"tagged {run.num_tagged - run.num_failed} video(s), {run.num_segments} segment(s);"
                         f" {run.num_failed} failed{done}{left_out}\n")
    if run.interrupted:
        again = "rerun with --resume -o FILE to continue" if fmt == "jsonl" and output != "-" else "rerun to tag them all"
        sys.stderr.write(f"interrupted: the finished videos are kept; {again}\n")
        raise typer.Exit(130)
    failed = _after_run(output, report, annotate, inputs, quiet)
    raise typer.Exit(1 if run.num_failed or failed else 0)


def _after_run(output: str, report: Path | None, annotate: Path | None, inputs, quiet: bool) -> bool:
    """`--report` and `--annotate`: read the results back from `output`; True if a video could not be drawn."""
    root = inputs[0] if inputs and len(inputs) == 1 and Path(inputs[0]).is_dir() else None  # keys are relative to it
    if report is not None:
        from vswin_cli.report import write_report

        summary = write_report(output, report, video_root=root)
        if not quiet:
            sys.stderr.write(f"report: {summary.path} ({summary.num_videos} videos)\n")
    if annotate is None:
        return False
    from vswin_cli.annotate import annotate_videos

    drawn = annotate_videos(output, annotate, video_root=root)
    for key, reason in drawn.failures:
        sys.stderr.write(f"annotate failed: {key}: {reason}\n")
    return bool(drawn.failures)


def _output_format(output: str, given) -> str:
    """`--format`, else the one the `-o` extension names, else jsonl; a conflict is a usage error."""
    suffix = Path(output).suffix.lower().lstrip(".") if output != "-" else ""
    implied = suffix if suffix in FORMATS else None
    if given is not None:
        fmt = Format(given).value
        if implied is not None and implied != fmt:
            raise UsageError(f"-o {output} names a .{implied} file but --format is {fmt}",
                             hint=f"drop --format (the extension decides) or name the file .{fmt}")
        return fmt
    return implied or "jsonl"


def _sources(inputs: list[str], from_list: Path | None) -> list[str]:
    sources = []
    for item in inputs:
        sources.extend(read_path_list(sys.stdin) if item == "-" else [item])
    if from_list is not None:
        check_input(from_list, "--from-list")
        try:
            with open(from_list, encoding="utf-8") as f:
                sources.extend(read_path_list(f))
        except OSError as err:
            raise ConfigError(f"--from-list {from_list}: cannot read the list file ({err.strerror})",
                              hint="check the file's permissions") from None
    if not sources:
        raise UsageError("no videos given", hint="give video files or folders, --from-list FILE, or - to read paths from stdin")
    return sources


def _check_usage(resume, output, fmt, features) -> None:
    if resume and (output == "-" or fmt != "jsonl"):
        raise UsageError("--resume needs JSON Lines output in a file", hint="use -o PATH.jsonl (and no other --format)")
    if features and fmt in ("csv", "tsv"):
        raise UsageError("--features needs --format jsonl or json", hint="drop --features or write JSON Lines")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
