"""Input discovery: folders, extensions, --glob, lists, hostile names, unique output keys."""

from __future__ import annotations

import io

import pytest

from vswin_cli.errors import ConfigError
from vswin_cli.inputs import find_videos, read_path_list

HOSTILE = "my clip (1) 'final' \"v2\" ünïcødé 日本語 $HOME;&.mp4"


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_single_folder_keys_are_relative_and_equal_names_stay_apart(tmp_path):
    for rel in ["cat/000.mp4", "dog/000.mp4", "dog/001.MKV", "notes.txt", ".hidden/x.mp4", "cat/.x.mp4"]:
        _touch(tmp_path / "root" / rel)
    videos = find_videos([str(tmp_path / "root")])
    assert [v.key for v in videos] == ["cat/000.mp4", "dog/000.mp4", "dog/001.MKV"]
    assert videos[0].path == tmp_path / "root" / "cat" / "000.mp4"


def test_several_folders_keep_their_names_in_the_key(tmp_path, monkeypatch):
    _touch(tmp_path / "a" / "000.mp4")
    _touch(tmp_path / "b" / "000.mp4")
    monkeypatch.chdir(tmp_path)
    assert [v.key for v in find_videos(["a", "./b/"])] == ["a/000.mp4", "b/000.mp4"]


def test_glob_narrows_and_replaces_the_extension_filter(tmp_path):
    for rel in ["x/1.mp4", "x/2.webm", "y/3.mp4", "y/4.bin"]:
        _touch(tmp_path / rel)
    assert [v.key for v in find_videos([str(tmp_path)], glob="*.mp4")] == ["x/1.mp4", "y/3.mp4"]
    assert [v.key for v in find_videos([str(tmp_path)], glob="y/*")] == ["y/3.mp4", "y/4.bin"]


def test_files_hostile_names_duplicates_and_missing_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / HOSTILE)
    videos = find_videos([HOSTILE, "./" + HOSTILE, "missing.mp4"])
    assert [v.key for v in videos] == [HOSTILE, "missing.mp4"]  # repeat dropped, missing kept for an error record


def test_path_list_keeps_spaces_and_skips_blank_lines():
    stream = io.StringIO(f" lead.mp4\n\n{HOSTILE}\r\n   \nlast.mp4")
    assert read_path_list(stream) == [" lead.mp4", HOSTILE, "last.mp4"]


def test_no_inputs_and_key_collisions_are_config_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="no inputs"):
        find_videos([])
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "x.mp4")
    _touch(tmp_path / "elsewhere" / "inner" / "placeholder")
    _touch(tmp_path / "elsewhere" / "x.mp4")
    (tmp_path / "lnk").symlink_to(tmp_path / "elsewhere" / "inner")
    # "lnk/../x.mp4" normalises to the key "x.mp4" but is elsewhere/x.mp4 on disk
    with pytest.raises(ConfigError, match="both be written"):
        find_videos(["x.mp4", "lnk/../x.mp4"])
