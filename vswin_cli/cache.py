"""The local cache of zoo files: paths, the verified manifest, fetch, offline import, verification.

`fetch(name)` downloads an entry's checkpoint and label map into the cache (see `vswin_cli.download`
for resume/lock/retries). Verification: the publishers give no checksums, so where an entry pins no
SHA-256 the downloaded file must load with `torch.load(weights_only=True)` and match the architecture's
exact key layout; its SHA-256 then goes into the cache manifest and every later use is checked
against that record. What a file must contain is checked by `vswin_cli.checkpoint_check` and
`vswin_cli.labels`; listing and deleting cached files is `vswin_cli.cache_contents`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vswin_cli.checkpoint_check import check_checkpoint
from vswin_cli.download import download_file, file_lock, sha256_of
from vswin_cli.errors import ChecksumError, ConfigError, DownloadError, OfflineError, VswinError
from vswin_cli.files import atomic_file, write_text_atomic
from vswin_cli.labels import read_label_file
from vswin_cli.zoo import LABEL_MAPS, PRETRAINED, LabelMap, PretrainedEntry, get_entry

# ----------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The cache folder: `VSWIN_HOME`, else `$XDG_CACHE_HOME/vswin`, else `~/.cache/vswin`."""
    if os.environ.get("VSWIN_HOME"):
        return Path(os.environ["VSWIN_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vswin"
    return Path.home() / ".cache" / "vswin"


def checkpoint_path(entry: PretrainedEntry) -> Path:
    """Where `entry`'s checkpoint lives in the cache (whether or not it is there)."""
    return cache_dir() / "checkpoints" / entry.filename


def labels_path(label_map: LabelMap) -> Path:
    """Where a label map lives in the cache."""
    return cache_dir() / "labels" / label_map.filename


def _manifest_path() -> Path:
    return cache_dir() / "manifest.json"


def read_manifest() -> dict[str, dict]:
    """The cache manifest: `{relative path: {"sha256", "size", "url", "verified_at"}}` (empty if none)."""
    path = _manifest_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(
            f"{path}: the cache manifest cannot be read ({err})",
            "delete it; `vswin fetch --verify` rebuilds it by checking the cached files again",
        ) from None


def _record(path: Path, sha256: str, size: int, url: str) -> None:
    """Record (or refresh) a verified file in the manifest: read-modify-write under a lock, atomic replace."""
    manifest = _manifest_path()
    _writable_folder(manifest.parent)
    with file_lock(manifest):
        files = read_manifest()
        files[relative_path(path)] = {
            "sha256": sha256,
            "size": size,
            "url": url,
            "verified_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _write_manifest(files)


def _write_manifest(files: dict[str, dict]) -> None:
    write_text_atomic(_manifest_path(), json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n")


def forget_deleted_files() -> None:
    """Drop the manifest records of files that no longer exist."""
    manifest = _manifest_path()
    if not manifest.exists():
        return
    with file_lock(manifest):
        files = read_manifest()
        kept = {rel: record for rel, record in files.items() if (cache_dir() / rel).exists()}
        if kept != files:
            _write_manifest(kept)


def _writable_folder(folder: Path) -> None:
    """Create a cache folder, or say clearly why it cannot be written (before any download starts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{folder}: cannot create the cache folder ({err.strerror})", "set VSWIN_HOME to a writable folder"
        ) from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{folder}: the cache folder is not writable", "set VSWIN_HOME to a writable folder")


def relative_path(path: Path) -> str:
    """`path` relative to the cache folder, as the manifest keys it (`checkpoints/NAME.pth`)."""
    return path.relative_to(cache_dir()).as_posix()


def is_offline(offline: bool | None = None) -> bool:
    """`offline` if given, else whether `VSWIN_OFFLINE` is set to 1/true/yes."""
    if offline is not None:
        return offline
    return os.environ.get("VSWIN_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _mirror_base(mirror: str | None) -> str | None:
    base = mirror or os.environ.get("VSWIN_MIRROR") or None
    if base is not None and urlparse(base).scheme not in {"http", "https", "file"}:
        raise ConfigError(f"mirror {base!r} is not an http(s):// or file:// URL", "e.g. VSWIN_MIRROR=https://models.example.com/vswin (or `vswin fetch NAME --mirror URL`)")
    return base


# ------------------------------------------------------------------------------------- one cached file


@dataclass(frozen=True)
class CachedFile:
    """A file the cache can hold: where it comes from, where it goes, and how to check its content."""

    path: Path
    url: str
    filename: str
    sha256: str | None
    size: int | None
    check: Any  # Callable[[Path], None]: raises if the content is wrong
    fetch_hint: str  # the `vswin fetch` command that gets it


def _checkpoint_file(entry: PretrainedEntry) -> CachedFile:
    return CachedFile(
        checkpoint_path(entry), entry.url, entry.filename, entry.sha256, entry.size,
        lambda path: check_checkpoint(path, entry), f"vswin fetch {entry.name}",
    )  # fmt: skip


def _label_file(label_map: LabelMap, entry_name: str | None = None) -> CachedFile:
    entry_name = entry_name or next(e.name for e in PRETRAINED.values() if e.labels == label_map.name)
    return CachedFile(
        labels_path(label_map), label_map.url, label_map.filename, None, None,
        lambda path: read_label_file(path, label_map.num_classes), f"vswin fetch {entry_name}",
    )  # fmt: skip


def _ensure(file: CachedFile, mirror: str | None, offline: bool, progress: bool) -> Path:
    """Make sure `file` is in the cache and verified; download it if needed (and allowed)."""
    record = read_manifest().get(relative_path(file.path))
    expected = file.sha256 or (record or {}).get("sha256")
    if file.path.exists():
        try:
            _verify_cached(file, record)
            return file.path
        except ChecksumError as err:
            if offline:
                raise
            sys.stderr.write(f"{err}; downloading it again\n")
            file.path.unlink(missing_ok=True)
    if offline:
        raise _offline_error(file)
    _writable_folder(file.path.parent)
    base = _mirror_base(mirror)
    url = f"{base.rstrip('/')}/{file.filename}" if base else file.url
    try:
        result = download_file(
            url, file.path, expected_sha256=expected, expected_size=file.size,
            check=_download_check(file, url) if expected is None else None, progress=progress,
        )  # fmt: skip
    except DownloadError as err:
        if isinstance(err, ChecksumError) and file.sha256 is None and record is not None:
            # the expected hash is our own record, not a pin
            raise ChecksumError(
                f"{err.message} (the hash recorded when this file was first verified, {record.get('verified_at')})",
                f"if the publisher replaced the file, forget the old record: delete {_manifest_path()} "
                "(`vswin fetch --verify` then records the other cached files again)",
            ) from None
        if err.hint:  # the downloader does not know the entry: name it in its `vswin fetch NAME ...` advice
            err.hint = err.hint.replace("vswin fetch NAME", file.fetch_hint)
        raise
    if not result.downloaded and expected is None:  # another process downloaded it while we waited
        _check_or_delete(file)
    _record(file.path, result.sha256, result.size, url)
    return file.path


def _verify_cached(file: CachedFile, record: dict | None) -> None:
    """Check a cached file against its pinned or recorded SHA-256; with neither, check its content and record it."""
    expected = file.sha256 or (record or {}).get("sha256")
    if expected is None:
        _check_or_delete(file)
        _record(file.path, sha256_of(file.path), file.path.stat().st_size, (record or {}).get("url", file.url))
        return
    digest = sha256_of(file.path)
    if digest != expected:
        raise ChecksumError(
            f"{file.path}: SHA-256 {digest} differs from the recorded {expected} (the cached file changed or is damaged)",
            f"delete it and run `{file.fetch_hint}` to download it again",
        )


def _download_check(file: CachedFile, url: str):
    """`file.check` for a finished download: errors name the URL rather than the temporary file."""

    def check(partial: Path) -> None:
        try:
            file.check(partial)
        except VswinError as err:
            message = err.message.replace(str(partial), url)
            raise type(err)(f"{message} (the download was deleted)", err.hint) from None

    return check


def _check_or_delete(file: CachedFile) -> None:
    try:
        file.check(file.path)
    except VswinError:
        file.path.unlink(missing_ok=True)
        raise


def _offline_error(*files: CachedFile) -> OfflineError:
    """Names every missing file, where to download it, and the `--from` command that imports it."""
    names = " and ".join(f.filename for f in files)
    folder = files[0].path.parent if len(files) == 1 else files[0].path.parent.parent
    source = files[0].filename if len(files) == 1 else "FOLDER"
    return OfflineError(
        f"offline mode (VSWIN_OFFLINE=1 or the command's offline option) and {names} {'is' if len(files) == 1 else 'are'} not in the cache ({folder})",
        f"download {' and '.join(f.url for f in files)} on a machine with internet, copy "
        f"{'it' if len(files) == 1 else 'them into one FOLDER'} here and run `vswin fetch {_entry_name(files[0])} --from {source}` "
        "(or unset VSWIN_OFFLINE to fetch)",
    )


def _entry_name(file: CachedFile) -> str:
    return file.fetch_hint.removeprefix("vswin fetch ")


# ---------------------------------------------------------------------------------------- public API


def fetch(
    name_or_names: str | PretrainedEntry | Iterable[str | PretrainedEntry],
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path | list[Path]:
    """Download (or find in the cache) the checkpoint and label map of one or more zoo entries.

    Args:
        name_or_names: an entry name (`swin-b-k600`) or several (or the `PretrainedEntry`s themselves).
        mirror: base URL serving the same file names (default `VSWIN_MIRROR`, else the publisher's URL).
        offline: never use the network (default `VSWIN_OFFLINE`); a missing file raises `OfflineError`
            naming it and how to get it.
        progress: show progress bars on stderr.

    Returns:
        The cached checkpoint path (a list of paths when given several names).
    """
    one = isinstance(name_or_names, (str, PretrainedEntry))
    names = [name_or_names] if one else list(name_or_names)
    entries = [n if isinstance(n, PretrainedEntry) else get_entry(n) for n in names]  # unknown names fail before any download
    offline = is_offline(offline)
    paths = []
    for entry in entries:
        missing = [f for f in entry_files(entry) if not f.path.exists()]
        if offline and missing:
            raise _offline_error(*missing)
        paths.append(_ensure(_checkpoint_file(entry), mirror, offline, progress))
        if entry.labels:
            _ensure(_label_file(LABEL_MAPS[entry.labels], entry.name), mirror, offline, progress=False)
    return paths[0] if one else paths


def import_file(name: str, source: str | Path) -> list[Path]:
    """Put files a user already has into the cache for entry `name` (`vswin fetch NAME --from ...`), verified.

    Args:
        name: the zoo entry.
        source: the checkpoint file, a label-map `.txt` file, or a folder holding the entry's files under
            their original names (as listed by `vswin models --json`).

    Returns:
        The cache paths written. Raises `ChecksumError` (the file is not what the entry expects, with
        the reason) or `ConfigError` (nothing usable found).
    """
    entry = get_entry(name)
    source = Path(source).expanduser()
    wanted = entry_files(entry)
    if source.is_dir():
        pairs = [(f, source / f.filename) for f in wanted if (source / f.filename).is_file()]
    elif source.is_file():
        is_text = source.suffix.lower() == ".txt"
        pairs = [(f, source) for f in wanted if f.filename.endswith(".txt") == is_text][:1]
    else:
        raise ConfigError(f"{source}: no such file or folder", "give the checkpoint file you downloaded, or its folder")
    if not pairs:
        names = ", ".join(f.filename for f in wanted)
        raise ConfigError(f"{source}: none of {entry.name}'s files found ({names})", "check the folder and file names")
    written = []
    for file, src in pairs:
        _writable_folder(file.path.parent)
        if file.sha256 is not None and sha256_of(src) != file.sha256:
            raise ChecksumError(f"{src}: SHA-256 differs from the pinned value for {entry.name}", "get the file again")
        file.check(src)  # before copying: a wrong file never enters the cache
        with file_lock(file.path):
            file.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(file.path, temp=file.path.with_name(file.path.name + ".incomplete")) as partial:
                try:
                    shutil.copyfile(src, partial)
                except OSError as err:
                    raise DownloadError(
                        f"{file.path}: cannot copy {src} into the cache ({err.strerror})",
                        "free some space (or point VSWIN_HOME at a bigger disk) and run the same command again",
                    ) from None
        _record(file.path, sha256_of(file.path), file.path.stat().st_size, src.resolve().as_uri())
        written.append(file.path)
    return written


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one cached file (`vswin fetch --verify`)."""

    path: Path
    ok: bool
    reason: str  # "ok", or what is wrong


def verify_cache(names: Iterable[str] | None = None) -> list[VerifyResult]:
    """Re-hash cached files against the manifest (and pinned values); refresh `verified_at` of good ones.

    Args:
        names: zoo entries to check (their checkpoint and label map); None = every entry file that is in
            the cache or recorded in the manifest. A file without a record is checked by content, then
            recorded (as after a download).

    Returns:
        One `VerifyResult` per file. A file whose hash differs from its record is left in place (the
        caller reports it; the next `fetch` replaces it); an unrecorded file that fails the content check
        is deleted.
    """
    manifest = read_manifest()
    if names is None:
        entries = list(PRETRAINED.values())
        files = {str(f.path): f for e in entries for f in entry_files(e) if f.path.exists() or relative_path(f.path) in manifest}
    else:
        files = {str(f.path): f for n in names for f in entry_files(get_entry(n))}
    results = []
    for file in files.values():
        record = manifest.get(relative_path(file.path))
        if not file.path.exists():
            results.append(VerifyResult(file.path, False, "recorded but missing from the cache" if record else "not in the cache"))
            continue
        try:
            _verify_cached(file, record)
            if record is not None:
                _record(file.path, record["sha256"], file.path.stat().st_size, record.get("url", file.url))
            results.append(VerifyResult(file.path, True, "ok"))
        except VswinError as err:
            results.append(VerifyResult(file.path, False, err.message))
    return results


def entry_files(entry: PretrainedEntry) -> list[CachedFile]:
    """The cache files of zoo entry `entry`: its checkpoint, then its label map if it has one."""
    return [_checkpoint_file(entry)] + ([_label_file(LABEL_MAPS[entry.labels], entry.name)] if entry.labels else [])


def entry_status(entry: PretrainedEntry) -> str:
    """"missing", "cached" (present, not yet verified) or "verified" (its manifest record matches its size).

    Cheap (no hashing), for `vswin models`; `verify_cache` re-hashes.
    """
    manifest = read_manifest()
    states = []
    for file in entry_files(entry):
        record = manifest.get(relative_path(file.path))
        if not file.path.exists():
            states.append("missing")
        elif record is not None and record.get("size") == file.path.stat().st_size:
            states.append("verified")
        else:
            states.append("cached")
    for state in ("missing", "cached"):
        if state in states:
            return state
    return "verified"


def load_labels(name_or_path: str | Path, offline: bool | None = None, mirror: str | None = None) -> list[str]:
    """Class names, line i = class i.

    Args:
        name_or_path: a label-map name (`kinetics400`, `kinetics600`, `sthv2`; fetched into the cache
            on first use), a zoo entry name (its label map), or a text file with one name per line.

    Returns:
        The list of names. Raises `ConfigError` for an empty name or a wrong count.
    """
    key = str(name_or_path)
    if key in PRETRAINED and PRETRAINED[key].labels:
        key = PRETRAINED[key].labels
    if key in LABEL_MAPS:
        label_map = LABEL_MAPS[key]
        path = _ensure(_label_file(label_map), mirror, is_offline(offline), progress=False)
        return read_label_file(path, label_map.num_classes)
    path = Path(key).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{key}: not a label file or a known label map",
            f"give a text file with one class name per line, or one of: {', '.join(LABEL_MAPS)}",
        )
    return read_label_file(path, None)




def missing_entry_files(name: str) -> list[tuple[str, str]]:
    """`(file name, download URL)` of each file of zoo entry `name` that is not in the cache."""
    return [(f.filename, f.url) for f in entry_files(get_entry(name)) if not f.path.exists()]
