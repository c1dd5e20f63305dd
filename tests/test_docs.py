"""Docs stay in step with the CLI: every command has --help and a README section, and the CHANGELOG is
in Keep a Changelog form."""

import re

import pytest
from typer.testing import CliRunner

from conftest import REPO
from vswin_cli.app import app

README = (REPO / "README.md").read_text(encoding="utf-8")


def _leaf_commands(group=None, prefix=()):
    """{"tag": click command, ..., "cache list": ...}: every command that runs, sub-commands included."""
    import typer.main

    group = group or typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(_leaf_commands(command, (*prefix, name)))
        else:
            found[" ".join((*prefix, name))] = command
    return found


LEAVES = _leaf_commands()
COMMANDS = sorted(LEAVES)


def test_the_expected_commands_are_registered():
    assert set(COMMANDS) == {"annotate", "eval", "export", "fetch", "models", "report", "tag", "train", "env",
                             "cache list", "cache rm", "cache prune"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_a_readme_section(command):
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert f"vswin {command}" in README, f"README never shows `vswin {command}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_long_option_of_a_command_is_in_the_readme(command):
    click_cmd = LEAVES[command]
    options = {opt for param in click_cmd.params for opt in param.opts if opt.startswith("--")}
    missing = sorted(opt for opt in options - {"--help"} if opt not in README)
    assert not missing, f"`vswin {command}` options missing from README.md: {missing}"


def test_readme_opens_with_the_two_setup_commands():
    setup = README.split("## Commands")[0]
    assert "vswin tag" in setup and "pytest" in setup
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci and "pytest" in ci


def test_changelog_has_an_unreleased_section_first():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert versions and versions[0] == "Unreleased"
    assert "### Added" in text
