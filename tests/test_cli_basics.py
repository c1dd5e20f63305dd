"""The CLI entry point itself: help, version, and the error boundary."""

import subprocess
import sys

from typer.testing import CliRunner

from vswin_cli import __version__
from vswin_cli.app import app


def test_module_help_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "vswin_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Video Swin" in out.stdout


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_unknown_command_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "vswin_cli", "no-such-command"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stdout == ""
