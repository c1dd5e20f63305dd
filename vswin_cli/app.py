"""The `vswin` command line: a Typer app whose commands live in `vswin_cli/commands/`.

`_ErrorBoundary` is the only error boundary: a `VswinError` (or `models.CheckpointError`) is printed as
`Error: ...` plus a hint on stderr and exits 1; usage errors (`UsageError`, and Click's own: a missing
argument, an unknown option, a bad value) are printed the same way, never in Typer's box, and exit 2; a
file-system error (full disk, read-only, permission) is named with its path and exits 1. Ctrl-C exits
130. Anything else is a bug and keeps its traceback. `VSWIN_DEBUG=1` re-raises with the traceback.

Start-up stays fast: the command modules import neither torch nor PyAV at import time (a test checks
it), so `--help`, `--version` and usage errors answer at once.
"""

from __future__ import annotations

import os
import sys

import typer
import typer.core

try:  # Typer 0.2x carries its own copy of Click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError as ClickUsageError
except ImportError:
    from click.exceptions import NoArgsIsHelpError, UsageError as ClickUsageError

from vswin_cli import __version__
from vswin_cli.commands import cache as cache_command
from vswin_cli.commands import env as env_command
from vswin_cli.commands import eval as eval_command
from vswin_cli.commands import export as export_command
from vswin_cli.commands import fetch as fetch_command
from vswin_cli.commands import report as report_command
from vswin_cli.commands import tag as tag_command
from vswin_cli.commands import train as train_command
from vswin_cli.errors import UsageError, VswinError, from_checkpoint_error


# Typer prints a `<bool>` metavar beside every flag in --help (so `--quiet true` looks right, and then
# reads "true" as a video); a flag takes no value, so it gets none.
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)


# Help texts are plain text: Rich markup would eat `[cpu]` in `pip install 'vswin[cpu]'`. Typer loads its
# Rich help code (half a second) only to print help, so the parser is swapped for a literal one then.
def _literal_help(format_help):
    def format_literal_help(self, ctx, formatter):
        import inspect

        from rich.text import Text
        from typer import rich_utils

        def literal_text(*, text, style="", markup_mode):
            return rich_utils.highlighter(Text(inspect.cleandoc(text), style=style))

        rich_utils._make_rich_text = literal_text
        return format_help(self, ctx, formatter)

    return format_literal_help


typer.core.TyperCommand.format_help = _literal_help(typer.core.TyperCommand.format_help)
typer.core.TyperGroup.format_help = _literal_help(typer.core.TyperGroup.format_help)


class _ErrorBoundary(typer.core.TyperGroup):
    """Turns the library's own errors and Click's usage errors into `Error: ...` / `Hint: ...` on stderr
    with exit status 1 (a failure) or 2 (a usage error)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the root's own options (`vswin --bogus`)
            return super().make_context(info_name, args, parent=parent, **extra)
        except ClickUsageError as err:
            _exit_usage_error(err)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClickUsageError as err:  # a subcommand's arguments, or an unknown command
            _exit_usage_error(err)
        except Exception as err:
            checkpoint_error = getattr(sys.modules.get("models.checkpoint"), "CheckpointError", ())
            if os.environ.get("VSWIN_DEBUG") == "1" or not isinstance(err, (VswinError, OSError, checkpoint_error)):
                raise
            if isinstance(err, OSError):
                err = _file_error(err)
            elif not isinstance(err, VswinError):  # models.CheckpointError: its hint is Python advice
                err = from_checkpoint_error(err)
            if isinstance(err, UsageError) and not err.hint:  # every usage error says where to look
                err.hint = f"see `{' '.join(filter(None, ['vswin', ctx.invoked_subcommand]))} --help`"
            _print_error(err)
            raise typer.Exit(2 if isinstance(err, UsageError) else 1) from None


app = typer.Typer(
    name="vswin",
    cls=_ErrorBoundary,
    help="Tag and classify videos with the Video Swin Transformer (exact to the published checkpoints).",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
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
app.command("report")(report_command.report)
app.command("annotate")(report_command.annotate)
app.command("export")(export_command.export)
app.add_typer(cache_command.app, name="cache")
app.command("env")(env_command.env)


def main() -> None:
    """Console-script entry point (also `python -m vswin_cli`, which torchrun runs)."""
    try:
        app()
    except SystemExit as exit_:
        dist = sys.modules.get("torch.distributed")  # never imported: no process group (and --help stays fast)
        if dist is not None and dist.is_available() and dist.is_initialized():
            from vswin_cli.distributed import exit_distributed

            code = exit_.code
            exit_distributed(code if isinstance(code, int) else (0 if code is None else 1))
        raise


def _print_error(err: Exception) -> None:
    sys.stderr.write(f"Error: {err}\n")
    hint = getattr(err, "hint", None)
    if hint:
        sys.stderr.write(f"Hint: {hint}\n")


def _exit_usage_error(err: ClickUsageError) -> None:
    """Click's message ("No such option: -o", "Missing argument 'RESULTS'.") and where to look; exit 2.
    `vswin` alone (or `vswin cache`) prints the help as Click does."""
    if isinstance(err, NoArgsIsHelpError) or os.environ.get("VSWIN_DEBUG") == "1":
        raise err
    words, ctx = [], err.ctx
    while ctx is not None and ctx.parent is not None:  # the root's own name is how it was started: say `vswin`
        words.insert(0, ctx.info_name)
        ctx = ctx.parent
    _print_error(UsageError(err.format_message().rstrip("."), hint=f"see `{' '.join(['vswin', *words])} --help`"))
    raise typer.Exit(2) from None


def _file_error(err: OSError) -> VswinError:
    """A file-system error in words: which file, why, and what to do."""
    import errno

    where = f"{err.filename}: " if err.filename else ""
    hints = {
        errno.ENOSPC: "free some space (or write elsewhere); with -o FILE --resume the finished videos are kept",
        errno.EROFS: "the file system is read-only: write the output somewhere else",
        errno.EACCES: "no permission: choose another folder, or fix its permissions",
        errno.EPERM: "no permission: choose another folder, or fix its permissions",
        errno.ENAMETOOLONG: "choose a shorter file name",
        errno.EISDIR: "give a file name, not a folder",
        errno.ENOENT: "check the path",
    }
    return VswinError(f"{where}{err.strerror or err}", hints.get(err.errno, "check the path and the disk"))
