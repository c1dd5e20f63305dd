"""Fetching against a real HTTP server on 127.0.0.1: download, resume, lock, retries, errors, mirror, offline.

The served checkpoint is a TINY Video Swin in the official mmaction layout (`{'meta', 'state_dict'}` with
`backbone.`/`cls_head.fc_cls.` keys) and the label map is ../shared/labels/label_map_k400.txt, so the tiny
model has 400 classes. A fake zoo entry pointing at the server is put into `PRETRAINED` for each test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, shared_path
from http_server import FileServer
from typer.testing import CliRunner

from models import convert
from models.config import Swin3DConfig
from models.swin3d import VideoSwin
from vswin_cli import download
from vswin_cli import cache, resolve
from vswin_cli import zoo as zoo_table
from vswin_cli.app import app
from vswin_cli.errors import ChecksumError, ConfigError, DownloadError, OfflineError

TINY = dict(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 3, 3), num_classes=400)
NAME = "tiny-k400"
FILE = "swin_tiny_test_k400.pth"


def official_checkpoint_bytes(seed: int = 0, **config) -> bytes:
    """A tiny model saved like the released files: {'meta': ..., 'state_dict': official keys}."""
    torch.manual_seed(seed)
    model = VideoSwin.from_config(Swin3DConfig(**{**TINY, **config}))
    buffer = io.BytesIO()
    torch.save({"meta": {"mmcv_version": "1.3.0", "epoch": 30}, "state_dict": convert.to_mmaction(model.state_dict())}, buffer)
    return buffer.getvalue()


@dataclasses.dataclass
class Zoo:
    server: FileServer
    entry: zoo_table.PretrainedEntry
    body: bytes
    labels: bytes

    @property
    def cached(self) -> Path:
        return cache.checkpoint_path(self.entry)

    def gets(self) -> list:
        return self.server.gets("/releases/" + FILE)


@pytest.fixture
def zoo(monkeypatch):
    """A server with the tiny checkpoint and the K400 label map, and a zoo entry `tiny-k400` pointing at it."""
    monkeypatch.setattr(download, "RETRY_BACKOFF_S", 0.01)
    monkeypatch.setenv("VSWIN_TIMEOUT", "5")
    body = official_checkpoint_bytes()
    labels = shared_path("labels", "label_map_k400.txt").read_bytes()
    with FileServer() as server:
        server.add("/releases/" + FILE, body)
        server.add("/labels/label_map_k400.txt", labels)
        entry = dataclasses.replace(
            zoo_table.PRETRAINED["swin-t-k400"], name=NAME, url=server.url("/releases/" + FILE), overrides=dict(TINY)
        )
        monkeypatch.setitem(zoo_table.PRETRAINED, NAME, entry)
        k400 = dataclasses.replace(zoo_table.LABEL_MAPS["kinetics400"], url=server.url("/labels/label_map_k400.txt"))
        monkeypatch.setitem(zoo_table.LABEL_MAPS, "kinetics400", k400)
        yield Zoo(server, entry, body, labels)


def no_leftovers(zoo: Zoo) -> bool:
    return not list(zoo.cached.parent.glob("*.incomplete")) if zoo.cached.parent.exists() else True


def test_fresh_download_is_complete_recorded_and_then_served_from_the_cache(zoo):
    path = cache.fetch(NAME, progress=False)
    assert path == zoo.cached and path.read_bytes() == zoo.body
    labels_file = cache.labels_path(zoo_table.LABEL_MAPS["kinetics400"])
    assert labels_file.read_bytes() == zoo.labels
    record = cache.read_manifest()["checkpoints/" + FILE]
    assert record["sha256"] == hashlib.sha256(zoo.body).hexdigest()
    assert record["size"] == len(zoo.body) and record["url"] == zoo.entry.url and record["verified_at"]
    assert no_leftovers(zoo)

    assert cache.fetch([NAME], progress=False) == [path]  # second use: verified from the cache
    assert len(zoo.gets()) == 1
    assert cache.entry_status(zoo.entry) == "verified"


def test_dropped_connection_is_resumed_with_a_range_request(zoo):
    half = len(zoo.body) // 2
    zoo.server.add("/releases/" + FILE, zoo.body, drop_after=half)
    path = cache.fetch(NAME, progress=False)
    assert path.read_bytes() == zoo.body
    first, second = zoo.gets()
    assert first.range is None and second.range == f"bytes={half}-" and second.status == 206
    assert no_leftovers(zoo)


def test_connection_reset_is_retried_and_resumed(zoo):
    half = len(zoo.body) // 2
    zoo.server.add("/releases/" + FILE, zoo.body, drop_after=half, reset=True)
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    first, second = zoo.gets()
    # resumed from what arrived before the reset (a reset may discard bytes still in flight: <= half)
    assert second.status == 206 and 0 < int(second.range.removeprefix("bytes=").rstrip("-")) <= half


def test_partial_file_left_by_an_earlier_run_is_resumed(zoo):
    zoo.cached.parent.mkdir(parents=True)
    zoo.cached.with_name(FILE + ".incomplete").write_bytes(zoo.body[:1000])
    result = download.download_file(zoo.entry.url, zoo.cached, progress=False)
    assert result.resumed_from == 1000 and result.sha256 == hashlib.sha256(zoo.body).hexdigest()
    assert [r.range for r in zoo.gets()] == ["bytes=1000-"]
    assert zoo.cached.read_bytes() == zoo.body


def interrupt_after_first_cut(monkeypatch):
    """Make the next dropped connection look like Ctrl-C: the run stops, leaving its partial file."""
    real = download._attempt

    def attempt(*args):
        try:
            return real(*args)
        except download._Transient:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(download, "_attempt", attempt)


def test_resume_in_a_later_run_checks_the_file_did_not_change_meanwhile(zoo, tmp_path, monkeypatch):
    old, new = os.urandom(100_000), os.urandom(100_000)
    route = zoo.server.add("/changing.bin", old, drop_after=40_000)
    dest = tmp_path / "changing.bin"
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        interrupt_after_first_cut(m)
        download.download_file(zoo.server.url("/changing.bin"), dest, progress=False)
    assert dest.with_name("changing.bin.incomplete").stat().st_size == 40_000 and not dest.exists()
    route.body, route.etag, route.drop_after = new, '"v2"', None  # the publisher replaces the file
    result = download.download_file(zoo.server.url("/changing.bin"), dest, progress=False)
    second = zoo.server.gets("/changing.bin")[-1]
    assert second.range == "bytes=40000-" and second.if_range == '"' + hashlib.sha256(old).hexdigest()[:16] + '"'
    assert second.status == 200 and dest.read_bytes() == new and result.sha256 == hashlib.sha256(new).hexdigest()
    assert not list(tmp_path.glob("changing.bin.incomplete*"))


def test_interrupted_run_is_resumed_by_the_next_run(zoo, monkeypatch):
    zoo.server.add("/releases/" + FILE, zoo.body, drop_after=20_000)
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        interrupt_after_first_cut(m)
        cache.fetch(NAME, progress=False)
    assert not zoo.cached.exists()
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    first, second = zoo.gets()
    assert (second.range, second.status) == ("bytes=20000-", 206) and second.if_range is not None


def test_partial_file_that_is_already_whole_is_not_downloaded_again(zoo):
    zoo.cached.parent.mkdir(parents=True)
    zoo.cached.with_name(FILE + ".incomplete").write_bytes(zoo.body)  # e.g. killed just before the move
    result = download.download_file(zoo.entry.url, zoo.cached, progress=False)
    assert [(r.range, r.status) for r in zoo.gets()] == [(f"bytes={len(zoo.body)}-", 416)]
    assert result.sha256 == hashlib.sha256(zoo.body).hexdigest() and zoo.cached.read_bytes() == zoo.body


def test_partial_file_longer_than_the_file_is_discarded(zoo):
    zoo.cached.parent.mkdir(parents=True)
    zoo.cached.with_name(FILE + ".incomplete").write_bytes(zoo.body + b"junk")
    assert download.download_file(zoo.entry.url, zoo.cached, progress=False).size == len(zoo.body)
    assert [r.status for r in zoo.gets()] == [416, 200] and zoo.cached.read_bytes() == zoo.body


def test_server_that_ignores_range_restarts_from_zero(zoo):
    zoo.server.add("/releases/" + FILE, zoo.body, drop_after=500, honour_range=False)
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    assert [r.status for r in zoo.gets()] == [200, 200]


def test_transient_503_is_retried(zoo):
    zoo.server.add("/releases/" + FILE, zoo.body, fail_times=2)
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    assert [r.status for r in zoo.gets()] == [503, 503, 200]


def test_checksum_mismatch_rejects_the_file_and_leaves_nothing_at_the_final_path(zoo, monkeypatch):
    wrong = dataclasses.replace(zoo.entry, sha256="0" * 64)
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, wrong)
    with pytest.raises(ChecksumError, match="does not match the expected 0000"):
        cache.fetch(NAME, progress=False)
    assert not zoo.cached.exists() and no_leftovers(zoo)
    assert "checkpoints/" + FILE not in cache.read_manifest()


def test_pinned_sha256_and_size_are_the_authority(zoo, monkeypatch):
    pinned = dataclasses.replace(zoo.entry, sha256=hashlib.sha256(zoo.body).hexdigest(), size=len(zoo.body))
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, pinned)
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    zoo.cached.write_bytes(zoo.body[:-1] + b"!")
    cache.fetch(NAME, progress=False)  # the changed file no longer matches the pin: fetched again
    assert zoo.cached.read_bytes() == zoo.body and len(zoo.gets()) == 2


def test_file_replaced_upstream_is_refused_against_the_record_with_a_way_out(zoo):
    cache.fetch(NAME, progress=False)
    zoo.cached.unlink()
    zoo.server.add("/releases/" + FILE, official_checkpoint_bytes(seed=1))  # same layout, other weights
    with pytest.raises(ChecksumError, match="recorded when this file was first verified") as err:
        cache.fetch(NAME, progress=False)
    assert "manifest.json" in err.value.hint and not zoo.cached.exists()


def test_pinned_size_mismatch_is_rejected(zoo, monkeypatch):
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, dataclasses.replace(zoo.entry, size=len(zoo.body) + 1))
    with pytest.raises(ChecksumError, match=f"downloaded {len(zoo.body)} bytes, expected {len(zoo.body) + 1}"):
        cache.fetch(NAME, progress=False)
    assert not zoo.cached.exists()


def test_404_is_a_clear_download_error(zoo, monkeypatch):
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, dataclasses.replace(zoo.entry, url=zoo.server.url("/nope.pth")))
    with pytest.raises(DownloadError, match="nope.pth: HTTP 404") as err:
        cache.fetch(NAME, progress=False)
    assert "mirror" in err.value.hint
    assert not cache.checkpoint_path(zoo_table.PRETRAINED[NAME]).exists()


def test_refused_connection_is_a_clear_download_error_without_retries(zoo, monkeypatch):
    dead = "http://127.0.0.1:9/" + FILE  # port 9 (discard) is not listening here
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, dataclasses.replace(zoo.entry, url=dead))
    with pytest.raises(DownloadError, match="connection refused"):
        cache.fetch(NAME, progress=False)


def test_stalled_server_times_out_with_a_clear_error(zoo, monkeypatch):
    monkeypatch.setenv("VSWIN_TIMEOUT", "0.3")
    zoo.server.add("/releases/" + FILE, zoo.body, stall_s=10, stall_times=100)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out") as err:
        cache.fetch(NAME, progress=False)
    assert time.monotonic() - start < 5
    assert "gave up after 5 attempts" in str(err.value) and not zoo.cached.exists()


def test_stall_in_the_middle_of_the_body_is_retried_and_resumed(zoo, monkeypatch):
    monkeypatch.setenv("VSWIN_TIMEOUT", "0.5")
    body = os.urandom(3 * 64 * 1024 + 100)
    zoo.server.add("/big.bin", body, throttle_s=3.0)  # a 3 s pause after every 64 KiB: each GET gets one chunk
    dest = zoo.cached.with_name("big.bin")
    result = download.download_file(zoo.server.url("/big.bin"), dest, retries=1, progress=False)
    assert dest.read_bytes() == body and result.sha256 == hashlib.sha256(body).hexdigest()
    # 4 stalls with retries=1 still succeed: every attempt made progress, each resuming where the last stopped
    ranges = list(dict.fromkeys(r.range for r in zoo.server.gets("/big.bin")))  # (a slow CI may repeat one)
    assert ranges == [None] + [f"bytes={i * 65536}-" for i in (1, 2, 3)]


def test_full_disk_is_reported_before_and_during_the_download(zoo, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(download.shutil, "disk_usage", lambda path: _Usage(free=10))
        with pytest.raises(DownloadError, match="not enough free space"):
            cache.fetch(NAME, progress=False)
    assert not zoo.cached.exists()
    with open("/dev/full", "wb", buffering=0) as full, pytest.raises(DownloadError, match="no space left"):
        download._write_all(full, b"x" * 10)


@dataclasses.dataclass
class _Usage:
    free: int
    total: int = 0
    used: int = 0


CHILD = """
import sys
from pathlib import Path
from vswin_cli.download import download_file
result = download_file(sys.argv[1], Path(sys.argv[2]), progress=False)
print(result.downloaded, result.sha256)
"""


def test_two_processes_fetching_one_file_give_one_good_file(zoo, tmp_path):
    body = os.urandom(1_000_000)
    zoo.server.add("/slow.bin", body, throttle_s=0.15)  # ~2.4 s for 16 chunks of 64 KiB: ample overlap
    dest = tmp_path / "cache" / "slow.bin"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, zoo.server.url("/slow.bin"), str(dest)]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not zoo.server.gets("/slow.bin") and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out1, err1 = first.communicate(timeout=60)
    out2, err2 = second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    digest = hashlib.sha256(body).hexdigest()
    assert out1.split() == ["True", digest]
    assert out2.split() == ["False", digest]  # it waited for the lock, then reused the file
    assert "Waiting for another vswin process" in err2
    assert len(zoo.server.gets("/slow.bin")) == 1
    assert dest.read_bytes() == body and not dest.with_name("slow.bin.incomplete").exists()


def test_two_threads_fetching_one_entry_give_one_good_file(zoo):
    from concurrent.futures import ThreadPoolExecutor

    zoo.server.routes["/releases/" + FILE].throttle_s = 0.3
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: cache.fetch(NAME, progress=False), range(2)))
    assert paths[0] == paths[1] and paths[0].read_bytes() == zoo.body
    assert len(zoo.gets()) == 1 and no_leftovers(zoo)


def test_mirror_variable_serves_the_same_file_names(zoo, monkeypatch):
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, dataclasses.replace(zoo.entry, url="https://example.invalid/x/" + FILE))
    zoo.server.add("/mirror/" + FILE, zoo.body)
    zoo.server.add("/mirror/label_map_k400.txt", zoo.labels)
    monkeypatch.setenv("VSWIN_MIRROR", zoo.server.url("/mirror/"))
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body
    assert len(zoo.server.gets("/mirror/" + FILE)) == 1 and len(zoo.server.gets("/mirror/label_map_k400.txt")) == 1
    assert cache.read_manifest()["checkpoints/" + FILE]["url"] == zoo.server.url("/mirror/" + FILE)


def test_mirror_option_of_the_cli(zoo, monkeypatch):
    monkeypatch.setitem(zoo_table.PRETRAINED, NAME, dataclasses.replace(zoo.entry, url="https://example.invalid/x/" + FILE))
    zoo.server.add_dir(shared_path("labels"), prefix="/m")
    zoo.server.add("/m/" + FILE, zoo.body)
    result = CliRunner().invoke(app, ["fetch", NAME, "--mirror", zoo.server.url("/m"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(cache.checkpoint_path(zoo_table.PRETRAINED[NAME]))


def test_offline_mode_names_the_missing_file_and_how_to_get_it(zoo, monkeypatch):
    monkeypatch.setenv("VSWIN_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        cache.fetch(NAME, progress=False)
    assert f"{FILE} and label_map_k400.txt are not in the cache" in str(err.value)
    k400 = zoo_table.LABEL_MAPS["kinetics400"]
    assert zoo.entry.url in err.value.hint and k400.url in err.value.hint
    assert f"vswin fetch {NAME} --from FOLDER" in err.value.hint
    assert zoo.server.requests == []  # never touched the network

    cache.import_file(NAME, shared_path("labels", "label_map_k400.txt"))  # now only the checkpoint is missing
    with pytest.raises(OfflineError, match=f"{FILE} is not in the cache") as err:
        cache.fetch(NAME, progress=False)
    assert f"vswin fetch {NAME} --from {FILE}" in err.value.hint and k400.url not in err.value.hint

    result = CliRunner().invoke(app, ["fetch", NAME, "--offline"])
    monkeypatch.delenv("VSWIN_OFFLINE")
    assert result.exit_code == 1 and "Error: offline mode" in result.stderr and "--from" in result.stderr


def test_from_file_imports_without_network_and_then_works_offline(zoo, tmp_path, monkeypatch):
    ckpt = tmp_path / "downloads" / FILE
    ckpt.parent.mkdir()
    ckpt.write_bytes(zoo.body)
    (ckpt.parent / "label_map_k400.txt").write_bytes(zoo.labels)
    result = CliRunner().invoke(app, ["fetch", NAME, "--from", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert zoo.cached.read_bytes() == zoo.body and zoo.server.requests == []
    assert cache.read_manifest()["checkpoints/" + FILE]["sha256"] == hashlib.sha256(zoo.body).hexdigest()

    result = CliRunner().invoke(app, ["fetch", NAME, "--from", str(ckpt.parent)])  # a folder: checkpoint + labels
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 2  # the checkpoint and the label map
    monkeypatch.setenv("VSWIN_OFFLINE", "1")
    resolved = resolve.resolve_model(model=NAME, progress=False)
    assert resolved.labels[0] == "abseiling" and len(resolved.labels) == 400 and zoo.server.requests == []


def test_corrupt_download_is_rejected_with_the_reason(zoo):
    zoo.server.add("/releases/" + FILE, zoo.body[: len(zoo.body) // 3])  # a truncated zip, served as complete
    with pytest.raises(ChecksumError, match=f"{FILE}: not a {NAME} checkpoint") as err:
        cache.fetch(NAME, progress=False)
    assert "the download was deleted" in str(err.value)
    assert not zoo.cached.exists() and no_leftovers(zoo)


def test_wrong_architecture_download_is_rejected_naming_the_mismatch(zoo):
    zoo.server.add("/releases/" + FILE, official_checkpoint_bytes(embed_dim=16))
    with pytest.raises(ChecksumError, match=r"not a tiny-k400 checkpoint .*patch_embed\.proj\.weight.*\(16, 3, 2, 4, 4\)"):
        cache.fetch(NAME, progress=False)
    assert not zoo.cached.exists()


def test_wrong_file_given_with_from_is_rejected_by_the_cli(zoo, tmp_path):
    wrong = tmp_path / FILE
    wrong.write_bytes(official_checkpoint_bytes(num_classes=600))
    result = CliRunner().invoke(app, ["fetch", NAME, "--from", str(wrong)])
    assert result.exit_code == 1
    assert f"not a {NAME} checkpoint" in result.stderr and "head.weight" in result.stderr and "600" in result.stderr
    assert not zoo.cached.exists()


def test_a_damaged_cached_file_is_detected_redownloaded_online_and_refused_offline(zoo, monkeypatch):
    path = cache.fetch(NAME, progress=False)
    path.write_bytes(b"x" + zoo.body[1:])  # same size, one byte changed

    result = CliRunner().invoke(app, ["fetch", "--verify"])
    assert result.exit_code == 1 and "FAILED" in result.stdout and "differs from the recorded" in result.stdout

    monkeypatch.setenv("VSWIN_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="differs from the recorded"):
        cache.fetch(NAME, progress=False)
    monkeypatch.delenv("VSWIN_OFFLINE")
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body  # downloaded again
    assert len(zoo.gets()) == 2
    result = CliRunner().invoke(app, ["fetch", "--verify"])
    assert result.exit_code == 0 and result.stdout.count("ok") == 2, result.output


def test_resolved_zoo_model_computes_what_the_source_model_computes(zoo):
    resolved = resolve.resolve_model(model=NAME, progress=False)
    torch.manual_seed(0)
    source = VideoSwin.from_config(Swin3DConfig(**TINY)).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(resolved.model(x), source(x), rtol=0, atol=0)
    assert not resolved.model.training and resolved.name == NAME
    assert resolved.protocol == zoo_table.KINETICS_TEST and resolved.labels[-1] == "zumba"

    fresh = resolve.resolve_model(model=NAME, labels=_write(zoo, ["a", "b", "c"]), drop_head=True, progress=False)
    assert fresh.model.config.num_classes == 3 and fresh.labels == ["a", "b", "c"]
    torch.testing.assert_close(fresh.model.forward_features(x), source.forward_features(x), rtol=0, atol=0)


def _write(zoo: Zoo, names: list[str]) -> str:
    path = zoo.cached.parent.parent / "my_labels.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(names) + "\n")
    return str(path)


def test_models_json_reports_the_cache_state(zoo):
    runner = CliRunner()
    before = {e["name"]: e for e in json.loads(runner.invoke(app, ["models", "--json"]).stdout)}
    assert before[NAME]["status"] == "missing" and before[NAME]["filename"] == FILE
    cache.fetch(NAME, progress=False)
    after = {e["name"]: e for e in json.loads(runner.invoke(app, ["models", "--json"]).stdout)}
    assert after[NAME]["status"] == "verified" and after["swin-b-k600"]["status"] == "missing"
    assert after[NAME]["recorded_sha256"] == hashlib.sha256(zoo.body).hexdigest() and after[NAME]["verified_at"]
    assert after[NAME]["recorded_size"] == len(zoo.body) and after["swin-b-k600"]["recorded_sha256"] is None
    assert after[NAME]["labels_filename"] == "label_map_k400.txt" and after[NAME]["protocol"]["num_clips"] == 4
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and NAME in table.stdout and "verified" in table.stdout


def test_cli_usage_errors(zoo):
    runner = CliRunner()  # usage errors exit 2 (issue 22)
    result = runner.invoke(app, ["fetch"])
    assert result.exit_code == 2 and "no model names given" in result.stderr
    result = runner.invoke(app, ["fetch", "swin-b-k60"])
    assert result.exit_code == 2 and "did you mean 'swin-b-k600'" in result.stderr
    result = runner.invoke(app, ["fetch", NAME, "swin-t-k400", "--from", "x.pth"])
    assert result.exit_code == 2 and "exactly one entry" in result.stderr
    result = runner.invoke(app, ["fetch", NAME, "--from", "no-such.pth"])
    assert result.exit_code == 2 and "--from no-such.pth: no such file or folder" in result.stderr
    with pytest.raises(ConfigError, match="not an http"):
        cache.fetch(NAME, mirror="ftp://host/", progress=False)


def test_fetching_several_entries_goes_on_past_a_failure_and_exits_1(zoo, monkeypatch):
    broken = dataclasses.replace(zoo.entry, name="tiny-gone", url=zoo.server.url("/gone/" + FILE))
    monkeypatch.setitem(zoo_table.PRETRAINED, "tiny-gone", broken)
    result = CliRunner().invoke(app, ["fetch", "tiny-gone", NAME, "-q"])
    assert result.exit_code == 1
    assert "tiny-gone" in result.stderr and "HTTP 404" in result.stderr and "1 of 2 entries failed" in result.stderr
    assert result.stdout.strip() == str(zoo.cached) and zoo.cached.read_bytes() == zoo.body


def test_file_mirror_for_air_gapped_sites(zoo, tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    (share / FILE).write_bytes(zoo.body)
    (share / "label_map_k400.txt").write_bytes(zoo.labels)
    monkeypatch.setenv("VSWIN_MIRROR", share.as_uri())
    assert cache.fetch(NAME, progress=False).read_bytes() == zoo.body and zoo.server.requests == []


def test_lost_or_damaged_manifest(zoo):
    cache.fetch(NAME, progress=False)
    manifest = cache.cache_dir() / "manifest.json"
    manifest.write_text("{not json")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 1 and "manifest.json: the cache manifest cannot be read" in result.stderr
    assert "vswin fetch --verify" in result.stderr
    manifest.unlink()
    result = CliRunner().invoke(app, ["fetch", "--verify"])  # checks the files by content and records them again
    assert result.exit_code == 0 and result.stdout.count("ok") == 2, result.output
    assert cache.read_manifest()["checkpoints/" + FILE]["sha256"] == hashlib.sha256(zoo.body).hexdigest()


def test_unusable_cache_folder_is_a_clear_error(zoo, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("VSWIN_HOME", str(blocker / "cache"))  # a folder below a file cannot be created
    result = CliRunner().invoke(app, ["fetch", NAME, "-q"])
    assert result.exit_code == 1 and "cannot create the cache folder" in result.stderr and "VSWIN_HOME" in result.stderr
    assert zoo.server.requests == []


@pytest.mark.parametrize("name, count", [("kinetics600", 600), ("swin-b-sthv2", 174), ("kinetics400", 400)])
def test_label_maps_are_fetched_into_the_cache_and_counted(zoo, monkeypatch, name, count):
    zoo.server.add_dir(shared_path("labels"), prefix="/mirror")
    monkeypatch.setenv("VSWIN_MIRROR", zoo.server.url("/mirror"))
    names = cache.load_labels(name)
    assert len(names) == count and cache.load_labels(name) == names  # second call: from the cache
    label_map = zoo_table.LABEL_MAPS[zoo_table.PRETRAINED[name].labels if name in zoo_table.PRETRAINED else name]
    assert len(zoo.server.gets("/mirror/" + label_map.filename)) == 1
    assert cache.read_manifest()["labels/" + label_map.filename]["size"] == cache.labels_path(label_map).stat().st_size


def test_label_map_with_the_wrong_count_is_rejected(zoo, monkeypatch):
    zoo.server.add("/mirror/label_map_k600.txt", zoo.labels)  # the 400 Kinetics-400 names served as K600's
    monkeypatch.setenv("VSWIN_MIRROR", zoo.server.url("/mirror"))
    with pytest.raises(ChecksumError, match="label_map_k600.txt: 400 class names, expected 600"):
        cache.load_labels("kinetics600")
    assert not cache.labels_path(zoo_table.LABEL_MAPS["kinetics600"]).exists()


def test_tls_failure_is_a_clear_error(zoo, tmp_path):
    https_to_plain_http = zoo.entry.url.replace("http://", "https://")  # the handshake fails against plain HTTP
    with pytest.raises(DownloadError, match="TLS error") as err:
        download.download_file(https_to_plain_http, tmp_path / "x.pth", progress=False)
    assert "SSL_CERT_FILE" in err.value.hint


def test_torchvision_layout_entry_is_checked_and_loaded(zoo, monkeypatch):
    torch.manual_seed(5)
    model = VideoSwin.from_config(Swin3DConfig(**TINY)).eval()
    buffer = io.BytesIO()
    torch.save(convert.to_torchvision(model.state_dict()), buffer)  # a plain state_dict, torchvision names
    name = f"swin3d_tiny-{hashlib.sha256(buffer.getvalue()).hexdigest()[:8]}.pth"  # torchvision names carry the hash
    zoo.server.add("/tv/" + name, buffer.getvalue())
    entry = dataclasses.replace(
        zoo_table.PRETRAINED["swin-t-k400-tv"], name="tiny-tv", url=zoo.server.url("/tv/" + name), overrides=dict(TINY),
    )  # fmt: skip
    monkeypatch.setitem(zoo_table.PRETRAINED, "tiny-tv", entry)
    resolved = resolve.resolve_model(model="tiny-tv", progress=False)
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(resolved.model(x), model(x), rtol=0, atol=0)

    wrong = dataclasses.replace(entry, name="tiny-tv-2", url=zoo.server.url("/tv/swin3d_tiny-11111111.pth"))
    monkeypatch.setitem(zoo_table.PRETRAINED, "tiny-tv-2", wrong)
    zoo.server.add("/tv/swin3d_tiny-11111111.pth", zoo.body)  # an mmaction file where a torchvision one belongs
    with pytest.raises(ChecksumError, match="not a tiny-tv-2 checkpoint .*torchvision layout"):
        cache.fetch("tiny-tv-2", progress=False)
    assert not cache.checkpoint_path(wrong).exists()


def test_a_torchvision_file_must_match_the_hash_in_its_name(zoo, monkeypatch, tmp_path):
    """Issue 22: torchvision's file names carry the start of their SHA-256 (`swin3d_t-7615ae03.pth`); a download
    or an import that does not match is refused, instead of trusting (and recording) the first one."""
    torch.manual_seed(5)
    model = VideoSwin.from_config(Swin3DConfig(**TINY)).eval()
    buffer = io.BytesIO()
    torch.save(convert.to_torchvision(model.state_dict()), buffer)
    body = buffer.getvalue()
    wrong_name = "swin3d_tiny-00000000.pth"  # a valid file of the right layout, under a name with another hash
    zoo.server.add("/tv/" + wrong_name, body)
    entry = dataclasses.replace(zoo_table.PRETRAINED["swin-t-k400-tv"], name="tiny-tv-hash",
                                url=zoo.server.url("/tv/" + wrong_name), overrides=dict(TINY))
    monkeypatch.setitem(zoo_table.PRETRAINED, "tiny-tv-hash", entry)
    assert entry.filename_sha256 == "00000000"
    with pytest.raises(ChecksumError, match="differs from the 00000000 its published name swin3d_tiny-00000000.pth carries"):
        cache.fetch("tiny-tv-hash", progress=False)
    key = cache.checkpoint_path(entry).relative_to(cache.cache_dir()).as_posix()
    assert not cache.checkpoint_path(entry).exists() and key not in cache.read_manifest()

    (tmp_path / wrong_name).write_bytes(body)  # the same file imported offline: refused too, nothing cached
    result = CliRunner().invoke(app, ["fetch", "tiny-tv-hash", "--from", str(tmp_path / wrong_name)])
    assert result.exit_code == 1 and "differs from the 00000000" in result.stderr, result.output
    assert not cache.checkpoint_path(entry).exists()

    right = f"swin3d_tiny-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    monkeypatch.setitem(zoo_table.PRETRAINED, "tiny-tv-hash", dataclasses.replace(entry, url=zoo.server.url("/tv/" + right)))
    (tmp_path / right).write_bytes(body)
    result = CliRunner().invoke(app, ["fetch", "tiny-tv-hash", "--from", str(tmp_path / right), "-q"])
    assert result.exit_code == 0, result.output


def test_the_torchvision_entries_name_their_hash():
    assert zoo_table.PRETRAINED["swin-t-k400-tv"].filename_sha256 == "7615ae03"
    assert all(e.filename_sha256 for e in zoo_table.PRETRAINED.values() if e.format == "torchvision")
    assert zoo_table.PRETRAINED["swin-t-k400"].filename_sha256 is None
