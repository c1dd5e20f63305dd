"""Shared test fixtures: the ../shared folder (golden data, test videos) and an isolated cache."""

from __future__ import annotations

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
