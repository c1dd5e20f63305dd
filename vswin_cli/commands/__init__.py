"""One module per `vswin` subcommand; each is a thin Typer function registered in `vswin_cli/app.py`."""
