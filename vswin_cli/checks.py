"""Usage checks a command runs before it imports PyTorch or PyAV, so that a wrong command line answers at once.

Inputs exist, outputs can be written, names are known. Each check raises `UsageError` (exit status 2)
naming the option, the value and what to do. Only the standard library and the zoo table (pure data)
are imported here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from vswin_cli.errors import ConfigError, UsageError
from vswin_cli.files import NAME_MAX, temp_file
from vswin_cli.zoo import LABEL_MAPS, PRETRAINED, get_entry

RAY_INSTALL_HINT = "pip install 'vswin[ray]' (Ray Data), or run with --engine local"


def check_engine(kind: str, videos: Sequence = ()) -> None:
    """`--engine ray` can run: Ray Data is installed (looked up, not imported: Ray reads how to bind when
    it is imported) and no input is a URL or live stream (a Ray run reads each file in a task of its own).

    Raises:
        ConfigError: Ray or pyarrow is not installed (with the install hint).
        UsageError: an input is a stream.
    """
    if kind != "ray":
        return
    from vswin_cli.sources import StreamInput

    streams = [video.key for video in videos if isinstance(video, StreamInput)]
    if streams:
        raise UsageError(f"{streams[0]}: --engine ray reads files; a URL or live stream is read as it comes",
                         hint="tag streams with --engine local")
    missing = [name for name in ("ray", "pyarrow") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--engine ray needs Ray Data, which is not installed here (no {', '.join(missing)})",
                          hint=RAY_INSTALL_HINT)


def check_output(output: str, option: str = "-o", creates_folder: bool = False) -> None:
    """Check an output file before any work: its folder exists and accepts new files, and it is not a folder.

    Args:
        output: the path given, or "-" (stdout: nothing to check).
        option: how the command line named it, for the message.
        creates_folder: the command creates a missing folder (then the nearest existing one is checked).

    Raises:
        UsageError: naming the path, the reason and what to do.
    """
    if output == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"{option} {output}: is a folder", hint=f"give a file name inside it, e.g. {option} " + str(path / "tags.jsonl"))
    if len(path.name.encode()) > NAME_MAX:
        raise UsageError(f"{option} {output}: the file name is longer than {NAME_MAX} bytes", hint="choose a shorter name")
    folder = path.parent
    if creates_folder:
        check_output_folder(folder, option)
    elif not folder.is_dir():
        raise UsageError(f"{option} {output}: the folder {folder} does not exist", hint=f"create it first: mkdir -p {folder}")
    else:
        _check_accepts_files(folder, f"{option} {output}")


def check_output_folder(folder: str | os.PathLike, option: str) -> None:
    """Check a folder a command writes into (and creates, with its parents, if missing).

    Raises:
        UsageError: it is a file, or the nearest existing folder above it does not accept new files.
    """
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {folder}: is a file, not a folder", hint=f"give a folder name to {option}")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{option} {folder}: {existing} is a file, so the folder cannot be created", hint=f"give another folder to {option}")
    _check_accepts_files(existing, f"{option} {folder}")


def _check_accepts_files(folder: Path, what: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: the folder {folder} is not writable", hint="choose another folder, or fix its permissions")
    try:  # what os.access cannot tell: a read-only file system, /proc, or root on a folder it may not write
        fd, probe = temp_file(folder)
    except OSError as err:
        raise UsageError(f"{what}: cannot write in {folder}: the folder does not accept new files ({err.strerror})",
                         hint="choose a writable folder for the output") from None
    os.close(fd)
    os.unlink(probe)


def check_input(path: str | os.PathLike | None, option: str | None = None, folder: bool = False) -> None:
    """Check that an input file (or folder, with `folder=True`) exists; None passes.

    Args:
        path: the path given.
        option: the option that named it, for the message (None: a positional argument).
        folder: a folder is wanted, not a file.

    Raises:
        UsageError: it does not exist, or is a folder where a file is wanted (or the reverse).
    """
    if path is None:
        return
    given = Path(path).expanduser()
    kind = "folder" if folder else "file"
    where = f"{option} {path}" if option else str(path)
    if not given.exists():
        raise UsageError(f"{where}: no such {kind}", hint="check the path")
    if given.is_dir() != folder:
        raise UsageError(f"{where}: is {'not a folder' if folder else 'a folder, not a file'}",
                         hint=f"give a {kind}" + (f" to {option}" if option else ""))


def check_model(model: str | None) -> None:
    """A zoo entry name or an existing checkpoint file; an unknown name raises `UnknownModelError` (exit 2)."""
    if model is None or model in PRETRAINED or Path(model).expanduser().is_file():
        return
    if os.sep in model or model.endswith((".pth", ".pt", ".ckpt")):
        raise UsageError(f"{model}: no such checkpoint file", hint="check the path, or give a name from `vswin models`")
    get_entry(model)


def check_arch(arch: str | None) -> None:
    """swin-t, swin-s, swin-b or an existing config.json; None passes."""
    known = list(dict.fromkeys(entry.arch for entry in PRETRAINED.values()))  # swin-t, swin-s, swin-b
    if arch is None or arch in known:
        return
    if arch.endswith(".json"):
        check_input(arch, "--arch")
        return
    raise UsageError(f"--arch {arch}: unknown architecture; valid names: {', '.join(known)} (or a config.json)",
                     hint="use --arch swin-t, swin-s, swin-b or the path of a config.json")


def check_labels(labels: str | None) -> None:
    """A label file, a label-map name (kinetics400, kinetics600, sthv2) or a zoo entry; None passes."""
    if labels is None or labels in LABEL_MAPS or labels in PRETRAINED or Path(labels).expanduser().is_file():
        return
    raise UsageError(f"--labels {labels}: no such file or label map", hint=f"give a label file or one of {', '.join(LABEL_MAPS)}")
