"""`vswin fetch` (download, import and verify zoo checkpoints) and `vswin models` (list the zoo)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vswin_cli import cache, zoo
from vswin_cli.errors import ChecksumError, DownloadError, OfflineError, UsageError


NamesArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Zoo entries to fetch, e.g. swin-b-k600 (see `vswin models`).", show_default=False),
]
MirrorOpt = Annotated[
    Optional[str],
    typer.Option("--mirror", envvar="VSWIN_MIRROR", show_default=False,
                 help="Base URL serving the same file names (https://, http:// or file://), e.g. an internal server."),
]  # fmt: skip
FromOpt = Annotated[
    Optional[Path],
    typer.Option("--from", show_default=False,
                 help="Import a checkpoint or label file you already have (or a folder holding them) instead of "
                      "downloading; verified like a download."),
]  # fmt: skip


def fetch(
    names: NamesArg = None,
    all_entries: Annotated[bool, typer.Option("--all", help="Fetch every entry of the zoo (several GB).")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Re-hash the cached files of the named entries (else the "
                                         "whole cache) against the manifest; exit 1 if any differs.")] = False,
    mirror: MirrorOpt = None,
    from_path: FromOpt = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never use the network (same as VSWIN_OFFLINE=1); "
                                          "say which file is missing and how to get it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Download checkpoints and label maps into the cache, verified; print the checkpoint paths.

    Files go to VSWIN_HOME (else ~/.cache/vswin); an interrupted download resumes. Also read:
    VSWIN_MIRROR, VSWIN_OFFLINE=1, VSWIN_TIMEOUT (seconds without data before a retry, default 30).
    Examples:

      vswin fetch swin-b-k600

      vswin fetch swin-t-k400 --from ~/Downloads/swin_tiny_patch244_window877_kinetics400_1k.pth

      vswin fetch --verify
    """  # fmt: skip
    names = list(zoo.PRETRAINED) if all_entries else list(names or [])
    for name in names:
        zoo.get_entry(name)  # unknown names are usage errors, before any file is touched
    if not names and not verify:
        raise UsageError("no model names given", "name one or more entries (see `vswin models`), or use --all or --verify")
    if from_path is not None:
        if len(names) != 1:
            raise UsageError("--from imports the files of exactly one entry", f"e.g. `vswin fetch {(names or ['NAME'])[0]} --from FILE`")
        if not from_path.expanduser().exists():
            raise UsageError(f"--from {from_path}: no such file or folder", "give the checkpoint file you downloaded, or its folder")
    if verify:
        _verify(names)
    elif from_path is not None:
        for path in cache.import_file(names[0], from_path):
            typer.echo(path)
        missing = dict(cache.missing_entry_files(names[0]))
        entry = zoo.get_entry(names[0])
        if entry.filename in missing:  # e.g. a folder with the label map only: the entry is still unusable
            raise OfflineError(
                f"{from_path}: {entry.filename} is not there, so {names[0]}'s checkpoint is still not in the cache",
                f"download {entry.url} and run `vswin fetch {names[0]} --from FILE` with it (or a folder holding it)",
            )
        for filename, url in missing.items() if not quiet else ():  # one file at a time is fine: say what is left
            typer.echo(f"note: {filename} is not in the cache yet; import it too (from {url}), or let the next "
                       "online run fetch it", err=True)
    else:
        _fetch_each(names, mirror, offline=True if offline else None, progress=not quiet)


def _verify(names: list[str]) -> None:
    results = cache.verify_cache(names or None)
    for result in results:
        typer.echo(f"{'ok' if result.ok else 'FAILED':6} {result.path}" + ("" if result.ok else f": {result.reason}"))
    failed = [r for r in results if not r.ok]
    if failed:
        raise ChecksumError(
            f"{len(failed)} of {len(results)} cached files failed verification", "run `vswin fetch NAME` to download them again"
        )


def _fetch_each(names: list[str], mirror: str | None, offline: bool | None, progress: bool) -> None:
    """Fetch entries one by one, going on past a failed one (one unavailable file should not stop the rest)."""
    failed = []
    for name in names:
        try:
            typer.echo(cache.fetch(name, mirror=mirror, offline=offline, progress=progress))
        except DownloadError as err:
            if len(names) == 1:
                raise
            typer.echo(f"Error: {name}: {err}", err=True)
            failed.append(name)
    if failed:
        raise DownloadError(
            f"{len(failed)} of {len(names)} entries failed: {', '.join(failed)}",
            "run the same command again: finished files are kept and partial ones resume",
        )


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list (every field, file names, cache "
                                          "paths, recorded SHA-256) for scripts.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="The table only (no title or footnote).")] = False,
) -> None:
    """List the model zoo: architecture, dataset, classes, test views, published top-1, cache state.

    Cache state: "verified" (in the cache, checked, SHA-256 recorded), "cached" (present, not yet
    checked), "missing". `vswin fetch NAME` downloads an entry; `vswin fetch --verify` re-hashes.
    """
    rows = [(entry, cache.entry_status(entry)) for entry in zoo.PRETRAINED.values()]
    if as_json:
        manifest = cache.read_manifest()
        typer.echo(json.dumps([_entry_json(entry, status, manifest) for entry, status in rows], indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=None if quiet else f"vswin model zoo (cache: {cache.cache_dir()})", box=box.SIMPLE, pad_edge=False)
    table.add_column("name", no_wrap=True)
    for column in ("arch", "dataset", "classes", "views", "top-1", "cache"):
        table.add_column(column, no_wrap=True)
    for entry, status in rows:
        protocol = entry.protocol
        views = f"{protocol.num_clips}x{protocol.num_crops}" if protocol and entry.top1 is not None else "-"
        top1 = f"{entry.top1:.1f}" + ("*" if entry.notes.startswith("accuracy") else "") if entry.top1 is not None else "-"
        dataset = entry.dataset.replace("ImageNet", "IN")
        table.add_row(entry.name, entry.arch, dataset, str(entry.num_classes), views, top1, status)
    console = Console(soft_wrap=False)
    console.print(table)
    if not quiet:
        console.print("* torchvision's own figure (12 clips x 1 crop). ImageNet entries initialise `vswin train`.")


def _entry_json(entry: zoo.PretrainedEntry, status: str, manifest: dict) -> dict:
    data = dataclasses.asdict(entry)
    path = cache.checkpoint_path(entry)
    record = manifest.get(path.relative_to(cache.cache_dir()).as_posix(), {})
    data.update(filename=entry.filename, path=str(path), status=status)
    # recorded_* are what this cache verified; they are the values to pin in PRETRAINED (sha256, size)
    data.update(recorded_sha256=record.get("sha256"), recorded_size=record.get("size"), verified_at=record.get("verified_at"))
    if entry.labels:
        label_map = zoo.LABEL_MAPS[entry.labels]
        data.update(labels_url=label_map.url, labels_filename=label_map.filename)
    return data
