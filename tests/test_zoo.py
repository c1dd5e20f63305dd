"""The zoo table against the golden layouts, label maps, the cache location, and `resolve_model` on local files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from conftest import shared_path

from models import convert
from models.checkpoint import save_checkpoint
from models.config import Swin3DConfig
from models.swin3d import VideoSwin
from vswin_cli import cache, checkpoint_check, labels, resolve, zoo
from vswin_cli.errors import ChecksumError, ConfigError, UnknownModelError

TINY = dict(embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=(2, 3, 3))


def read_layout(name: str) -> tuple[dict, list[tuple[str, tuple]]]:
    """(header numbers, [(key, shape)]) of ../shared/fixtures/layouts/NAME.txt."""
    text = shared_path("fixtures", "layouts", name + ".txt").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    numbers = {}
    if m := re.search(r"parameters: total (\d+) \(backbone (\d+), cls_head (\d+)\)", header):
        numbers = {"total": int(m[1]), "backbone": int(m[2]), "head": int(m[3])}
    elif m := re.search(r"parameters: (\d+)", header):
        numbers = {"total": int(m[1])}
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")[:2]
            rows.append((key, tuple(int(v) for v in re.findall(r"\d+", shape))))
    return numbers, rows


def meta_model(entry: zoo.PretrainedEntry) -> VideoSwin:
    with torch.device("meta"):
        return VideoSwin.from_config(zoo.entry_config(entry))


def official_rows(model: VideoSwin) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in convert.to_mmaction(model.state_dict()).items()]


def num_params(model, skip_head: bool = False) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not (skip_head and n.startswith("head.")))


VIDEO_SWIN = [e for e in zoo.PRETRAINED.values() if e.format == "mmaction" and "window1677_kinetics400" not in e.url]


@pytest.mark.parametrize("entry", VIDEO_SWIN, ids=lambda e: e.name)
def test_official_entries_reproduce_the_golden_layout_and_parameter_count(entry):
    numbers, rows = read_layout(entry.filename.removesuffix(".pth"))
    model = meta_model(entry)
    assert num_params(model) == numbers["total"]
    assert official_rows(model) == rows  # every key and shape, in the file's order


@pytest.mark.parametrize("entry", [e for e in zoo.PRETRAINED.values() if e.format == "torchvision"], ids=lambda e: e.name)
def test_torchvision_entries_reproduce_the_torchvision_layout(entry):
    variant = entry.arch[-1]  # swin-t -> t
    numbers, rows = read_layout(f"torchvision_swin3d_{variant}")
    model = meta_model(entry)
    assert num_params(model) == numbers["total"]
    assert [(k, tuple(v.shape)) for k, v in convert.to_torchvision(model.state_dict()).items()] == rows


def test_window16_k400_init_entry_is_the_sthv2_network_with_a_k400_head():
    entry = zoo.PRETRAINED["swin-b-k400-in22k-w16"]
    numbers, rows = read_layout("swin_base_patch244_window1677_sthv2")
    model = meta_model(entry)
    assert num_params(model) == numbers["backbone"] + 1024 * 400 + 400
    head_rows = {"cls_head.fc_cls.weight": (400, 1024), "cls_head.fc_cls.bias": (400,)}
    assert official_rows(model) == [(k, head_rows.get(k, s)) for k, s in rows]


@pytest.mark.parametrize("entry", [e for e in zoo.PRETRAINED.values() if e.format == "imagenet2d"], ids=lambda e: e.name)
def test_imagenet2d_entries_inflate_into_the_kinetics_backbone(entry):
    k400 = {"swin-t": "swin_tiny", "swin-s": "swin_small", "swin-b": "swin_base"}[entry.arch]
    numbers, _ = read_layout(f"{k400}_patch244_window877_kinetics400_1k")
    assert num_params(meta_model(entry), skip_head=True) == numbers["backbone"]
    assert not entry.is_classifier and entry.labels is None and entry.num_classes in (1000, 21841)
    assert entry.filename.startswith(k400) and "patch4_window7_224" in entry.filename


@pytest.mark.parametrize("entry", list(zoo.PRETRAINED.values()), ids=lambda e: e.name)
def test_every_url_is_well_formed(entry):
    url = urlparse(entry.url)
    assert url.scheme == "https" and url.netloc in {"github.com", "download.pytorch.org"}
    assert entry.filename.endswith(".pth") and entry.url.endswith("/" + entry.filename) and " " not in entry.url
    assert entry.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    if entry.format == "torchvision":  # torchvision's file names carry the start of the SHA-256
        assert re.search(r"-[0-9a-f]{8}\.pth$", entry.filename)
    if entry.labels:
        label_map = zoo.LABEL_MAPS[entry.labels]
        assert label_map.num_classes == entry.num_classes
        assert urlparse(label_map.url).scheme == "https" and urlparse(label_map.url).netloc == "raw.githubusercontent.com"
    assert (entry.protocol is None) == (not entry.is_classifier)


def test_cache_file_names_are_unique_and_names_are_unique():
    files = [e.filename for e in zoo.PRETRAINED.values()] + [m.filename for m in zoo.LABEL_MAPS.values()]
    assert len(files) == len(set(files))
    assert all(name == e.name for name, e in zoo.PRETRAINED.items())


def test_published_figures_and_protocols():
    table = zoo.PRETRAINED
    assert (table["swin-b-k600"].top1, table["swin-b-k600"].top5, table["swin-b-k600"].num_classes) == (84.0, 96.5, 600)
    assert table["swin-t-k400"].protocol.num_views == 12 and table["swin-t-k400"].protocol.frame_interval == 2
    sthv2 = table["swin-b-sthv2"]
    assert sthv2.protocol.sampling == "uniform" and sthv2.protocol.num_views == 3 and sthv2.labels == "sthv2"
    assert zoo.entry_config(sthv2).window_size == (16, 7, 7)


@pytest.mark.parametrize("label_map", list(zoo.LABEL_MAPS.values()), ids=lambda m: m.name)
def test_shared_label_maps_have_the_expected_counts(label_map):
    names = cache.load_labels(shared_path("labels", label_map.filename))
    assert len(names) == label_map.num_classes == len(set(names))
    assert all(name == name.strip() and name for name in names)
    if label_map.name.startswith("kinetics"):
        assert names == sorted(names)  # Kinetics names are alphabetical


def test_label_file_errors(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("a\n\nb\n")
    with pytest.raises(ConfigError, match="line 2 is empty"):
        cache.load_labels(blank)
    with pytest.raises(ConfigError, match="not a label file or a known label map"):
        cache.load_labels(tmp_path / "missing.txt")
    short = tmp_path / "label_map_k400.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ChecksumError, match="2 class names, expected 400"):
        labels.read_label_file(short, 400)
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"x\r\ny\r\n\r\n")
    assert cache.load_labels(crlf) == ["x", "y"]


def test_cache_dir_follows_vswin_home_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VSWIN_HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home"
    monkeypatch.delenv("VSWIN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "vswin"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cache.cache_dir() == tmp_path / "user" / ".cache" / "vswin"


def test_unknown_names_list_the_valid_ones_and_suggest_a_close_one():
    with pytest.raises(UnknownModelError, match="valid names: swin-t-k400, swin-s-k400") as err:
        zoo.get_entry("swin-t-k40")
    assert "did you mean 'swin-t-k400'" in err.value.hint
    with pytest.raises(UnknownModelError):
        resolve.resolve_model(model="resnet50")


# ------------------------------------------------------------------------------ resolve_model, local files


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(3)
    return VideoSwin.from_config(Swin3DConfig(**TINY, num_classes=5)).eval()


def test_weights_file_in_our_format_carries_config_and_labels(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "mine.pt", tiny_model, labels=list("abcde"), epoch=3)
    resolved = resolve.resolve_model(weights=path)
    assert resolved.labels == list("abcde") and resolved.name == str(path)
    assert resolved.protocol == zoo.KINETICS_TEST and not resolved.model.training
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(resolved.model(x), tiny_model(x), rtol=0, atol=0)
    assert resolve.resolve_model(model=str(path)).labels == list("abcde")  # a path given as --model works too

    labels = tmp_path / "three.txt"
    labels.write_text("x\ny\nz\n")
    with pytest.raises(ConfigError, match="3 labels for a model with 5 classes"):
        resolve.resolve_model(weights=path, labels=labels)
    fine_tune = resolve.resolve_model(weights=path, labels=labels, drop_head=True)
    assert fine_tune.model.config.num_classes == 3 and fine_tune.labels == ["x", "y", "z"]


def test_official_weights_file_needs_an_arch_and_reads_classes_from_the_file(tiny_model, tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"meta": {}, "state_dict": convert.to_mmaction(tiny_model.state_dict())}, path)
    with pytest.raises(ConfigError, match="does not say its architecture") as err:
        resolve.resolve_model(weights=path)
    assert "--arch swin-t" in err.value.hint
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_model.config.to_dict()))
    resolved = resolve.resolve_model(weights=path, arch=str(config))
    assert resolved.labels == ["0", "1", "2", "3", "4"]  # no names anywhere: class indices
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps(tiny_model.config.replace(embed_dim=16, head_in_channels=None).to_dict()))
    with pytest.raises(ConfigError, match=r"official\.pth: .*patch_embed\.proj\.weight"):
        resolve.resolve_model(weights=path, arch=str(wider))


def test_arch_name_reads_the_head_size_and_temporal_window_from_the_file(tmp_path):
    # Shapes only matter here, so a swin-b SSv2-shaped state_dict is faked from the meta layout.
    entry = zoo.PRETRAINED["swin-b-sthv2"]
    overrides = resolve._shape_overrides({"state_dict": convert.to_mmaction(meta_model(entry).state_dict())}, "mmaction")
    assert overrides == {"num_classes": 174, "window_size": (16, 7, 7)}


def test_resolve_model_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="no model given"):
        resolve.resolve_model()
    with pytest.raises(ConfigError, match="model name and a weights file were given"):
        resolve.resolve_model(model="swin-t-k400", weights="x.pth")
    with pytest.raises(ConfigError, match="--arch is only used with --weights"):
        resolve.resolve_model(model="swin-t-k400", arch="swin-t")
    with pytest.raises(ConfigError, match="not a video classifier"):
        resolve.resolve_model(model="swin-b-in22k")
    with pytest.raises(ConfigError, match="no such file"):
        resolve.resolve_model(weights=tmp_path / "absent.pth", arch="swin-t")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pth: .*(not a|refused)"):
        resolve.resolve_model(weights=junk, arch="swin-t")


def test_imagenet2d_file_check_inflates_and_compares_the_backbone(tiny_model, tmp_path):
    entry = zoo.PretrainedEntry(**{**zoo.PRETRAINED["swin-t-in1k"].__dict__, "name": "tiny-in1k", "overrides": dict(TINY)})
    path = tmp_path / "tiny_2d.pth"
    torch.save({"model": _as_imagenet2d(tiny_model.state_dict())}, path)
    checkpoint_check.check_checkpoint(path, entry)  # passes: inflates into the tiny 3D backbone
    with pytest.raises(ConfigError, match="has no video classifier"):
        resolve.resolve_model(weights=path, arch="swin-t")
    config, labels = tmp_path / "tiny.json", tmp_path / "three.txt"
    config.write_text(json.dumps(tiny_model.config.to_dict()))
    labels.write_text("x\ny\nz\n")
    start = resolve.resolve_model(weights=path, arch=str(config), labels=labels, drop_head=True)
    assert start.model.config.num_classes == 3
    torch.testing.assert_close(start.model.layers[1].blocks[0].mlp.fc2.weight, tiny_model.layers[1].blocks[0].mlp.fc2.weight)

    bad = _as_imagenet2d(tiny_model.state_dict())
    del bad["layers.1.blocks.0.mlp.fc2.weight"]
    torch.save({"model": bad}, path)
    with pytest.raises(ChecksumError, match="layers.1.blocks.0.mlp.fc2.weight"):
        checkpoint_check.check_checkpoint(path, entry)


def _as_imagenet2d(state: dict) -> dict:
    """A 2D Swin file (microsoft/Swin-Transformer layout) with the tiny model's widths: 2D kernel, 2D tables
    for a 3x3 window, 2D index buffers, attention masks and a 1000-class head."""
    out = {}
    for key, value in state.items():
        if key == "patch_embed.proj.weight":
            value = value[:, :, 0]  # (C, 3, 4, 4)
        elif key.endswith("relative_position_bias_table"):
            value = value[:25]  # (2*3-1)^2 rows
        elif key.endswith("relative_position_index"):
            value = torch.zeros(9, 9, dtype=torch.long)
            out[key.replace("relative_position_index", "attn_mask")] = torch.zeros(4, 9, 9)
        elif key.startswith("head."):
            value = torch.zeros((1000,) + tuple(value.shape[1:]))
        out[key] = value
    return out


def test_readme_zoo_section_lists_every_entry_and_variable():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("<!-- section:zoo -->")[1].split("<!-- /section:zoo -->")[0]
    for name in zoo.PRETRAINED:
        assert f"`{name}`" in section, name
    for variable in ("VSWIN_HOME", "VSWIN_MIRROR", "VSWIN_OFFLINE", "VSWIN_TIMEOUT", "--from"):
        assert variable in section


def test_fetch_and_models_have_help():
    from typer.testing import CliRunner

    from vswin_cli.app import app

    for command, words in (("fetch", ["--from", "--mirror", "--offline", "--verify", "VSWIN_MIRROR"]), ("models", ["--json"])):
        result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0 and all(word in result.stdout for word in words), result.stdout
