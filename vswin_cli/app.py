"""The `vswin` command line: a Typer app whose commands live in `vswin_cli/commands/`.

`_ErrorBoundary.invoke` is the only error boundary: a `VswinError` (or `models.CheckpointError`) is
printed as `Error: ...` plus a hint on stderr and exits 1; usage errors exit 2 (Typer/Click); anything
else is a bug and keeps its traceback. `VSWIN_DEBUG=1` re-raises vswin errors with their traceback.
"""

from __future__ import annotations

import os
import sys

import typer
import typer.core

from vswin_cli import __version__
from vswin_cli.commands import eval as eval_command
from vswin_cli.commands import export as export_command
from vswin_cli.commands import fetch as fetch_command
from vswin_cli.commands import tag as tag_command
from vswin_cli.commands import train as train_command
from vswin_cli.errors import VswinError


class _ErrorBoundary(typer.core.TyperGroup):
    """Turns the library's own errors into `Error: ...` / `Hint: ...` on stderr and exit status 1."""

    def invoke(self, ctx):
        from models import CheckpointError

        try:
            return super().invoke(ctx)
        except (VswinError, CheckpointError) as err:
            if os.environ.get("VSWIN_DEBUG") == "1":
                raise
            _print_error(err)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="vswin",
    cls=_ErrorBoundary,
    help="Tag and classify videos with the Video Swin Transformer (exact to the published checkpoints).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vswin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Tag and classify videos with the Video Swin Transformer."""


# One line per command; a command that is not built yet is not listed.
app.command("tag")(tag_command.tag)
app.command("eval")(eval_command.eval)
app.command("train")(train_command.train)
app.command("fetch")(fetch_command.fetch)
app.command("models")(fetch_command.models)
app.command("export")(export_command.export)


def main() -> None:
    """Console-script entry point (also `python -m vswin_cli`, which torchrun runs)."""
    try:
        app()
    except SystemExit as exit_:
        dist = sys.modules.get("torch.distributed")  # never imported: no process group (and --help stays fast)
        if dist is not None and dist.is_available() and dist.is_initialized():
            from vswin_cli.train import exit_distributed

            code = exit_.code
            exit_distributed(code if isinstance(code, int) else (0 if code is None else 1))
        raise


def _print_error(err: Exception) -> None:
    sys.stderr.write(f"Error: {err}\n")
    hint = getattr(err, "hint", None)
    if hint:
        sys.stderr.write(f"Hint: {hint}\n")
