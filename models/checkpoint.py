"""Loading and saving weights: official mmaction files, torchvision files, our own files, and
ImageNet-2D Swin files inflated to 3D.

Files are always read with `torch.load(weights_only=True, map_location="cpu")`, so a checkpoint can
never run code. Beyond tensors and plain Python data, the unpickler accepts exactly the numpy objects
that mmcv-saved release files hold in `meta` (scalars, dtypes and arrays such as
`hook_msgs.best_score = numpy.float64(0.8)` or `CLASSES` as an array; `numpy_safe_globals()`), none
of which can run code. Loading is strict by default: every mismatch is reported in ONE `CheckpointError`
with its likely cause.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from models import convert
from models.config import config_from_dict

FORMATS = ("auto", "mmaction", "torchvision", "vswin", "imagenet2d")
_HEAD_KEYS = ("head.weight", "head.bias")


class CheckpointError(ValueError):
    """A weights file that cannot be loaded into the model (format, keys or shapes).

    The message names the file and the reason; `hint` says what to do in Python. `kind` names the
    problem ("format", "not_weights", "no_config", "architecture", "mismatch") where a command line
    gives other advice than Python code (`vswin_cli.errors.from_checkpoint_error`).
    """

    def __init__(self, message: str, hint: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class LoadReport:
    """What `load_checkpoint` did.

    Attributes:
        path: the file.
        format: the detected or given format.
        loaded_keys: keys copied into the model.
        dropped_keys: keys of the file that were not loaded (a replaced head, shape mismatches in a
            non-strict load, 2D-only keys of an ImageNet file).
        missing_keys: model keys the file did not provide (left as initialised).
        labels: class names stored in a vswin file, else None.
        config: the config dict stored in a vswin file, else None.
    """

    path: str
    format: str
    loaded_keys: tuple[str, ...]
    dropped_keys: tuple[str, ...] = ()
    missing_keys: tuple[str, ...] = ()
    labels: list[str] | None = None
    config: dict | None = field(default=None)

    def summary(self) -> str:
        """One line for logs: format, counts and the dropped/missing keys."""
        text = f"{self.path}: {self.format} checkpoint, {len(self.loaded_keys)} tensors loaded"
        if self.dropped_keys:
            text += f"; dropped {', '.join(self.dropped_keys)}"
        if self.missing_keys:
            text += f"; not in the file (left initialised): {', '.join(self.missing_keys)}"
        return text


def read_checkpoint(path: str | Path) -> object:
    """`torch.load` with weights_only=True, turning every failure into a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", "check the path of the weights file")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (current) or a pickle (legacy, starts with the PROTO opcode).
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)",
            "pass the .pth weights file itself, not a text, config or archive file",
        )
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain data "
            f"({_refusal_reason(err)})",
            "loading is weights-only so a checkpoint cannot run code; only load files from a source you "
            "trust, re-saved as a plain state_dict",
        ) from None
    except Exception as err:  # noqa: BLE001 - a corrupt file fails in many ways (zip, pickle, storage)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})",
            "the file may be truncated or not a weights file; download it again",
        ) from None


def numpy_safe_globals() -> list:
    """The numpy names a weights-only load may rebuild: scalars, dtypes and arrays of plain values.

    Listed under both module paths numpy has pickled them from (`numpy.core` before numpy 2,
    `numpy._core` since), since release files were written with numpy 1.x. `_reconstruct` only
    allocates an array; the elements of an object array would still go through the same restricted
    unpickler. Empty when numpy is not installed (then no file can hold numpy objects anyway).
    """
    try:
        import numpy as np
    except ImportError:
        return []
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    for code in "?bBhHiIlLqQefdgFDGUS":  # numpy >= 1.25 may pickle a dtype by its class
        cls = type(np.dtype(code))
        if cls.__module__ == "numpy.dtypes":
            allowed.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return allowed


