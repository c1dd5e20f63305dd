"""The model zoo: every released Video Swin checkpoint by name, a verified local cache, and model loading.

`PRETRAINED` is one plain table of `PretrainedEntry`; `fetch(name)` downloads an entry's checkpoint and
label map into the cache (see `vswin_cli.download` for resume/lock/retries); `resolve_model(...)` turns
`--model NAME` or `--weights FILE --arch A --labels FILE` into a loaded `VideoSwin` with its labels and
test protocol (used by `tag`, `eval` and `train`).

Verification: the publishers give no checksums, so where an entry pins no SHA-256 the downloaded file
must load with `torch.load(weights_only=True)` and match the architecture's exact key layout; its SHA-256
then goes into the cache manifest and every later use is checked against that record.

Checkpoints: SwinTransformer/Video-Swin-Transformer (release v1.0.4, Apache-2.0), microsoft/Swin-Transformer
(ImageNet 2D, MIT), torchvision swin3d (BSD-3-Clause code, weights ported from the Apache-2.0 originals).
Label maps: open-mmlab/mmaction2 (Apache-2.0). Facts: ../shared/spec/zoo.md.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vswin_cli.download import download_file, file_lock, sha256_of
from vswin_cli.errors import (
    ChecksumError,
    ConfigError,
    DownloadError,
    OfflineError,
    UnknownModelError,
    VswinError,
)
from vswin_cli.files import write_text_atomic
from vswin_cli.video import PROTOCOLS, ClipSpec

_VIDEO_SWIN = "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
_SWIN_2D = "https://github.com/SwinTransformer/storage/releases/download/"
_TORCHVISION = "https://download.pytorch.org/models/"
_MMACTION_LABELS = "https://raw.githubusercontent.com/open-mmlab/mmaction2/main/tools/data/"


# The published test protocols (the Video Swin test configs); see `vswin_cli.video.PROTOCOLS`.
KINETICS_TEST = PROTOCOLS["k400"]
SSV2_TEST = PROTOCOLS["sthv2"]


@dataclass(frozen=True)
class LabelMap:
    """A class-name list: line i is the name of class i.

    Args:
        name: how users and entries refer to it ("kinetics400").
        url: the public source.
        filename: its name in the cache and on a mirror.
        num_classes: the number of lines it must have.
    """

    name: str
    url: str
    filename: str
    num_classes: int


LABEL_MAPS: dict[str, LabelMap] = {
    m.name: m
    for m in (
        LabelMap("kinetics400", _MMACTION_LABELS + "kinetics/label_map_k400.txt", "label_map_k400.txt", 400),
        LabelMap("kinetics600", _MMACTION_LABELS + "kinetics/label_map_k600.txt", "label_map_k600.txt", 600),
        LabelMap("sthv2", _MMACTION_LABELS + "sthv2/label_map.txt", "label_map_sthv2.txt", 174),
    )
}


@dataclass(frozen=True)
class PretrainedEntry:
    """One released checkpoint.

    Args:
        name: what users type (`swin-b-k600`).
        arch: the architecture it loads into (`swin-t`, `swin-s`, `swin-b`, see `models.VARIANTS`).
        overrides: config fields that differ from the architecture's defaults (window, classes...).
        url: where the publisher serves the file.
        format: "mmaction" (official `{'meta', 'state_dict'}`), "torchvision" (plain state_dict) or
            "imagenet2d" (`{'model': ...}` of a 2D Swin, inflated into `arch` for training).
        dataset: what the head was trained on ("K400", "K600", "SSv2", "ImageNet-1K", "ImageNet-22K").
        pretrain: what the backbone started from.
        labels: a key of `LABEL_MAPS`, or None (ImageNet heads: only an initialisation for training).
        num_classes: the size of the file's classification head.
        protocol: test protocol of the published accuracy; None for initialisation checkpoints.
        top1, top5: published accuracy (%) under `protocol` (or as `notes` says), None if unpublished.
        sha256, size: pinned values when known; upstream publishes none, so None here (the manifest
            records them at first download).
    """

    name: str
    arch: str
    url: str
    format: str
    dataset: str
    pretrain: str
    labels: str | None
    num_classes: int
    protocol: ClipSpec | None
    top1: float | None
    top5: float | None
    source: str
    licence: str
    overrides: dict[str, Any] = field(default_factory=dict, hash=False)
    sha256: str | None = None
    size: int | None = None
    notes: str = ""

    @property
    def filename(self) -> str:
        """The file name in the cache (and on a mirror): the last part of the URL."""
        return urlparse(self.url).path.rsplit("/", 1)[-1]

    @property
    def is_classifier(self) -> bool:
        """True if the file loads as a whole `VideoSwin` (False for ImageNet-2D initialisation files)."""
        return self.format != "imagenet2d"


def _video_swin(name, arch, file, dataset, pretrain, labels, num_classes, protocol, top1, top5, notes="", **overrides):
    return PretrainedEntry(
        name=name, arch=arch, url=_VIDEO_SWIN + file, format="mmaction", dataset=dataset, pretrain=pretrain,
        labels=labels, num_classes=num_classes, protocol=protocol, top1=top1, top5=top5,
        source="SwinTransformer/Video-Swin-Transformer release v1.0.4", licence="Apache-2.0",
        overrides={"num_classes": num_classes, **overrides}, notes=notes,
    )  # fmt: skip


def _torchvision(name, arch, file, top1, top5):
    return PretrainedEntry(
        name=name, arch=arch, url=_TORCHVISION + file, format="torchvision", dataset="K400",
        pretrain="ImageNet-22K" if "22k" in file else "ImageNet-1K", labels="kinetics400", num_classes=400,
        protocol=KINETICS_TEST, top1=top1, top5=top5, source="torchvision (swin3d, ported official weights)",
        licence="BSD-3-Clause (torchvision); weights from the Apache-2.0 originals",
        notes="accuracy as torchvision reports it (its 12 clips x 1 crop protocol)",
    )  # fmt: skip


def _imagenet2d(name, arch, release, file, dataset):
    return PretrainedEntry(
        name=name, arch=arch, url=f"{_SWIN_2D}{release}/{file}", format="imagenet2d", dataset=dataset,
        pretrain=dataset, labels=None, num_classes=21841 if dataset == "ImageNet-22K" else 1000, protocol=None,
        top1=None, top5=None, source=f"microsoft/Swin-Transformer release {release}", licence="MIT",
        notes="2D ImageNet Swin: initialisation for `vswin train` (inflated to 3D), not a video classifier",
    )  # fmt: skip


_K400, _K600, _SSV2 = "kinetics400", "kinetics600", "sthv2"
PRETRAINED: dict[str, PretrainedEntry] = {
    e.name: e
    for e in (
        _video_swin("swin-t-k400", "swin-t", "swin_tiny_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 78.8, 93.6),
        _video_swin("swin-s-k400", "swin-s", "swin_small_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 80.6, 94.5),
        _video_swin("swin-b-k400", "swin-b", "swin_base_patch244_window877_kinetics400_1k.pth", "K400",
                    "ImageNet-1K", _K400, 400, KINETICS_TEST, 80.6, 94.6),
        _video_swin("swin-b-k400-in22k", "swin-b", "swin_base_patch244_window877_kinetics400_22k.pth", "K400",
                    "ImageNet-22K", _K400, 400, KINETICS_TEST, 82.7, 95.5, drop_path_rate=0.2),
        _video_swin("swin-b-k600", "swin-b", "swin_base_patch244_window877_kinetics600_22k.pth", "K600",
                    "ImageNet-22K", _K600, 600, KINETICS_TEST, 84.0, 96.5, drop_path_rate=0.2),
        _video_swin("swin-b-sthv2", "swin-b", "swin_base_patch244_window1677_sthv2.pth", "SSv2",
                    "K400 (swin-b-k400-in22k-w16)", _SSV2, 174, SSV2_TEST, 69.6, 92.7,
                    window_size=(16, 7, 7), drop_path_rate=0.4),
        # The initialisation of swin-b-sthv2 (no config or accuracy published; drop_path is inert in eval).
        _video_swin("swin-b-k400-in22k-w16", "swin-b", "swin_base_patch244_window1677_kinetics400_22k.pth", "K400",
                    "ImageNet-22K", _K400, 400, KINETICS_TEST, None, None,
                    notes="window 16x7x7; initialisation for swin-b-sthv2, no accuracy published",
                    window_size=(16, 7, 7), drop_path_rate=0.2),
        _torchvision("swin-t-k400-tv", "swin-t", "swin3d_t-7615ae03.pth", 77.715, 93.519),
        _torchvision("swin-s-k400-tv", "swin-s", "swin3d_s-da41c237.pth", 79.521, 94.158),
        _torchvision("swin-b-k400-tv", "swin-b", "swin3d_b_1k-24f7c7c6.pth", 79.427, 94.386),
        _torchvision("swin-b-k400-in22k-tv", "swin-b", "swin3d_b_22k-7c6ae6fa.pth", 81.643, 95.574),
        _imagenet2d("swin-t-in1k", "swin-t", "v1.0.0", "swin_tiny_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-s-in1k", "swin-s", "v1.0.0", "swin_small_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-b-in1k", "swin-b", "v1.0.0", "swin_base_patch4_window7_224.pth", "ImageNet-1K"),
        _imagenet2d("swin-t-in22k", "swin-t", "v1.0.8", "swin_tiny_patch4_window7_224_22k.pth", "ImageNet-22K"),
        _imagenet2d("swin-s-in22k", "swin-s", "v1.0.8", "swin_small_patch4_window7_224_22k.pth", "ImageNet-22K"),
        _imagenet2d("swin-b-in22k", "swin-b", "v1.0.0", "swin_base_patch4_window7_224_22k.pth", "ImageNet-22K"),
    )
}  # fmt: skip


def get_entry(name: str) -> PretrainedEntry:
    """The zoo entry called `name`; `UnknownModelError` lists the valid names and suggests a close one."""
    if name in PRETRAINED:
        return PRETRAINED[name]
    close = difflib.get_close_matches(name, PRETRAINED, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + "`vswin models` lists them"
    raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(PRETRAINED)}", hint)


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
        files[_relative(path)] = {
            "sha256": sha256,
            "size": size,
            "url": url,
            "verified_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_text_atomic(manifest, json.dumps({"version": 1, "files": files}, indent=2, sort_keys=True) + "\n")


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


def _relative(path: Path) -> str:
    return path.relative_to(cache_dir()).as_posix()


def is_offline(offline: bool | None = None) -> bool:
    """`offline` if given, else whether `VSWIN_OFFLINE` is set to 1/true/yes."""
    if offline is not None:
        return offline
    return os.environ.get("VSWIN_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _mirror_base(mirror: str | None) -> str | None:
    base = mirror or os.environ.get("VSWIN_MIRROR") or None
    if base is not None and urlparse(base).scheme not in {"http", "https", "file"}:
        raise ConfigError(f"mirror {base!r} is not an http(s):// or file:// URL", "e.g. --mirror https://models.example.com/vswin")
    return base


# ------------------------------------------------------------------------------------- one cached file


@dataclass(frozen=True)
class _CachedFile:
    """A file the cache can hold: where it comes from, where it goes, and how to check its content."""

    path: Path
    url: str
    filename: str
    sha256: str | None
    size: int | None
    check: Any  # Callable[[Path], None]: raises if the content is wrong
    fetch_hint: str  # the `vswin fetch` command that gets it


def _checkpoint_file(entry: PretrainedEntry) -> _CachedFile:
    return _CachedFile(
        checkpoint_path(entry), entry.url, entry.filename, entry.sha256, entry.size,
        lambda path: check_checkpoint(path, entry), f"vswin fetch {entry.name}",
    )  # fmt: skip


def _label_file(label_map: LabelMap, entry_name: str | None = None) -> _CachedFile:
    entry_name = entry_name or next(e.name for e in PRETRAINED.values() if e.labels == label_map.name)
    return _CachedFile(
        labels_path(label_map), label_map.url, label_map.filename, None, None,
        lambda path: _read_label_file(path, label_map.num_classes), f"vswin fetch {entry_name}",
    )  # fmt: skip


def _ensure(file: _CachedFile, mirror: str | None, offline: bool, progress: bool) -> Path:
    """Make sure `file` is in the cache and verified; download it if needed (and allowed)."""
    record = read_manifest().get(_relative(file.path))
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
    except ChecksumError as err:
        if file.sha256 is None and record is not None:  # the expected hash is our own record, not a pin
            raise ChecksumError(
                f"{err.message} (the hash recorded when this file was first verified, {record.get('verified_at')})",
                f"if the publisher replaced the file, forget the old record: delete {_manifest_path()} "
                "(`vswin fetch --verify` then records the other cached files again)",
            ) from None
        raise
    if not result.downloaded and expected is None:  # another process downloaded it while we waited
        _check_or_delete(file)
    _record(file.path, result.sha256, result.size, url)
    return file.path


def _verify_cached(file: _CachedFile, record: dict | None) -> None:
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


def _download_check(file: _CachedFile, url: str):
    """`file.check` for a finished download: errors name the URL rather than the temporary file."""

    def check(partial: Path) -> None:
        try:
            file.check(partial)
        except VswinError as err:
            message = err.message.replace(str(partial), url)
            raise type(err)(f"{message} (the download was deleted)", err.hint) from None

    return check


def _check_or_delete(file: _CachedFile) -> None:
    try:
        file.check(file.path)
    except VswinError:
        file.path.unlink(missing_ok=True)
        raise


def _offline_error(*files: _CachedFile) -> OfflineError:
    """Names every missing file, where to download it, and the `--from` command that imports it."""
    names = " and ".join(f.filename for f in files)
    folder = files[0].path.parent if len(files) == 1 else files[0].path.parent.parent
    source = files[0].filename if len(files) == 1 else "FOLDER"
    return OfflineError(
        f"offline mode (VSWIN_OFFLINE / --offline) and {names} {'is' if len(files) == 1 else 'are'} not in the cache ({folder})",
        f"download {' and '.join(f.url for f in files)} on a machine with internet, copy "
        f"{'it' if len(files) == 1 else 'them into one FOLDER'} here and run `{files[0].fetch_hint} --from {source}` "
        "(or unset VSWIN_OFFLINE to fetch)",
    )


# ---------------------------------------------------------------------------------------- public API


def fetch(
    name_or_names: str | Iterable[str],
    mirror: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> Path | list[Path]:
    """Download (or find in the cache) the checkpoint and label map of one or more zoo entries.

    Args:
        name_or_names: an entry name (`swin-b-k600`) or several.
        mirror: base URL serving the same file names (default `VSWIN_MIRROR`, else the publisher's URL).
        offline: never use the network (default `VSWIN_OFFLINE`); a missing file raises `OfflineError`
            naming it and how to get it.
        progress: show progress bars on stderr.

    Returns:
        The cached checkpoint path (a list of paths when given several names).
    """
    names = [name_or_names] if isinstance(name_or_names, str) else list(name_or_names)
    entries = [get_entry(n) for n in names]  # unknown names fail before any download
    offline = is_offline(offline)
    paths = []
    for entry in entries:
        missing = [f for f in _entry_files(entry) if not f.path.exists()]
        if offline and missing:
            raise _offline_error(*missing)
        paths.append(_ensure(_checkpoint_file(entry), mirror, offline, progress))
        if entry.labels:
            _ensure(_label_file(LABEL_MAPS[entry.labels], entry.name), mirror, offline, progress=False)
    return paths[0] if isinstance(name_or_names, str) else paths


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
    wanted = _entry_files(entry)
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
            partial = file.path.with_name(file.path.name + ".incomplete")
            file.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(src, partial)
            except OSError as err:
                partial.unlink(missing_ok=True)
                raise DownloadError(
                    f"{file.path}: cannot copy {src} into the cache ({err.strerror})",
                    "free some space (or point VSWIN_HOME at a bigger disk) and run the same command again",
                ) from None
            os.replace(partial, file.path)
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
        files = {str(f.path): f for e in entries for f in _entry_files(e) if f.path.exists() or _relative(f.path) in manifest}
    else:
        files = {str(f.path): f for n in names for f in _entry_files(get_entry(n))}
    results = []
    for file in files.values():
        record = manifest.get(_relative(file.path))
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


def _entry_files(entry: PretrainedEntry) -> list[_CachedFile]:
    return [_checkpoint_file(entry)] + ([_label_file(LABEL_MAPS[entry.labels], entry.name)] if entry.labels else [])


def entry_status(entry: PretrainedEntry) -> str:
    """"missing", "cached" (present, not yet verified) or "verified" (its manifest record matches its size).

    Cheap (no hashing), for `vswin models`; `verify_cache` re-hashes.
    """
    manifest = read_manifest()
    states = []
    for file in _entry_files(entry):
        record = manifest.get(_relative(file.path))
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
        return _read_label_file(path, label_map.num_classes)
    path = Path(key).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{key}: not a label file or a known label map",
            f"give a text file with one class name per line, or one of: {', '.join(LABEL_MAPS)}",
        )
    return _read_label_file(path, None)


def _read_label_file(path: Path, expected_count: int | None) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the label file ({err})", "it must be UTF-8 text, one name per line") from None
    names = text.splitlines()
    while names and not names[-1].strip():  # tolerate trailing blank lines only
        names.pop()
    for i, label in enumerate(names):
        if not label.strip():
            raise ConfigError(f"{path}: line {i + 1} is empty (line i is the name of class i-1)", "remove the blank line")
    if expected_count is not None and len(names) != expected_count:
        raise ChecksumError(
            f"{path}: {len(names)} class names, expected {expected_count}",
            "the file is not the expected label map; fetch it again or check the mirror",
        )
    return [label.strip() for label in names]


# --------------------------------------------------------------------------------- checkpoint checks


def check_checkpoint(path: Path, entry: PretrainedEntry) -> None:
    """Check that `path` loads with `weights_only=True` and has exactly `entry`'s key layout and shapes.

    The model is built on the `meta` device, so this costs the file read and no weight memory.

    Raises:
        ChecksumError: naming the problem (not a checkpoint, missing/unexpected keys, a wrong shape).
    """
    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.swin3d import VideoSwin

    with torch.device("meta"):
        model = VideoSwin.from_config(entry_config(entry))
    try:
        load_checkpoint(model, path, format=entry.format, strict=True)
    except CheckpointError as err:
        reason = err.message.removeprefix(f"{path}: ")
        raise ChecksumError(
            f"{path}: not a {entry.name} checkpoint ({entry.arch}, {entry.num_classes} classes, {entry.format} layout): "
            f"{reason}",
            f"the file is damaged or for another model; {entry.name} expects {entry.filename} from {entry.url}",
        ) from None


def entry_config(entry: PretrainedEntry):
    """The `Swin3DConfig` of an entry: its architecture plus its overrides."""
    from models.config import get_config

    # head_in_channels=None: re-derived from the (possibly overridden) width and depth
    return get_config(entry.arch, head_in_channels=None, **entry.overrides)


# ---------------------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready for inference or fine-tuning.

    Args:
        model: `VideoSwin` in eval mode on the requested device.
        labels: class names, `len(labels) == model.config.num_classes`.
        protocol: the entry's test protocol; for local files the one a `vswin train` checkpoint stores,
            else `KINETICS_TEST` (`SSV2_TEST` with the SSv2 labels).
        name: the zoo entry name, or the weights file path.
    """

    model: Any
    labels: list[str]
    protocol: ClipSpec
    name: str


def resolve_model(
    model: str | None = None,
    weights: str | Path | None = None,
    arch: str | None = None,
    labels: str | Path | None = None,
    device: str = "cpu",
    offline: bool | None = None,
    drop_head: bool = False,
    mirror: str | None = None,
    progress: bool = True,
) -> ResolvedModel:
    """Turn `--model NAME` or `--weights FILE [--arch A] [--labels L]` into a loaded model (used by tag/eval/train).

    Args:
        model: a zoo entry (fetched into the cache on first use unless offline), or a weights file path.
        weights: a local checkpoint: our own vswin file (carries its config and labels), an official
            mmaction file, a torchvision swin3d file, or an ImageNet-2D Swin file (with `drop_head`).
        arch: for `weights` that are not vswin files: `swin-t`, `swin-s`, `swin-b` (the number of classes
            and the temporal window are then read from the file) or a `config.json` path.
        labels: a label file, a label-map name (`kinetics400`...) or a zoo entry name; overrides the
            entry's or file's labels. Its length must equal the head's classes (with `drop_head`, the
            new head gets `len(labels)` classes).
        device: where to put the model ("cpu", "cuda", "cuda:1"...).
        offline: never download (default `VSWIN_OFFLINE`).
        drop_head: keep a freshly initialised classifier (fine-tuning on new classes).
        mirror: base URL for downloads (default `VSWIN_MIRROR`).
        progress: show download progress on stderr.

    Returns:
        `ResolvedModel(model (eval mode, on `device`), labels, protocol, name)`. Without any labels
        (a file with no stored names and no `labels`), the labels are the class indices "0", "1", ...
    """
    if model is not None and weights is not None:
        raise ConfigError("both a model name and a weights file were given", "use --model NAME or --weights FILE, not both")
    if model is None and weights is None:
        raise ConfigError("no model given", "use --model NAME (see `vswin models`) or --weights FILE --arch swin-t|swin-s|swin-b")
    if model is not None and model not in PRETRAINED and Path(model).expanduser().is_file():
        model, weights = None, model  # a path given as --model
    if model is not None:
        if arch is not None:
            raise ConfigError(f"--arch is only used with --weights; {model} already fixes the architecture", "drop --arch")
        return _resolve_entry(get_entry(model), labels, device, offline, drop_head, mirror, progress)
    return _resolve_file(Path(weights).expanduser(), arch, labels, device, offline, drop_head, mirror)


def load_pretrained(name: str, device: str = "cpu", offline: bool | None = None):
    """A zoo classifier with its entry and labels: `(VideoSwin in eval mode, PretrainedEntry, labels)`."""
    resolved = resolve_model(model=name, device=device, offline=offline)
    return resolved.model, get_entry(name), resolved.labels


def _resolve_entry(entry, labels, device, offline, drop_head, mirror, progress) -> ResolvedModel:
    if not entry.is_classifier and not drop_head:
        raise ConfigError(
            f"{entry.name} is an ImageNet 2D initialisation, not a video classifier",
            "use it to initialise training (`vswin train --init ...`), or pick a video model from `vswin models`",
        )
    path = fetch(entry.name, mirror=mirror, offline=offline, progress=progress)
    names = load_labels(labels, offline=offline, mirror=mirror) if labels is not None else None
    if names is None and not drop_head:
        names = load_labels(entry.labels, offline=offline, mirror=mirror)
    cfg = entry_config(entry)
    if drop_head and names is not None:
        cfg = cfg.replace(num_classes=len(names))
    net = _load(cfg, path, entry.format, drop_head)
    names = names if names is not None else [str(i) for i in range(cfg.num_classes)]
    _check_label_count(names, cfg.num_classes, labels or entry.labels)
    return ResolvedModel(net.to(device).eval(), names, entry.protocol or KINETICS_TEST, entry.name)


def _resolve_file(path: Path, arch, labels, device, offline, drop_head, mirror) -> ResolvedModel:
    from models.checkpoint import CheckpointError, detect_format, read_checkpoint
    from models.config import config_from_dict, get_config

    try:
        obj = read_checkpoint(path)
    except CheckpointError as err:
        raise ConfigError(err.message, err.hint) from None
    fmt = detect_format(obj)
    if fmt == "imagenet2d" and not drop_head:
        raise ConfigError(
            f"{path}: an ImageNet 2D Swin file has no video classifier",
            "use it to initialise training (`vswin train --init FILE`), or give a video checkpoint",
        )
    stored_labels = obj.get("labels") if fmt == "vswin" else None
    try:
        if fmt == "vswin" and arch is None:
            cfg = config_from_dict(obj["config"])
        elif arch is None:
            raise ConfigError(
                f"{path}: a {fmt} checkpoint does not say its architecture",
                "add --arch swin-t, swin-s or swin-b (or --arch CONFIG.json)",
            )
        elif str(arch).endswith(".json"):
            cfg = get_config(arch)
        else:
            cfg = get_config(arch, **_shape_overrides(obj, fmt))
    except ValueError as err:  # UnknownArchError or a bad config file
        raise ConfigError(f"{arch or path}: {err}", "use --arch swin-t, swin-s, swin-b or a config.json") from None
    names = load_labels(labels, offline=offline, mirror=mirror) if labels is not None else None
    if names is None and stored_labels and not drop_head:
        names = list(stored_labels)
    if drop_head and names is not None:
        cfg = cfg.replace(num_classes=len(names))
    net = _load(cfg, path, fmt, drop_head)
    names = names if names is not None else [str(i) for i in range(cfg.num_classes)]
    _check_label_count(names, cfg.num_classes, labels or path)
    if fmt == "vswin" and obj.get("protocol"):  # the clip shape a `vswin train` model was trained and tested on
        protocol = ClipSpec(**obj["protocol"])
    else:
        protocol = SSV2_TEST if labels == "sthv2" else KINETICS_TEST
    return ResolvedModel(net.to(device).eval(), names, protocol, str(path))


def _shape_overrides(obj, fmt: str) -> dict:
    """Number of classes and temporal window read off an mmaction/torchvision file, so `--arch swin-b`
    fits the K600 and SSv2 files too (the other fields come from the architecture)."""
    if fmt not in {"mmaction", "torchvision"}:
        return {}
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else {}
    overrides = {}
    head = state.get("cls_head.fc_cls.weight", state.get("head.weight"))
    if head is not None and head.ndim == 2:
        overrides["num_classes"] = int(head.shape[0])
    table = next((v for k, v in state.items() if k.endswith("relative_position_bias_table")), None)
    if table is not None and table.ndim == 2 and table.shape[0] % 169 == 0:  # (2wd-1) * 13 * 13 rows for 7x7 windows
        overrides["window_size"] = ((table.shape[0] // 169 + 1) // 2, 7, 7)
    return overrides


def _load(cfg, path: Path, fmt: str, drop_head: bool):
    import torch

    from models.checkpoint import CheckpointError, load_checkpoint
    from models.swin3d import VideoSwin

    if drop_head:
        net = VideoSwin.from_config(cfg)  # the new head needs its proper initialisation
    else:
        # A strict load overwrites every parameter and buffer, so skip the random initialisation
        # (Swin-B: ~8 s on 2 CPU cores) by building on `meta` and allocating uninitialised memory.
        with torch.device("meta"):
            net = VideoSwin.from_config(cfg)
        net.to_empty(device="cpu")
    try:
        load_checkpoint(net, path, format=fmt, strict=True, drop_head=drop_head)
    except CheckpointError as err:
        raise ConfigError(err.message, err.hint) from None
    return net


def _check_label_count(names: list[str], num_classes: int, source) -> None:
    if len(names) != num_classes:
        raise ConfigError(
            f"{source}: {len(names)} labels for a model with {num_classes} classes",
            "give a label file with one name per class (line i = class i), or drop --labels to use the model's own",
        )
