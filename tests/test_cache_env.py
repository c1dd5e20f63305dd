"""`vswin cache list|rm|prune` and `vswin env` (bug-report diagnostics)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vswin_cli import cache, cache_contents, zoo
from vswin_cli.app import app

T400 = zoo.PRETRAINED["swin-t-k400"]
S400 = zoo.PRETRAINED["swin-s-k400"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def filled():
    """A cache as downloads leave it: two verified checkpoints sharing one label map (recorded in the
    manifest), an unfinished download with its validator, a stray file and a stale lock."""
    root = cache.cache_dir()
    files = {
        cache.checkpoint_path(T400): b"t" * 3000,
        cache.checkpoint_path(S400): b"s" * 5000,
        cache.labels_path(zoo.LABEL_MAPS["kinetics400"]): b"l" * 40,
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        cache._record(path, "0" * 64, len(data), "https://example.com/" + path.name)
    partial = cache.checkpoint_path(zoo.PRETRAINED["swin-b-k600"]).with_name(zoo.PRETRAINED["swin-b-k600"].filename + ".incomplete")
    partial.write_bytes(b"p" * 700)
    partial.with_name(partial.name + ".json").write_text("{}")
    (root / "checkpoints" / "old_release.pth").write_bytes(b"o" * 10)
    (root / "checkpoints" / (T400.filename + ".lock")).write_text("")
    return root


def test_list_shows_sizes_entries_and_states(filled):
    items = {item.path.name: item for item in cache_contents.list_cache()}
    assert T400.filename + ".lock" not in items and "manifest.json" not in items
    assert items[T400.filename].entries == ("swin-t-k400",) and items[T400.filename].state == "verified"
    assert items[T400.filename].size == 3000 and items[T400.filename].kind == "checkpoint"
    labels = items["label_map_k400.txt"]
    assert labels.kind == "labels" and {"swin-t-k400", "swin-s-k400", "swin-b-k400"} <= set(labels.entries)
    partial = items[zoo.PRETRAINED["swin-b-k600"].filename + ".incomplete"]
    assert partial.state == "incomplete" and partial.entries == ("swin-b-k600",)
    assert items["old_release.pth"].state == "unknown" and items["old_release.pth"].entries == ()
    (filled / "checkpoints" / T400.filename).write_bytes(b"changed")  # size differs from the record
    assert {i.path.name: i.state for i in cache_contents.list_cache()}[T400.filename] == "cached"

    result = invoke("cache", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"cache: {filled} (6 files, ")
    row = next(line for line in lines if line.endswith(f"checkpoints/{S400.filename}"))
    assert row.split()[:4] == ["4.9", "KB", "verified", "swin-s-k400"]
    rows = json.loads(invoke("cache", "list", "--json").stdout)
    assert {r["state"] for r in rows} == {"verified", "cached", "incomplete", "unknown"}
    assert invoke("cache", "list", "-q").stdout.splitlines()[0] != lines[0]


def test_rm_by_entry_keeps_a_label_map_another_cached_entry_uses(filled):
    result = invoke("cache", "rm", "swin-t-k400")
    assert result.exit_code == 0, result.output
    assert not cache.checkpoint_path(T400).exists() and cache.checkpoint_path(S400).exists()
    assert cache.labels_path(zoo.LABEL_MAPS["kinetics400"]).exists()  # swin-s-k400 still needs it
    assert f"deleted {cache.checkpoint_path(T400)}" in result.stderr
    assert f"checkpoints/{T400.filename}" not in cache.read_manifest()  # its record is gone too
    invoke("cache", "rm", "swin-s-k400")
    assert not cache.labels_path(zoo.LABEL_MAPS["kinetics400"]).exists()  # now nobody uses it
    assert cache.entry_status(T400) == "missing"


def test_rm_by_file_name_or_path(filled):
    assert invoke("cache", "rm", "old_release.pth").exit_code == 0
    assert not (filled / "checkpoints" / "old_release.pth").exists()
    assert invoke("cache", "rm", filled / "checkpoints" / S400.filename, "-q").stdout == ""
    assert not cache.checkpoint_path(S400).exists()


def test_rm_refuses_unknown_names_and_files_outside_the_cache(filled, tmp_path):
    outside = tmp_path / "keep.pth"
    outside.write_text("x")
    result = invoke("cache", "rm", outside)
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and outside.exists()
    result = invoke("cache", "rm", "swin-t-k4OO")
    assert result.exit_code == 2 and "swin-t-k400" in result.stderr  # an unknown name is a usage error; did you mean
    assert cache.checkpoint_path(T400).exists()  # nothing deleted


def test_prune_deletes_partial_and_unknown_files_only(filled):
    dry = invoke("cache", "prune", "--dry-run")
    assert dry.exit_code == 0 and "would delete 3 file(s)" in dry.stderr
    assert (filled / "checkpoints" / "old_release.pth").exists()
    result = invoke("cache", "prune")
    assert result.exit_code == 0 and "deleted 3 file(s)" in result.stderr
    assert {i.path.name for i in cache_contents.list_cache()} == {T400.filename, S400.filename, "label_map_k400.txt"}
    assert (filled / "checkpoints" / (T400.filename + ".lock")).exists()  # a lock may be held: never deleted


def test_an_empty_cache_lists_nothing():
    result = invoke("cache", "list")
    assert result.exit_code == 0 and result.stdout.startswith("cache: ") and "(0 files, 0 B)" in result.stdout
    assert invoke("cache", "prune").exit_code == 0


def test_env_reports_versions_devices_cpu_backends_and_cache(filled):
    result = invoke("env")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for key in ("vswin: ", "python: ", "  torch: ", "  torchvision: ", "  av: ", "  decord: ", "  numpy: ",
                "cuda_available: ", "cuda devices: ", "threads: ", "  model: ", "flags: ", "pyav: ", f"path: {filled}"):
        assert key in text, key
    info = json.loads(invoke("env", "--json").stdout)
    assert info["packages"]["torch"] and info["torch"]["threads"] >= 1
    assert info["cache"] == {"path": str(filled), "files": 6, "bytes": 3000 + 5000 + 40 + 700 + 2 + 10}
    assert info["environment"]["VSWIN_HOME"] == str(filled)
    flags = info["cpu"]["flags"]
    assert flags is None or set(flags) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}


def test_env_survives_a_broken_manifest():
    manifest = cache.cache_dir() / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("{not json")
    result = invoke("env")
    assert result.exit_code == 0 and "cannot be read" in result.stdout