def detect_format(obj: object) -> str:
    """Guess the format of a loaded checkpoint object ("mmaction", "torchvision", "vswin", "imagenet2d")."""
    if not isinstance(obj, dict):
        return "unknown"
    if obj.get("format") == "vswin":
        return "vswin"
    if isinstance(obj.get("state_dict"), dict):
        return "mmaction"
    if isinstance(obj.get("model"), dict):
        weight = obj["model"].get("patch_embed.proj.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim == 4:
            return "imagenet2d"
    keys = [k for k in _inner_state(obj) if isinstance(k, str)]
    if any(k.startswith(("features.", "module.features.")) for k in keys):
        return "torchvision"
    if any(k.startswith(("backbone.", "cls_head.", "module.backbone.")) for k in keys):
        return "mmaction"
    if any(k.startswith(("layers.", "patch_embed.")) for k in keys):
        return "vswin"
    return "unknown"


def to_our_state_dict(obj: object, fmt: str, model: nn.Module, path: str) -> tuple[dict, list[str]]:
    """Convert a loaded checkpoint of format `fmt` to our naming. Returns (state_dict, dropped keys)."""
    if fmt == "mmaction":
        return convert.from_mmaction(_tensors_only(_inner_state(obj), path)), []
    if fmt == "torchvision":
        return convert.from_torchvision(convert.strip_prefix(_tensors_only(_inner_state(obj), path), "module.")), []
    if fmt == "vswin":
        return convert.strip_prefix(_tensors_only(_inner_state(obj), path), "module."), []
    if fmt == "imagenet2d" and isinstance(obj.get("model"), dict):
        cfg = model.config
        sd = convert.strip_prefix(_tensors_only(obj["model"], path), "module.")
        try:
            return convert.inflate_imagenet2d(sd, cfg.window_size, cfg.patch_size[0])
        except ValueError as err:
            raise CheckpointError(f"{path}: cannot inflate the 2D weights: {err}") from None
    raise CheckpointError(
        f"{path}: not a Video Swin checkpoint (no 'state_dict', 'model' or known weight names)",
        f"pass format= one of {', '.join(FORMATS[1:])} if the file is one of those",
        kind="format",
    )


def load_checkpoint(
    model: nn.Module, path: str | Path, format: str = "auto", strict: bool = True, drop_head: bool = False,
    checkpoint: object | None = None,
) -> LoadReport:
    """Load a weights file into a `VideoSwin`.

    Args:
        model: the network (its config fixes the expected keys and shapes).
        path: an official mmaction file (`{'meta', 'state_dict'}`), a torchvision state_dict, a vswin
            file (`save_checkpoint`), or an ImageNet 2D Swin file (`{'model': ...}`, inflated to 3D).
        format: "auto" (detect) or one of "mmaction", "torchvision", "vswin", "imagenet2d".
        strict: if True, any missing/unexpected key or shape mismatch raises one CheckpointError. If
            False, matching tensors load and the rest is listed in the report (fine-tuning).
        drop_head: discard the file's classifier (`head.*`) and keep the model's freshly initialised
            one; everything else still loads strictly. ImageNet-2D files always drop their head.
        checkpoint: what `read_checkpoint(path)` already returned, so the file is not read again.

    Returns:
        A `LoadReport` (format, loaded/dropped/missing keys, labels and config of vswin files).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    obj = read_checkpoint(path) if checkpoint is None else checkpoint
    return _load_object(model, obj, str(path), format, strict, drop_head)


def load_model(path: str | Path) -> tuple[nn.Module, LoadReport]:
    """Build a `VideoSwin` from a vswin file's stored config and load its weights (strictly).

    Args:
        path: a file written by `save_checkpoint`.

    Returns:
        (model in eval mode, LoadReport with the stored labels and config).
    """
    from models.swin3d import VideoSwin

    obj = read_checkpoint(path)
    if detect_format(obj) != "vswin" or not isinstance(obj.get("config"), dict):
        raise CheckpointError(
            f"{path}: has no stored config (not a vswin file)",
            "build the model yourself (VideoSwin(**config)) and use load_checkpoint(model, path)",
            kind="no_config",
        )
    try:
        model = VideoSwin(**obj["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the stored config is invalid: {err}") from None
    report = _load_object(model, obj, str(path), "vswin", strict=True, drop_head=False)
    return model.eval(), report


def _load_object(model, obj, path_text: str, format: str, strict: bool, drop_head: bool) -> LoadReport:
    fmt = detect_format(obj) if format == "auto" else format
    if format != "auto" and not isinstance(obj, dict):
        raise CheckpointError(f"{path_text}: holds a {type(obj).__name__}, not a dict of weights")
    state, dropped = to_our_state_dict(obj, fmt, model, path_text)

    if fmt == "vswin" and isinstance(obj.get("config"), dict):
        _check_same_config(obj["config"], model, path_text, drop_head or not strict)
    if fmt == "imagenet2d":
        drop_head = True  # the 2D classifier never fits; `inflate_imagenet2d` already removed it
    if drop_head:
        dropped += [k for k in _HEAD_KEYS if k in state]
        state = {k: v for k, v in state.items() if k not in _HEAD_KEYS}

    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    allowed_missing = set(_HEAD_KEYS) if drop_head else set()
    problems = [k for k in missing if k not in allowed_missing] + unexpected + mismatched
    if strict and problems:
        raise _mismatch_error(path_text, fmt, state, expected, missing, unexpected, mismatched, allowed_missing)

    to_load = {k: v for k, v in state.items() if k in expected and k not in mismatched}
    dropped += unexpected + mismatched
    with torch.no_grad():
        for key, value in to_load.items():
            expected[key].copy_(value)  # state_dict() tensors share storage with the model
    return LoadReport(
        path=path_text,
        format=fmt,
        loaded_keys=tuple(to_load),
        dropped_keys=tuple(dropped),
        missing_keys=tuple(missing),
        labels=obj.get("labels") if fmt == "vswin" and isinstance(obj, dict) else None,
        config=obj.get("config") if fmt == "vswin" and isinstance(obj, dict) else None,
    )


def save_checkpoint(path: str | Path, model: nn.Module, labels: list[str] | None = None, **extra) -> Path:
    """Write a vswin checkpoint atomically (temporary file in the same folder, then rename).

    Args:
        path: destination file.
        model: a `VideoSwin`; its config and state_dict are stored.
        labels: optional class names (len == num_classes).
        **extra: more entries (e.g. optimizer, epoch); must be tensors or plain data so the file stays
            loadable with weights_only=True.

    Returns:
        The path written. The file holds {"format": "vswin", "config", "model", "labels", **extra}.
    """
    path = Path(path)
    if labels is not None and len(labels) != model.config.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {model.config.num_classes} classes")
    payload = {"format": "vswin", "config": model.config.to_dict(), "model": model.state_dict(), "labels": labels}
    payload.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not vswin_cli.files.atomic_file: models/ is importable alone (no vswin_cli), so it keeps this one rename.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".incomplete", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is as readable as any file
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _inner_state(obj: dict) -> dict:
    """The weights of a checkpoint dict: its `state_dict` or `model` entry, else the dict itself."""
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def _tensors_only(state: dict, path: str) -> dict:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: entries that are not tensors where weights were expected: {bad[:5]}",
            "if you forced format=, check that it is the file's format (or use format='auto')",
            kind="not_weights",
        )
    return state


def _check_same_config(saved: dict, model: nn.Module, path: str, head_may_differ: bool) -> None:
    try:
        saved_cfg = config_from_dict(saved)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the stored config is invalid: {err}") from None
    ours = model.config
    fields = [f for f in ("patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                          "qkv_bias", "qk_scale", "patch_norm", "in_chans", "num_classes")
              if getattr(saved_cfg, f) != getattr(ours, f) and not (f == "num_classes" and head_may_differ)]
    if fields:
        diffs = ", ".join(f"{f}: file {getattr(saved_cfg, f)!r}, model {getattr(ours, f)!r}" for f in fields)
        raise CheckpointError(
            f"{path}: the file was saved from a different architecture ({diffs})",
            "build the model from the file's config (VideoSwin(**checkpoint['config'])) or pick the matching arch",
            kind="architecture",
        )


def _mismatch_error(path, fmt, state, expected, missing, unexpected, mismatched, allowed_missing) -> CheckpointError:
    """One error naming every mismatch, with the likely cause first."""
    causes = []
    head_w = state.get("head.weight")
    if "head.weight" in mismatched and head_w is not None and head_w.ndim == 2:
        file_k, model_k = head_w.shape[0], expected["head.weight"].shape[0]
        if head_w.shape[1] == expected["head.weight"].shape[1]:
            causes.append(
                f"a {file_k}-class head loaded into a {model_k}-class model (use num_classes={file_k}, or "
                f"drop_head=True to fine-tune a new {model_k}-class head)"
            )
    embed = state.get("patch_embed.proj.weight")
    if embed is not None and "patch_embed.proj.weight" in mismatched:
        causes.append(
            f"embedding width {embed.shape[0]} in the file vs {expected['patch_embed.proj.weight'].shape[0]} in "
            "the model (a different variant: swin-t/s use 96, swin-b 128)"
        )
    file_depths, model_depths = _depths(state), _depths(expected)
    if file_depths and file_depths != model_depths:
        causes.append(f"blocks per stage {file_depths} in the file vs {model_depths} in the model (swin-t vs swin-s/b?)")
    tables = [k for k in mismatched if k.endswith("relative_position_bias_table") or k.endswith("relative_position_index")]
    if tables and embed is not None and "patch_embed.proj.weight" not in mismatched:
        causes.append("different window size (e.g. an 16x7x7 SSv2 file into an 8x7x7 model: use window_size=(16, 7, 7))")
    if unexpected and all(not k.startswith(("layers.", "patch_embed.", "norm.", "head.")) for k in unexpected):
        causes.append(f"the file's keys are not Video Swin weight names in the {fmt} format (wrong format=?)")

    parts = []
    if mismatched:
        parts.append("shape mismatches: " + "; ".join(
            f"{k} file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched[:8]
        ) + (f" (+{len(mismatched) - 8} more)" if len(mismatched) > 8 else ""))
    really_missing = [k for k in missing if k not in allowed_missing]
    if really_missing:
        parts.append(f"missing from the file: {_short_list(really_missing)}")
    if unexpected:
        parts.append(f"unexpected in the file: {_short_list(unexpected)}")
    cause = f"likely cause: {'; '.join(causes)}. " if causes else ""
    return CheckpointError(
        f"{path}: {fmt} checkpoint does not fit the model: {cause}{'. '.join(parts)}",
        "build the model with the file's architecture and number of classes; to fine-tune on new classes "
        "load with drop_head=True (or strict=False to load whatever matches)",
        kind="mismatch",
    )


def _depths(state: dict) -> tuple[int, ...]:
    blocks: dict[int, set[int]] = {}
    for key in state:
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "layers" and parts[2] == "blocks":
            blocks.setdefault(int(parts[1]), set()).add(int(parts[3]))
    return tuple(len(blocks[i]) for i in sorted(blocks))


def _short_list(keys: list[str], limit: int = 8) -> str:
    text = ", ".join(keys[:limit])
    return text + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _refusal_reason(err: BaseException) -> str:
    """The line of torch's weights-only error that names what was refused (e.g. `GLOBAL os.system`)."""
    lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    return lines[0][:200] if lines else _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
