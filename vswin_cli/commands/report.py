"""`vswin report` (an HTML page of a tag run) and `vswin annotate` (videos with their labels drawn on)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli.checks import check_input, check_output, check_output_folder
from vswin_cli.errors import UsageError

RESULTS_ARG = typer.Argument(help="Results file written by `vswin tag` (JSON Lines, JSON, CSV or TSV).",
                             show_default=False)
VIDEOS_HELP = ("Folder the results' video paths are relative to (the folder given to `vswin tag`). "
               "Default: the working directory, then the results file's folder.")


def report(
    results: Annotated[Path, RESULTS_ARG],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write (self-contained, works offline).")] = Path("report.html"),
    videos: Annotated[Optional[Path], typer.Option("--videos", help=VIDEOS_HELP, show_default=False, exists=True, file_okay=False)] = None,
    title: Annotated[Optional[str], typer.Option(help="Page title (default: the results file name).", show_default=False)] = None,
    thumbnails: Annotated[bool, typer.Option("--thumbnails/--no-thumbnails", help="Embed one keyframe per segment (decodes each video once).")] = True,
    page_size: Annotated[int, typer.Option(min=1, help="Videos per page in the browser.")] = 25,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No closing summary on stderr.")] = False,
) -> None:
    """Build one HTML report of a tag run: per video a timeline of segments, keyframes and a player.

    Examples:

      vswin tag ./clips -m swin-t-k400 -o tags.jsonl && vswin report tags.jsonl --videos ./clips -o report.html

    Exit status: 0 written (also when the videos are not found: the page then has no players, and a
    note says so), 1 the results file cannot be read (the error names the line), 2 usage error.
    """
    check_input(results)
    check_output(str(output))
    from vswin_cli.report import write_report
    from vswin_cli.results import video_roots

    summary = write_report(results, output, video_root=videos, title=title, thumbnails=thumbnails,
                           page_size=page_size)
    if not quiet:
        sys.stderr.write(f"wrote {summary.path}: {summary.num_videos} video(s), {summary.num_segments} segment(s), "
                         f"{summary.num_errors} error record(s), {summary.num_linked} playable\n")
        unplayable = summary.num_videos - summary.num_errors - summary.num_linked
        if unplayable > 0:
            looked = " and ".join(str(root) for root in video_roots(results, videos))
            sys.stderr.write(f"note: {unplayable} tagged video(s) not found (looked in {looked}), so the page shows "
                             "their labels without a player or keyframes; add the players with --videos DIR, the "
                             "folder given to `vswin tag`\n")


def annotate(
    results: Annotated[Path, RESULTS_ARG],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder (created); each video keeps its relative path, as .mp4.", show_default=False)] = None,
    videos: Annotated[Optional[Path], typer.Option("--videos", help=VIDEOS_HELP, show_default=False, exists=True, file_okay=False)] = None,
    top_k: Annotated[int, typer.Option(min=0, help="Labels drawn per segment.")] = 3,
    crf: Annotated[int, typer.Option(min=0, max=51, help="H.264 quality: lower is better (18: visually lossless).")] = 20,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-video lines on stderr.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", hidden=True, show_default=False)] = None,  # -o's old name, hidden: old scripts still run
) -> None:
    """Write each tagged video again with its current segment's top labels and scores drawn on the frames.

    H.264 in MP4 at the original size and frame rate; audio is copied when present.

    Examples:

      vswin annotate tags.jsonl --videos ./clips -o labelled/

    Exit status: 0 all written, 1 some video could not be read or written (also: not found; give --videos),
    2 usage error.
    """
    if output is not None and out is not None and output != out:
        raise UsageError(f"-o {output} and --out {out} name two folders", hint="give -o DIR only (--out is its old name)")
    output = output or out
    if output is None:
        raise UsageError("no output folder given", hint="add -o DIR, e.g. `vswin annotate tags.jsonl -o labelled/`")
    check_input(results)
    check_output_folder(output, "-o")
    from vswin_cli.annotate import annotate_videos

    def on_video(key, result, reason):
        if reason is not None:
            sys.stderr.write(f"failed: {reason}\n")
        elif not quiet:
            sys.stderr.write(f"wrote {result.output} ({result.num_frames} frames, audio {result.audio})\n")

    summary = annotate_videos(results, output, video_root=videos, top_k=top_k, crf=crf, on_video=on_video)
    if not quiet:
        sys.stderr.write(f"annotated {summary.num_written} video(s); {len(summary.failures)} failed, "
                         f"{summary.num_skipped} error record(s) skipped\n")
    raise typer.Exit(1 if summary.failures else 0)
