"""What is in the cache folder, and deleting from it (`vswin cache list/rm/prune`).

Cheap: sizes and manifest records, no hashing (`vswin_cli.cache.verify_cache` re-hashes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vswin_cli.cache import (
    cache_dir, checkpoint_path, entry_files, forget_deleted_files, labels_path, read_manifest, relative_path,
)
from vswin_cli.errors import ConfigError
from vswin_cli.zoo import LABEL_MAPS, PRETRAINED, get_entry


@dataclass(frozen=True)
class CacheItem:
    """One file in the cache folder, as `vswin cache list` shows it.

    `state`: "verified" (its manifest record matches its size), "cached" (a zoo file not yet verified,
    or changed since), "incomplete" (an unfinished download, `NAME.incomplete` and its `.json`
    validator) or "unknown" (not a file of any zoo entry: an old release, something copied in).
    """

    path: Path
    size: int
    entries: tuple[str, ...]  # zoo entries that use the file (a label map serves several)
    kind: str  # "checkpoint", "labels", "partial" or "other"
    state: str


def _zoo_files() -> dict[str, tuple[str, list[str]]]:
    """{cache-relative path: (kind, [entry names])} of every file the zoo can put in the cache."""
    files: dict[str, tuple[str, list[str]]] = {}
    for entry in PRETRAINED.values():
        for file in entry_files(entry):
            kind = "labels" if file.path.parent.name == "labels" else "checkpoint"
            files.setdefault(relative_path(file.path), (kind, []))[1].append(entry.name)
    return files


def list_cache() -> list[CacheItem]:
    """Every file under the cache folder (not the manifest or lock files), sorted by path.

    Cheap: sizes and manifest records only, no hashing (`verify_cache` re-hashes).
    """
    root = cache_dir()
    if not root.is_dir():
        return []
    manifest, zoo_files = read_manifest(), _zoo_files()
    items = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = relative_path(path)
        if relative == "manifest.json" or path.name.endswith(".lock") or path.name.startswith(".vswin-"):
            continue
        size = path.stat().st_size
        if path.name.endswith((".incomplete", ".incomplete.json")):
            final = relative.removesuffix(".json").removesuffix(".incomplete")
            items.append(CacheItem(path, size, tuple(zoo_files.get(final, ("", []))[1]), "partial", "incomplete"))
        elif relative in zoo_files:
            kind, entries = zoo_files[relative]
            record = manifest.get(relative)
            state = "verified" if record is not None and record.get("size") == size else "cached"
            items.append(CacheItem(path, size, tuple(entries), kind, state))
        else:
            items.append(CacheItem(path, size, (), "other", "unknown"))
    return items


def cache_size() -> int:
    """Bytes used by the files `list_cache` lists."""
    return sum(item.size for item in list_cache())


def remove_from_cache(targets: Iterable[str]) -> list[Path]:
    """Delete cached files by zoo entry name or by file (`vswin cache rm`), and forget their records.

    Args:
        targets: entry names (their checkpoint, partial downloads, and their label map unless another
            entry whose checkpoint is still cached uses it), or files: a path inside the cache folder,
            relative to it, or a bare file name as `vswin cache list` shows it.

    Returns:
        The paths deleted. Raises `UnknownModelError` for a name that is neither an entry nor a cached
        file, and `ConfigError` for a path outside the cache folder (nothing is deleted then).
    """
    root = cache_dir().resolve()
    items = {item.path.resolve(): item for item in list_cache()}
    chosen: list[Path] = []
    by_name = [(t, [p for p in items if p.name == t]) for t in targets]
    entry_names = []
    for target, matches in by_name:
        if target in PRETRAINED:
            entry_names.append(target)
            continue
        path = Path(target).expanduser()
        candidate = (path if path.is_absolute() else root / path).resolve()
        if candidate in items:
            chosen.append(candidate)
        elif len(matches) == 1:
            chosen.append(matches[0])
        elif path.is_absolute() and root not in candidate.parents:
            raise ConfigError(f"{target}: not inside the cache folder {root}", "`vswin cache rm` only deletes cached files")
        else:
            get_entry(target)  # raises UnknownModelError with "did you mean"
    removed_entries = set(entry_names)
    for name in entry_names:
        chosen += [p for p, item in items.items() if name in item.entries and item.kind in ("checkpoint", "partial")]
        label_map = PRETRAINED[name].labels
        if label_map:
            labels = labels_path(LABEL_MAPS[label_map]).resolve()
            users = [e for e in PRETRAINED.values() if e.labels == label_map and e.name not in removed_entries
                     and checkpoint_path(e).exists()]
            if labels in items and not users:
                chosen.append(labels)
    deleted = []
    for path in dict.fromkeys(chosen):  # once each, in order
        path.unlink(missing_ok=True)
        deleted.append(path)
    forget_deleted_files()
    return deleted


def prune_cache(dry_run: bool = False) -> list[CacheItem]:
    """Delete what no zoo entry needs (`vswin cache prune`): unfinished downloads and unknown files.

    Args:
        dry_run: only say what would be deleted.

    Returns:
        The items deleted (or that would be). Manifest records of files that are gone are dropped too.
    """
    doomed = [item for item in list_cache() if item.state in ("incomplete", "unknown")]
    if not dry_run:
        for item in doomed:
            item.path.unlink(missing_ok=True)
        forget_deleted_files()
    return doomed
