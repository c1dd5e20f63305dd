"""write_text_atomic and atomic_file: readers see the old or the new whole file, never a part, and no temp file stays."""

import os

import pytest

from vswin_cli.files import write_text_atomic


def test_writes_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "metrics.json"
    write_text_atomic(target, "one\n")
    write_text_atomic(target, "two ünïcødé\n")
    assert target.read_text(encoding="utf-8") == "two ünïcødé\n"
    assert os.listdir(target.parent) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    write_text_atomic(target, "old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_temp_files_follow_the_umask(tmp_path):
    from vswin_cli.files import temp_file

    old = os.umask(0o027)
    try:
        fd, path = temp_file(tmp_path)
        os.close(fd)
    finally:
        os.umask(old)
    assert path.parent == tmp_path and path.name.startswith(".vswin-")
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600: a renamed result keeps this mode


def test_atomic_file_with_a_named_temp_publishes_on_success_and_deletes_it_on_failure(tmp_path):
    from vswin_cli.files import atomic_file

    target, part = tmp_path / "report.html", tmp_path / "report.html.part"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, temp=part) as tmp:
            assert tmp == part
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and not part.exists()
    with atomic_file(target, temp=part) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # readers see the old file until the block ends
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["report.html"]
