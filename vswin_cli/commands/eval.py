"""`vswin eval`: accuracy of a model on a labelled video list, with the model's published test protocol."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.errors import ConfigError
from vswin_cli.files import write_text_atomic
from vswin_cli.options import Precision, resolve_precision

MODEL = "Model"
VIEWS = "Views (default: the model's published protocol)"
OUT = "Output"
RUN = "Speed and devices"


def eval(  # noqa: A001 (the command's name)
    dataset: Annotated[Path, typer.Option(help="Labelled list: 'relative/path.mp4 LABEL' per line, or CSV/TSV with a 'path,label' header.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the list's paths are relative to (default: the list's folder).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Zoo model name, e.g. swin-t-k400 (see `vswin models`).", rich_help_panel=MODEL)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Local checkpoint instead of --model (vswin train output, official or torchvision file).", rich_help_panel=MODEL)] = None,
    arch: Annotated[Optional[str], typer.Option(help="With --weights that are not a vswin checkpoint: swin-t, swin-s, swin-b or a config.json.", rich_help_panel=MODEL)] = None,
    labels: Annotated[Optional[str], typer.Option(help="Class-name file or label set name (default: the model's).", rich_help_panel=MODEL)] = None,
    views: Annotated[Optional[str], typer.Option(help="CLIPSxCROPS, e.g. 4x3 (Kinetics protocol), 1x3 (SSv2), 1x1 (fast check).", rich_help_panel=VIEWS)] = None,
    clip_len: Annotated[Optional[int], typer.Option(min=1, help="Frames per clip (default: the model's).", rich_help_panel=VIEWS)] = None,
    frame_interval: Annotated[Optional[int], typer.Option(min=1, help="Frame step in a clip (default: the model's).", rich_help_panel=VIEWS)] = None,
    crop_size: Annotated[Optional[int], typer.Option(min=8, help="Short-side resize and crop size (default: the model's, 224).", rich_help_panel=VIEWS)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="metrics JSON file (written atomically), or - for stdout.", rich_help_panel=OUT)] = "-",
    per_class: Annotated[Optional[Path], typer.Option(help="Per-class accuracy CSV (default with -o FILE: FILE's name + .per_class.csv).", rich_help_panel=OUT)] = None,
    predictions: Annotated[Optional[Path], typer.Option(help="Per-video predictions as JSON Lines (top-5, or the error).", rich_help_panel=OUT)] = None,
    resume: Annotated[bool, typer.Option(help="Keep the videos already in --predictions and evaluate the rest.", rich_help_panel=OUT)] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N videos (after --shuffle-seed).", rich_help_panel=OUT)] = None,
    shuffle_seed: Annotated[Optional[int], typer.Option(help="Shuffle the list with this seed first (a random --limit subset).", rich_help_panel=OUT)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.", rich_help_panel=OUT)] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Videos decoded and batched together.", rich_help_panel=RUN)] = 2,
    max_views: Annotated[int, typer.Option(min=1, help="Views per forward pass (memory).", rich_help_panel=RUN)] = 12,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes per GPU/process (default: CPU cores, at most 8).", rich_help_panel=RUN)] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:N.", rich_help_panel=RUN)] = "auto",
    precision: Annotated[Precision, typer.Option(help="auto: bf16 autocast on CUDA, fp32 on CPU.", rich_help_panel=RUN)] = Precision.auto,
) -> None:
    """Measure top-1, top-5 and mean class accuracy on a labelled video list.

    Videos that fail to decode are listed (in the JSON and on stderr) and counted; the exit status is
    then 1, after all other videos are done.

    Examples:

      vswin eval --dataset k400_val.txt --data-root k400/val -m swin-t-k400 -o metrics.json --predictions preds.jsonl

      vswin eval --dataset val.txt --weights runs/a/best.pt --limit 200 --shuffle-seed 0 --views 1x1

      torchrun --standalone --nproc-per-node 8 -m vswin_cli eval --dataset k400_val.txt -m swin-b-k400 -o m.json
    """
    from vswin_cli.datasets import ClipSpec, parse_list
    from vswin_cli.engine import evaluate_list, select_entries
    from vswin_cli.metrics import write_per_class_csv
    from vswin_cli.pretrained import resolve_model
    from vswin_cli.train import setup_device

    if resume and predictions is None:
        raise ConfigError("--resume needs --predictions (the file the earlier run was writing)")
    num_clips, num_crops = _parse_views(views)
    run_device, rank, _world = setup_device(device)
    resolved = resolve_model(model=model, weights=weights, arch=arch, labels=labels, device=str(run_device), progress=not quiet and rank == 0)
    base = resolved.protocol  # the zoo entry's protocol, or the clip shape a vswin checkpoint was trained on
    size = crop_size or base.crop_size
    spec = ClipSpec(
        sampling=base.sampling, clip_len=clip_len or base.clip_len, frame_interval=frame_interval or base.frame_interval,
        num_clips=num_clips or base.num_clips, num_crops=num_crops or base.num_crops, crop_size=size, resize_short=size,
    )
    entries = select_entries(parse_list(dataset, data_root, resolved.labels), limit, shuffle_seed)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not quiet and rank == 0 else (lambda msg: None)
    say(f"evaluating {len(entries)} videos with {resolved.name}: {spec.num_clips} clips x {spec.num_crops} crops of "
        f"{spec.clip_len} frames on {run_device}")
    report = evaluate_list(
        resolved.model, entries, spec, resolved.labels, run_device, batch_size=batch_size, max_views=max_views,
        workers=workers if workers is not None else min(os.cpu_count() or 1, 8),
        precision=resolve_precision(precision, run_device),
        predictions=predictions, resume=resume,
        progress=(lambda done, total: say(f"  {done}/{total}") if done % 100 == 0 or done == total else None) if not quiet else None,
    )
    if report is None:  # not rank 0
        return
    m = report.metrics
    result = {
        "model": resolved.name, "dataset": str(dataset),
        "protocol": {"sampling": spec.sampling, "clip_len": spec.clip_len, "frame_interval": spec.frame_interval,
                     "num_clips": spec.num_clips, "num_crops": spec.num_crops, "crop_size": spec.crop_size},
        **m.summary(), "num_videos_listed": len(entries), "num_videos_resumed": report.num_resumed,
        "failed": [{"video": video, "reason": reason} for video, reason in report.failed],
    }
    _write(output, json.dumps(result, indent=2) + "\n")
    per_class_path = per_class or (Path(output).with_suffix(".per_class.csv") if output != "-" else None)
    if per_class_path is not None:
        import io

        text = io.StringIO()
        write_per_class_csv(m, text)
        _write(str(per_class_path), text.getvalue())
    say(f"top-1 {m.top1:.4f}  top-5 {m.top5:.4f}  mean class {m.mean_class_accuracy:.4f}  "
        f"({m.num_used} videos used, {m.num_failed} failed)")
    for video, reason in report.failed:
        say(f"  failed: {video}: {reason}")
    if report.failed:
        raise typer.Exit(1)


def _parse_views(views: str | None) -> tuple[int | None, int | None]:
    if views is None:
        return None, None
    try:
        clips, crops = (int(x) for x in views.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{views!r} is not CLIPSxCROPS, e.g. 4x3", param_hint="--views") from None
    if clips < 1 or crops not in (1, 3):
        raise typer.BadParameter("clips must be >= 1 and crops 1 or 3", param_hint="--views")
    return clips, crops


def _write(target: str, text: str) -> None:
    """Write to stdout (`-`) or atomically to a file."""
    if target == "-":
        sys.stdout.write(text)
        return
    write_text_atomic(target, text)
