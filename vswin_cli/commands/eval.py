"""`vswin eval`: accuracy of a model on a labelled video list, with the model's published test protocol."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.errors import UsageError
from vswin_cli.options import (
    OUT, RUN, ArchOpt, BatchViewsOpt, ClipLenOpt, CropSizeOpt, DeviceOpt, FrameIntervalOpt, LabelsOpt, ModelOpt, OfflineOpt, Precision,
    PrecisionOpt, QuietOpt, RuntimeOpt, VerboseOpt, ViewsOpt, WeightsOpt, WorkersOpt,
)

EngineKind = Enum("EngineKind", {name: name for name in ("local", "ray")}, type=str)


def eval(  # noqa: A001 (the command's name)
    dataset: Annotated[Path, typer.Option(help="Labelled list: 'relative/path.mp4 LABEL' per line, or CSV/TSV with a 'path,label' header.")],
    data_root: Annotated[Optional[Path], typer.Option(help="Folder the list's paths are relative to (default: the list's folder).")] = None,
    model: ModelOpt = None, weights: WeightsOpt = None, arch: ArchOpt = None, labels: LabelsOpt = None,
    offline: OfflineOpt = False,
    views: ViewsOpt = None, clip_len: ClipLenOpt = None, frame_interval: FrameIntervalOpt = None, crop_size: CropSizeOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="metrics JSON file (written atomically), or - for stdout.", rich_help_panel=OUT)] = "-",
    per_class: Annotated[Optional[Path], typer.Option(help="Per-class accuracy CSV (default with -o FILE: FILE's name + .per_class.csv).", rich_help_panel=OUT)] = None,
    predictions: Annotated[Optional[Path], typer.Option(help="Per-video predictions as JSON Lines (top-5, or the error); each video's probabilities go to the hidden .FILE.probs beside it, for --resume.", rich_help_panel=OUT)] = None,
    scores: Annotated[Optional[Path], typer.Option(help="Every listed video's probabilities as a numpy .npz (scores, failed, labels, videos, errors, class_names), written atomically, to recompute any metric later.", rich_help_panel=OUT)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the videos already in --predictions and evaluate the rest.", rich_help_panel=OUT)] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N videos (after --shuffle-seed).", rich_help_panel=OUT)] = None,
    shuffle_seed: Annotated[Optional[int], typer.Option(help="Shuffle the list with this seed first (a random --limit subset).", rich_help_panel=OUT)] = None,
    quiet: QuietOpt = False, verbose: VerboseOpt = False,
    batch_views: BatchViewsOpt = 12,
    workers: WorkersOpt = None, device: DeviceOpt = "auto", precision: PrecisionOpt = Precision.auto,
    runtime: RuntimeOpt = "auto",
    engine_kind: Annotated[EngineKind, typer.Option("--engine", help="local: decode processes feed the model in this process. ray: a Ray Data pipeline on the cluster at --ray-address, else on a local Ray instance on 127.0.0.1 for this run; same metrics (needs the ray extra: pip install 'vswin[ray]').", rich_help_panel=RUN)] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", envvar="RAY_ADDRESS", help="With --engine ray: the Ray cluster to join (HOST:PORT, auto, ray://...). Default: start a local instance for the run.", rich_help_panel=RUN, show_default=False)] = None,
) -> None:
    """Measure top-1, top-5 and mean class accuracy on a labelled video list.

    The metrics are the authors' (mmaction2 0.x): mean_class_accuracy
    averages over the predicted and the true classes, mean_class_accuracy_present
    over the classes the list holds. --scores saves every video's probabilities;
    vswin_cli.metrics.metrics_from_scores_file recomputes the metrics from them.

    Videos that fail to decode are listed (in the JSON and on stderr) and counted; the exit status is
    then 1, after all other videos are done.

    Examples:

      vswin eval --dataset k400_val.txt --data-root k400/val -m swin-t-k400 -o metrics.json --predictions preds.jsonl

      vswin eval --dataset k400_val.txt --data-root k400/val -m swin-t-k400 -o metrics.json --scores scores.npz

      vswin eval --dataset val.txt --weights runs/a/best.pt --limit 200 --shuffle-seed 0 --views fast

      torchrun --standalone --nproc-per-node 8 -m vswin_cli eval --dataset k400_val.txt -m swin-b-k400 -o m.json
    """
    from vswin_cli.api import TagSettings
    from vswin_cli.checks import check_arch, check_engine, check_input, check_labels, check_model, check_output

    if resume and predictions is None:
        raise UsageError("--resume needs --predictions (the file the earlier run was writing)")
    settings = TagSettings(window=math.inf, views=views, clip_len=clip_len, frame_interval=frame_interval,
                           crop_size=crop_size, top_k=0, batch_views=batch_views, workers=workers)
    check_model(model)
    check_input(weights, "--weights")
    check_arch(arch)
    check_labels(labels)
    if not dataset.is_file():
        raise UsageError(f"--dataset {dataset}: no such file", hint="give the labelled list file (see `vswin eval --help`)")
    if scores is not None and scores.suffix != ".npz":
        raise UsageError(f"--scores {scores}: the scores file is a numpy archive and its name ends in .npz")
    for path in (output, per_class, predictions, scores):
        check_output(str(path) if path is not None else "-")
    check_engine(EngineKind(engine_kind).value)

    # PyTorch and the decoders load only now that the command line is known to be usable.
    from vswin_cli.api import default_workers, load
    from vswin_cli.datasets import parse_list
    from vswin_cli.decode import set_decoder_logging
    from vswin_cli.distributed import setup_device
    from vswin_cli.engine import evaluate_list, select_entries
    from vswin_cli.metrics import eval_summary, per_class_csv
    from vswin_cli.outputs import write_output

    run_device, rank, world = setup_device(device)
    if EngineKind(engine_kind).value == "ray" and world > 1:
        raise UsageError("--engine ray runs one driver; under torchrun every rank would score its share on Ray",
                         hint="start vswin eval --engine ray once, without torchrun")
    set_decoder_logging(verbose)
    tagger = load(model, weights=weights, arch=arch, labels=labels, device=run_device, precision=precision,
                  runtime=runtime, offline=True if offline else None, progress=not quiet and rank == 0)
    spec = settings.spec(tagger.protocol)
    entries = select_entries(parse_list(dataset, data_root, tagger.labels), limit, shuffle_seed)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not quiet and rank == 0 else (lambda msg: None)
    say(f"evaluating {len(entries)} videos with {tagger.name}: {spec.num_clips} clips x {spec.num_crops} crops of "
        f"{spec.clip_len} frames on {run_device}")
    report = evaluate_list(
        tagger.model, entries, spec, tagger.labels, run_device, max_views=batch_views,
        workers=default_workers() if workers is None else workers, precision=tagger.precision,
        predictions=predictions, resume=resume, scores=scores, runtime=tagger.runtime, engine=EngineKind(engine_kind).value,
        ray_address=ray_address, verbose=verbose,
        progress=_every(10.0, lambda done, total: say(f"  {done}/{total} videos")),
    )
    if report is None:  # not rank 0
        return
    write_output(output, json.dumps(eval_summary(report, tagger.name, dataset, spec, len(entries)), indent=2) + "\n")
    per_class_path = per_class or (Path(output).with_suffix(".per_class.csv") if output != "-" else None)
    if per_class_path is not None:
        write_output(str(per_class_path), per_class_csv(report.metrics))
    m = report.metrics
    say(f"top-1 {m.top1:.4f}  top-5 {m.top5:.4f}  mean class {m.mean_class_accuracy:.4f}, "
        f"over classes present {m.mean_class_accuracy_present:.4f}  "
        f"({m.num_used} videos used, {m.num_failed} failed)")
    for video, reason in report.failed:
        say(f"  failed: {video}: {reason}")
    if report.failed:
        raise typer.Exit(1)


def _every(seconds: float, show):
    """`show(done, total)` at most every `seconds`, and for the last video."""
    import time

    last = [float("-inf")]

    def progress(done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            show(done, total)

    return progress
