"""Advice that works: every `vswin ...` command quoted in the source names a command that exists, with
options that command has; and error messages of the modules every command shares (cache, download)
never name an option bare, since e.g. `--from` exists only in `vswin fetch`, not in `vswin tag`.

Strings are read from the source with `ast`, so a new message is checked without being listed here.
"""

from __future__ import annotations

import ast
import re

import pytest
import typer.main

from conftest import REPO
from vswin_cli.app import app

ROOT = typer.main.get_command(app)
SOURCES = sorted((REPO / "vswin_cli").rglob("*.py"))
SNIPPET = re.compile(r"`(vswin(?:\s[^`]*)?)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
# Modules whose errors reach several commands (tag, eval, train and fetch all fetch through them).
SHARED_MODULES = {"cache.py", "download.py"}


def _strings(path):
    """(line, text, is_message) of every string literal; f-string fields read as `X`. A message is a
    string inside a call to `...Error(...)` or passed as `hint=`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def in_message(node):
        while node in parents:
            parent = parents[node]
            if isinstance(parent, ast.keyword) and parent.arg == "hint":
                return True
            if isinstance(parent, ast.Call):
                func = parent.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name.endswith("Error"):
                    return True
            node = parent
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not isinstance(parents.get(node), ast.JoinedStr):
            text = node.value
        else:
            continue
        if not isinstance(parents.get(node), (ast.FormattedValue,)):
            yield node.lineno, text, in_message(node)


def _command(words: list[str]):
    """(click command, the words after its name) for `vswin WORDS...`; None if no such command."""
    command = ROOT
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        if words[0] not in command.commands:
            return None, words
        command, words = command.commands[words[0]], words[1:]
    return command, words


def _expand(words: list[str]) -> list[list[str]]:
    """["tag/eval", "--weights"] -> [["tag", "--weights"], ["eval", "--weights"]] (also a|b), in the command places."""
    variants = [words]
    for position in (0, 1):
        expanded = []
        for v in variants:
            if len(v) > position and not v[position].startswith("-") and re.search(r"[/|]", v[position]):
                expanded += [v[:position] + [name] + v[position + 1:] for name in re.split(r"[/|]", v[position])]
            else:
                expanded.append(v)
        variants = expanded
    return variants


def _options(command) -> set[str]:
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return options | {"--help", "-h"}


def _snippets():
    for path in SOURCES:
        for line, text, _ in _strings(path):
            for match in SNIPPET.finditer(text):
                yield f"{path.relative_to(REPO)}:{line}", match.group(1)


SNIPPETS = list(_snippets())


def test_the_source_quotes_commands():
    assert len(SNIPPETS) >= 10  # the extraction itself works (hints quote `vswin fetch ...` and others)
    assert any("vswin fetch" in s and "--from" in s for _, s in SNIPPETS)


@pytest.mark.parametrize("where, snippet", SNIPPETS, ids=[f"{w} {s}" for w, s in SNIPPETS])
def test_every_quoted_command_and_option_exists(where, snippet):
    for words in _expand(snippet.split()[1:]):
        command, rest = _command(words)
        assert command is not None, f"{where}: `{snippet}`: no such command"
        unknown = [opt for word in rest for opt in OPTION.findall(word) if opt not in _options(command)]
        assert not unknown, f"{where}: `{snippet}`: `vswin {command.name}` has no {unknown}"


def test_messages_name_only_options_that_exist():
    every_option = {opt for name, cmd in _all_commands() for opt in _options(cmd)}
    wrong = []
    for path in SOURCES:
        for line, text, is_message in _strings(path):
            bare = SNIPPET.sub("", text)
            if is_message:
                wrong += [f"{path.name}:{line}: {opt}" for opt in OPTION.findall(bare)
                          if opt.startswith("--") and opt not in every_option]
    assert not wrong, f"messages name options no command has: {wrong}"


def test_shared_modules_name_options_only_inside_a_quoted_command():
    """cache.py and download.py errors reach `vswin tag` too: `--from` alone would send a tag user to an
    option tag does not have; `vswin fetch NAME --from FILE` works from anywhere."""
    bare_options = []
    for path in SOURCES:
        if path.name not in SHARED_MODULES or path.parent.name == "commands":
            continue
        for line, text, is_message in _strings(path):
            if is_message:
                bare_options += [f"{path.name}:{line}: {opt} in {text!r}" for opt in OPTION.findall(SNIPPET.sub("", text))
                                 if opt.startswith("--")]
    assert not bare_options, bare_options


def _all_commands(group=ROOT, prefix=()):
    for name, command in group.commands.items():
        yield " ".join((*prefix, name)), command
        if hasattr(command, "commands"):
            yield from _all_commands(command, (*prefix, name))


def test_the_download_hints_name_the_entry(monkeypatch, tmp_path):
    """The downloader does not know the entry; `cache.fetch` puts its name into the advice."""
    from vswin_cli import cache, zoo
    from vswin_cli.errors import DownloadError

    def refuse(url, dest, **kwargs):
        raise DownloadError(f"{url}: connection refused", "download it elsewhere and run `vswin fetch NAME --from FILE`")

    monkeypatch.setattr(cache, "download_file", refuse)
    with pytest.raises(DownloadError) as err:
        cache.fetch("swin-t-k400", offline=False, progress=False)
    assert "`vswin fetch swin-t-k400 --from FILE`" in err.value.hint


# Python in a hint: a call `name(...)` (not "file(s)"), `**kwargs`, `obj['key']`, or a keyword `x=True`.
PYTHON_CODE = re.compile(r"\b[a-z_]+\((?!s\))|\*\*|\w\[['\"]|\b[a-z_]+=(?:True|False|None|')")


def test_the_python_pattern_finds_python():
    assert PYTHON_CODE.search("build it (VideoSwin(**checkpoint['config']))")
    assert PYTHON_CODE.search("load with drop_head=True") and PYTHON_CODE.search("use load_checkpoint(model, path)")
    assert not PYTHON_CODE.search("1 video(s) failed; run `vswin fetch NAME --from FILE` (VSWIN_OFFLINE=1)")


def test_cli_messages_and_hints_hold_no_python():
    """Issue 22: a hint names CLI options and commands, never Python a command-line user cannot type."""
    from vswin_cli.errors import CHECKPOINT_HINTS

    python = [f"{path.name}:{line}: {text!r}" for path in SOURCES for line, text, is_message in _strings(path)
              if is_message and PYTHON_CODE.search(text)]
    python += [f"CHECKPOINT_HINTS[{kind!r}]" for kind, hint in CHECKPOINT_HINTS.items() if PYTHON_CODE.search(hint)]
    assert not python, python


def test_every_python_hint_of_models_has_a_cli_hint():
    """models/ is a Python library, so its CheckpointError hints are Python; the CLI replaces each by kind."""
    from vswin_cli.errors import CHECKPOINT_HINTS

    missing = []
    for path in sorted((REPO / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "CheckpointError"):
                continue
            hint = node.args[1] if len(node.args) > 1 else None
            text = "".join(v.value for v in ast.walk(hint) if isinstance(v, ast.Constant) and isinstance(v.value, str)) if hint else ""
            kind = next((k.value.value for k in node.keywords if k.arg == "kind"), None)
            if PYTHON_CODE.search(text) and kind not in CHECKPOINT_HINTS:
                missing.append(f"{path.name}:{node.lineno}: {text!r}")
    assert not missing, missing


def test_a_vswin_checkpoint_with_the_wrong_arch_gets_a_cli_hint(tmp_path):
    import torch
    from typer.testing import CliRunner

    from conftest import TINY
    from models import VideoSwin, save_checkpoint

    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "tiny.pth", VideoSwin(**TINY), labels=[str(i) for i in range(5)])
    result = CliRunner().invoke(app, ["export", str(weights), "--arch", "swin-t", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1, result.output
    assert "different architecture" in result.stderr
    hint = next(line for line in result.stderr.splitlines() if line.startswith("Hint: "))
    assert "drop --arch" in hint and not PYTHON_CODE.search(hint), hint
