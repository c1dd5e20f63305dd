"""Shared test fixtures: the ../shared folder (golden data, test videos) and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, skipping the test with a clear reason when ../shared is absent."""
    path = SHARED.joinpath(*parts)
    if not SHARED.is_dir():
        pytest.skip(f"../shared is not beside the repository (looked for {SHARED}); golden data unavailable")
    return path


# `--runtime auto` would export and time every tiny test model (and pick a runtime by timing); runtime
# choice has its own tests. Set here too, not only per test: module-scoped fixtures run before the
# per-test fixture below, and their runs must use the runtime the tests' own runs use.
os.environ["VSWIN_RUNTIME"] = "torch"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache and never touches the network by accident."""
    cache = tmp_path_factory.mktemp("vswin-home")
    monkeypatch.setenv("VSWIN_HOME", str(cache))
    monkeypatch.delenv("VSWIN_MIRROR", raising=False)
    monkeypatch.delenv("VSWIN_OFFLINE", raising=False)
    # `--runtime auto` would export and time every tiny test model; runtime choice has its own tests
    monkeypatch.setenv("VSWIN_RUNTIME", "torch")
    return cache


TINY = {
    "patch_size": [2, 4, 4], "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": [2, 3, 3],
    "num_classes": 5, "drop_path_rate": 0.0,
}
LABELS = ["archery", "bowling", "cooking", "dancing", "eating"]


def save_tiny_model(folder: Path) -> list[str]:
    """Save a seeded tiny model in the official mmaction layout, with its config and labels, in `folder`.

    Returns:
        the CLI options that load it as a user with their own checkpoint would (`--weights --arch
        CONFIG.json --labels FILE`), at 32-pixel crops so a run takes well under a second.
    """
    import json

    import torch

    from models import VideoSwin
    from models.convert import to_mmaction

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = VideoSwin(**TINY)
    torch.nn.init.normal_(model.head.weight, std=1.0)  # spread the scores so top labels vary
    (folder / "tiny.json").write_text(json.dumps(TINY))
    torch.save({"state_dict": to_mmaction(model.state_dict())}, folder / "tiny.pth")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return ["--weights", str(folder / "tiny.pth"), "--arch", str(folder / "tiny.json"),
            "--labels", str(folder / "labels.txt"), "--crop-size", "32"]
