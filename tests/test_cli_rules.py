"""Issue 22, one vocabulary across the commands: help texts keep their brackets, every usage error is
`Error:`/`Hint:` with exit status 2 (never Typer's box), and usage errors answer before PyTorch loads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from vswin_cli.app import app

ROOT = typer.main.get_command(app)


def _commands(command=ROOT, path=()):
    """(words after `vswin`, click command) of the root, every command and every subcommand."""
    yield list(path), command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())
BRACKETED = re.compile(r"\S*\[[^\]\s]*\]\S*")  # `'vswin[cpu]').`: a bracket and the word around it


def _declared_help(command) -> list[str]:
    texts = [command.help or ""] + [getattr(param, "help", None) or "" for param in command.params]
    return [text for text in texts if "[" in text]


def test_some_help_text_has_brackets_to_lose():
    assert any(_declared_help(command) for _, command in COMMANDS)


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) or "vswin" for p, _ in COMMANDS])
def test_help_renders_brackets_literally(path, command):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for text in _declared_help(command):
        for word in BRACKETED.findall(text):
            word = word.strip("`'\".,;:()")
            assert word in result.stdout, (word, text)
    assert "\\[" not in result.stdout  # help is plain text: a Rich escape would show as it is


@pytest.mark.parametrize("args, words", [
    (["annotate", "tags.jsonl", "--bogus", "x"], ["No such option: --bogus", "`vswin annotate --help`"]),
    (["report"], ["Missing argument", "`vswin report --help`"]),
    (["tag", "--top-k", "-1", "a.mp4"], ["--top-k", "`vswin tag --help`"]),
    (["--bogus"], ["No such option: --bogus", "`vswin --help`"]),
    (["no-such-command"], ["No such command 'no-such-command'", "`vswin --help`"]),
    (["cache", "rm"], ["Missing argument", "`vswin cache rm --help`"]),
    (["report", "tags.jsonl", "--videos", "/nonexistent/folder"], ["--videos", "does not exist"]),
    (["models", "--json", "--json=3"], ["--json"]),
])  # fmt: skip
def test_clicks_usage_errors_are_error_and_hint_lines_with_status_2(args, words):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and "\nHint: see `vswin" in result.stderr, result.stderr
    assert "╭" not in result.output and "Usage:" not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# --- usage errors answer before PyTorch loads -----------------------------------------------------------------

def _write_inputs(tmp):
    (tmp / "tags.jsonl").write_text('{"record": "video", "video": "a.mp4", "top": []}\n')
    (tmp / "list.txt").write_text("a.mp4 0\n")


def _usage_cases(tmp):
    """Usage errors of every command, by name; the inputs named exist after `_write_inputs(tmp)`."""
    results, listing = tmp / "tags.jsonl", tmp / "list.txt"
    return {
        "fetch, no names": ["fetch"],
        "fetch, unknown name": ["fetch", "swin-x"],
        "fetch --from missing": ["fetch", "swin-t-k400", "--from", str(tmp / "nope.pth")],
        "models, bad option": ["models", "--bogus"],
        "report, missing results": ["report", str(tmp / "nope.jsonl")],
        "report, -o /proc": ["report", str(results), "-o", "/proc/r.html"],
        "report, -o in a missing folder": ["report", str(results), "-o", str(tmp / "no" / "r.html")],
        "annotate, no -o": ["annotate", str(results)],
        "annotate, -o /proc": ["annotate", str(results), "-o", "/proc/labelled"],
        "annotate, missing results": ["annotate", str(tmp / "nope.jsonl"), "-o", str(tmp / "out")],
        "export, unknown model": ["export", "swin-x", "-o", str(tmp / "m.onnx")],
        "export, not .onnx": ["export", "swin-t-k400", "-o", str(tmp / "m.pt")],
        "export, -o /proc": ["export", "swin-t-k400", "-o", "/proc/m.onnx"],
        "export, unknown arch": ["export", str(listing), "-o", str(tmp / "m.onnx"), "--arch", "swin-x"],
        "cache rm, unknown name": ["cache", "rm", "swin-x"],
        "cache prune, bad option": ["cache", "prune", "--bogus"],
        "env, bad option": ["env", "--bogus"],
        "train, missing list": ["train", "--train-list", str(tmp / "nope.txt"), "--out-dir", str(tmp / "run"), "-m", "swin-t-k400"],
        "train, unknown arch": ["train", "--train-list", str(listing), "--out-dir", str(tmp / "run"), "--arch", "swin-x"],
        "train, unknown model": ["train", "--train-list", str(listing), "--out-dir", str(tmp / "run"), "-m", "swin-x"],
        "train, --out-dir /proc": ["train", "--train-list", str(listing), "--out-dir", "/proc/run", "-m", "swin-t-k400"],
        "train, --arch and -m": ["train", "--train-list", str(listing), "--out-dir", str(tmp / "run"), "--arch", "swin-t", "-m", "swin-t-k400"],
        "train, bad --lr": ["train", "--train-list", str(listing), "--out-dir", str(tmp / "run"), "-m", "swin-t-k400", "--lr", "0"],
        "tag, missing input": ["tag", str(tmp / "nope.mp4"), "-m", "swin-t-k400"],
        "tag, unknown model": ["tag", str(listing), "-m", "swin-x"],
        "tag, -o /proc": ["tag", str(listing), "-m", "swin-t-k400", "-o", "/proc/x.jsonl"],
        "tag, missing --weights": ["tag", str(listing), "--weights", str(tmp / "nope.pth")],
        "tag, missing --from-list": ["tag", "--from-list", str(tmp / "nope.txt"), "-m", "swin-t-k400"],
        "tag, a stream on ray": ["tag", "rtsp://127.0.0.1:9/cam", "-m", "swin-t-k400", "--engine", "ray"],
        "eval, missing --weights": ["eval", "--dataset", str(listing), "--weights", str(tmp / "nope.pth")],
        "eval, missing list": ["eval", "--dataset", str(tmp / "nope.txt"), "-m", "swin-t-k400"],
        "eval, unknown model": ["eval", "--dataset", str(listing), "-m", "swin-x"],
    }


USAGE_CASES = list(_usage_cases(Path("TMP")))


@pytest.mark.parametrize("case", USAGE_CASES)
def test_usage_errors_exit_2_before_pytorch_is_imported(case, tmp_path):
    """`python -X importtime` lists every module a run imports: a usage error must come before torch's."""
    import os
    import subprocess
    import sys

    _write_inputs(tmp_path)
    args = _usage_cases(tmp_path)[case]
    env = {**os.environ, "VSWIN_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "vswin_cli", *args], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    messages = [line for line in out.stderr.splitlines() if not line.startswith("import time:")]
    assert out.returncode == 2, (args, messages)
    assert messages[0].startswith("Error: ") and messages[1].startswith("Hint: "), messages
    assert not {"torch", "av", "decord"} & imported, (args, sorted({"torch", "av", "decord"} & imported))


# --- one exit-status rule over every command: 0 success, 1 failure, 2 usage error, 130 interrupted ----------


def _results(tmp, *records):
    import json

    path = tmp / "tags.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _damaged_manifest(tmp):
    from vswin_cli import cache, zoo

    path = cache.checkpoint_path(zoo.PRETRAINED["swin-t-k400"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    (cache.cache_dir() / "manifest.json").write_text("{not json")


ERROR_RECORD = {"record": "error", "video": "broken.mp4", "error": {"type": "VideoDecodeError", "message": "x"}}
SEGMENT_RECORD = {"record": "segment", "video": "gone.mp4", "segment": 0, "start": 0.0, "end": 1.0, "start_frame": 0,
                  "end_frame": 25, "top": [{"label": "archery", "index": 0, "score": 0.9}], "views": 1, "model": "m"}
VIDEO_RECORD = {"record": "video", "video": "gone.mp4", "num_segments": 1, "duration": 1.0, "num_frames": 25,
                "fps": 25.0, "top": [{"label": "archery", "index": 0, "score": 0.9}], "views": 1, "model": "m"}
# (command, setup(tmp) -> args, exit status); usage errors (2) are the cases above.
STATUS_CASES = [
    ("fetch", lambda tmp: ["fetch", "--verify"], 0),
    ("fetch", lambda tmp: ["fetch", "swin-t-k400", "--offline"], 1),
    ("tag", lambda tmp: ((tmp / "a.mp4").write_bytes(b"x"), ["tag", str(tmp / "a.mp4"), "-m", "swin-t-k400", "--offline"])[1], 1),
    ("eval", lambda tmp: ((tmp / "val.txt").write_text("a.mp4 0\n"), ["eval", "--dataset", str(tmp / "val.txt"), "-m", "swin-t-k400", "--offline"])[1], 1),
    ("models", lambda tmp: ["models", "-q"], 0),
    ("models", lambda tmp: (_damaged_manifest(tmp), ["models"])[1], 1),
    ("report", lambda tmp: ["report", str(_results(tmp, ERROR_RECORD)), "-o", str(tmp / "r.html"), "-q"], 0),
    ("report", lambda tmp: ["report", str(_results(tmp, {"no": "record"})), "-o", str(tmp / "r.html")], 1),
    ("annotate", lambda tmp: ["annotate", str(_results(tmp, ERROR_RECORD)), "-o", str(tmp / "out"), "-q"], 0),
    ("annotate", lambda tmp: ["annotate", str(_results(tmp, SEGMENT_RECORD, VIDEO_RECORD)), "-o", str(tmp / "out")], 1),
    ("export", lambda tmp: ((tmp / "junk.pth").write_text("junk"), ["export", str(tmp / "junk.pth"), "--arch", "swin-t", "-o", str(tmp / "m.onnx")])[1], 1),
    ("cache list", lambda tmp: ["cache", "list"], 0),
    ("cache rm", lambda tmp: ((tmp / "x.pth").write_text("x"), ["cache", "rm", str(tmp / "x.pth")])[1], 1),
    ("cache prune", lambda tmp: ["cache", "prune", "--dry-run"], 0),
    ("env", lambda tmp: ["env", "--json"], 0),
    ("train", lambda tmp: ((tmp / "bad.txt").write_text("only-a-path\n"), ["train", "--train-list", str(tmp / "bad.txt"), "--out-dir", str(tmp / "run"), "--arch", "swin-t"])[1], 1),
]  # fmt: skip


@pytest.mark.parametrize("command, setup, status", STATUS_CASES, ids=[f"{c} {s}" for c, _, s in STATUS_CASES])
def test_exit_status_rule(command, setup, status, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, setup(tmp_path))
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    if status == 1:
        assert result.stderr.startswith("Error: ") or "failed" in result.stderr, result.stderr


# Where each command hands over to its library: Ctrl-C there must exit 130 (tag's own is in test_faults.py).
INTERRUPTS = [
    (["fetch", "swin-t-k400"], "vswin_cli.cache.fetch"),
    (["models"], "vswin_cli.cache.entry_status"),
    (["report", "TMP/tags.jsonl"], "vswin_cli.report.write_report"),
    (["annotate", "TMP/tags.jsonl", "-o", "TMP/out"], "vswin_cli.annotate.annotate_videos"),
    (["export", "swin-t-k400", "-o", "TMP/m.onnx"], "vswin_cli.export.export_model"),
    (["cache", "list"], "vswin_cli.cache_contents.list_cache"),
    (["env"], "vswin_cli.diagnostics.collect"),
    (["train", "--train-list", "TMP/tags.jsonl", "--out-dir", "TMP/run", "--arch", "swin-t"], "vswin_cli.train.train"),
]


@pytest.mark.parametrize("args, target", INTERRUPTS, ids=[a[0] for a, _ in INTERRUPTS])
def test_ctrl_c_exits_130(args, target, tmp_path, monkeypatch):
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module), name, interrupted)
    _results(tmp_path, ERROR_RECORD)
    result = CliRunner().invoke(app, [a.replace("TMP", str(tmp_path)) for a in args])
    assert result.exit_code == 130, result.output


def test_report_without_the_videos_writes_the_page_and_says_how_to_add_players(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = _results(tmp_path, SEGMENT_RECORD, VIDEO_RECORD)
    result = CliRunner().invoke(app, ["report", str(results), "-o", str(tmp_path / "r.html"), "--no-thumbnails"])
    assert result.exit_code == 0 and (tmp_path / "r.html").exists(), result.output  # the labels are all there
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert "1 tagged video(s) not found" in note and "--videos DIR" in note and "without a player" in note
    quiet = CliRunner().invoke(app, ["report", str(results), "-o", str(tmp_path / "r.html"), "--no-thumbnails", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    # annotate draws on the videos themselves: without them it wrote nothing, a failure (1), with the same advice
    drawn = CliRunner().invoke(app, ["annotate", str(results), "-o", str(tmp_path / "out")])
    assert drawn.exit_code == 1 and "--videos DIR" in drawn.stderr


@pytest.mark.parametrize("name", ["tag", "eval", "report", "annotate", "export", "train"])
def test_every_command_that_writes_takes_dash_o_output(name):
    """One vocabulary (issue 22): the file or folder a command writes is `-o/--output` everywhere."""
    command = ROOT.commands[name]
    names = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    assert {"-o", "--output"} <= names, sorted(names)
    output = next(param for param in command.params if "-o" in param.opts)
    assert "--output" in output.opts  # one option, not two that mean different things


def test_annotate_keeps_out_as_a_hidden_old_name(tmp_path):
    result = CliRunner().invoke(app, ["annotate", "--help"], env={"COLUMNS": "200"})
    assert "--output" in result.stdout and "--out " not in result.stdout
    results = _results(tmp_path, ERROR_RECORD)
    old = CliRunner().invoke(app, ["annotate", str(results), "--out", str(tmp_path / "a"), "-q"])
    assert old.exit_code == 0 and (tmp_path / "a").is_dir(), old.output
    both = CliRunner().invoke(app, ["annotate", str(results), "--out", str(tmp_path / "a"), "-o", str(tmp_path / "b")])
    assert both.exit_code == 2 and "two folders" in both.stderr


def test_an_unknown_arch_for_a_weights_file_is_a_usage_error(tmp_path):
    from conftest import save_tiny_model
    from test_tag_cli import make_video

    options = save_tiny_model(tmp_path / "model")
    weights = options[options.index("--weights") + 1]
    video = make_video(tmp_path / "a.mp4", 8)
    result = CliRunner().invoke(app, ["tag", str(video), "--weights", weights, "--arch", "swin-x", "--workers", "0"])
    assert result.exit_code == 2, result.output
    assert "swin-x: unknown architecture" in result.stderr.splitlines()[0] and "Hint: use --arch" in result.stderr


def test_tag_and_eval_offline_name_the_missing_files_without_the_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "val.txt").write_text("a.mp4 0\n")
    for args in (["tag", "a.mp4"], ["eval", "--dataset", "val.txt"]):
        result = CliRunner().invoke(app, [*args, "-m", "swin-t-k400", "--offline"])
        assert result.exit_code == 1, result.output
        assert "offline mode" in result.stderr and "not in the cache" in result.stderr and "--from" in result.stderr
