"""`vswin cache list|rm|prune`: what the model cache holds, and deleting from it (library: vswin_cli/cache_contents.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vswin_cli import cache, cache_contents
from vswin_cli.options import QuietOpt

app = typer.Typer(
    name="cache",
    help="List and delete cached checkpoints and label maps (the folder `vswin fetch` fills).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def human_size(num_bytes: int) -> str:
    """1536 -> "1.5 KB" (powers of 1024, as `du -h`)."""
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (path, size, entries, kind, state) for scripts.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="The file lines only (no header line).")] = False,
) -> None:
    """List the cached files: size, zoo entries using each, and state.

    State: verified (checked, SHA-256 recorded), cached (not yet checked: `vswin fetch --verify`),
    incomplete (an unfinished download; `vswin fetch NAME` resumes it) or unknown (no zoo entry uses
    it: `vswin cache prune` deletes it).
    """
    items = cache_contents.list_cache()
    if as_json:
        rows = [{"path": str(i.path), "size": i.size, "entries": list(i.entries), "kind": i.kind, "state": i.state} for i in items]
        typer.echo(json.dumps(rows, indent=2))
        return
    root = cache.cache_dir()
    if not quiet:
        typer.echo(f"cache: {root} ({len(items)} files, {human_size(sum(i.size for i in items))})")
    for item in items:
        entries = ",".join(item.entries) or "-"
        typer.echo(f"{human_size(item.size):>9}  {item.state:10}  {entries:24}  {item.path.relative_to(root).as_posix()}")


@app.command("rm")
def rm(
    targets: Annotated[list[str], typer.Argument(help="Zoo entry names (e.g. swin-t-k400) or cached files (as `vswin cache list` shows them).", show_default=False)],
    quiet: QuietOpt = False,
) -> None:
    """Delete cached files by zoo entry name or by file, and forget their manifest records.

    An entry's label map is kept while another cached entry uses it. `vswin fetch NAME` gets them again.
    """
    deleted = cache_contents.remove_from_cache(targets)
    if not quiet:
        for path in deleted:
            typer.echo(f"deleted {path}", err=True)
        if not deleted:
            typer.echo(f"nothing cached for {' '.join(targets)}", err=True)


@app.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Only list what would be deleted.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete unfinished downloads and files no zoo entry uses (old releases, stray copies)."""
    items = cache_contents.prune_cache(dry_run=dry_run)
    if not quiet:
        verb = "would delete" if dry_run else "deleted"
        for item in items:
            typer.echo(f"{verb} {item.path} ({human_size(item.size)}, {item.state})", err=True)
        typer.echo(f"{verb} {len(items)} file(s), {human_size(sum(i.size for i in items))}", err=True)
