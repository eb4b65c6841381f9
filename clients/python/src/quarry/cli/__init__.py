"""The `quarry` command. Server-side commands join it through the `quarry.commands` entry point group."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from quarry.cli import _datasets, _files, _identity, _uploads
from quarry.cli._options import EPILOG, add_global_options

__all__ = ["build_app", "main"]


def build_app() -> typer.Typer:
    """The CLI application with the client commands and every installed command group."""
    app = typer.Typer(name="quarry", no_args_is_help=True, add_completion=False,
                      help="Quarry: a dataset store you stream files into.", epilog=EPILOG)
    add_global_options(app)
    for module in (_datasets, _uploads, _files, _identity):
        module.register(app)
    for entry in entry_points(group="quarry.commands"):
        entry.load()(app)
    return app


def main() -> None:
    """Entry point of the `quarry` script."""
    build_app()()
