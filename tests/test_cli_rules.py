"""Issue 22, one vocabulary across the commands: help texts keep their brackets, every usage error is
`Error:`/`Hint:` with exit status 2 (never Typer's box), and usage errors answer before PyTorch loads.
"""

from __future__ import annotations

import re

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
