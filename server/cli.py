"""Server-side `quarry` commands: serve, worker, migrate, dev, admin bootstrap.

The client package's CLI discovers `register` through the `quarry.commands` entry point, so these
commands appear only when the server package is installed. Heavy imports happen inside the commands.
Configuration problems print one line naming the variable and exit with status 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.model.errors import ConfigError

if TYPE_CHECKING:  # settings load pydantic and the domain: only a command that runs needs them, not `quarry --help`
    from server.settings import Settings

EXIT_CONFIG = 2


def _run(main: Callable[[Settings], Coroutine[Any, Any, Any]], **overrides: object) -> None:
    from server.settings import load_settings

    try:
        settings = load_settings(**overrides)
        from server.logs import configure_logging

        configure_logging(settings.log_level, settings.log_format)
        asyncio.run(main(settings))
    except ConfigError as exc:
        print(f"quarry: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


async def _serve(settings: Settings) -> None:
    # Imported once the settings are good: a configuration error answers before grpc, pyarrow and aioboto3 load.
    from server.app import serve

    await serve(settings)


async def _work(settings: Settings) -> None:
    from workers.worker import run

    await run(settings)


def run_server_command() -> None:
    """Run the gRPC server until a signal."""
    _run(_serve)


def run_worker_command() -> None:
    """Run a worker until a signal."""
    _run(_work)


async def _migrate(settings: Settings) -> None:
    from server.storage import db
    from server.storage.migrate import migrate

    connection = await db.connect(settings.database_url, settings.startup_timeout_seconds)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()
    print(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}")


async def _bootstrap(settings: Settings, principal: str, credentials_file: Path | None) -> None:
    from server.bootstrap import bootstrap_operator, credentials_text, write_credentials
    from server.model.errors import FailedPrecondition

    try:
        issued = await bootstrap_operator(settings, principal)
    except FailedPrecondition as exc:
        print(f"quarry: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    if credentials_file is not None:
        write_credentials(credentials_file, credentials_text(
            issued.secret, f"Quarry credentials: operator token {issued.record.name} of principal {principal}"))
        print(f"wrote the operator token {issued.record.name} to {credentials_file} (mode 0600)", file=sys.stderr)
    else:
        print(issued.secret)
        print(f"operator token {issued.record.name} for {principal}: shown once, keep it secret; use it as "
              "QUARRY_TOKEN or in a credentials file", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add the server-side commands to the `quarry` CLI."""
    admin = typer.Typer(help="Administer a deployment (configured by QUARRY_* variables).", no_args_is_help=True)
    app.add_typer(admin, name="admin", rich_help_panel="Server")

    @admin.command("bootstrap")
    def bootstrap_command(
        principal: Annotated[str, typer.Option(help="Name of the operator the token belongs to")] = "operator",
        credentials_file: Annotated[Path | None, typer.Option(
            "--credentials-file", help="Write the token to this file (mode 0600) instead of printing it")] = None,
    ) -> None:
        """Issue the first operator token of an empty database (refused once a live operator token exists).

        Also creates the default namespace (QUARRY_DEFAULT_NAMESPACE) if it does not exist. The token is printed
        once on stdout."""
        _run(lambda settings: _bootstrap(settings, principal, credentials_file))

    @app.command(rich_help_panel="Server")
    def serve() -> None:
        """Run the gRPC server (configured by QUARRY_* variables)."""
        run_server_command()

    @app.command(rich_help_panel="Server")
    def worker() -> None:
        """Run a background worker (configured by QUARRY_* variables)."""
        run_worker_command()

    @app.command(rich_help_panel="Server")
    def migrate() -> None:
        """Apply pending database migrations and exit."""
        _run(_migrate)

    @app.command(rich_help_panel="Server")
    def dev(
        data_dir: Annotated[Path | None, typer.Option(help="Data directory [env QUARRY_DATA_DIR; default .quarry]")]
        = None,
        address: Annotated[str | None, typer.Option(help="gRPC address [env QUARRY_GRPC_ADDRESS]")] = None,
    ) -> None:
        """Run the whole system on this machine: Postgres, Redis, a local store, the server and a worker."""
        try:
            from server.embedded import run_dev
        except ImportError as exc:
            print(f"quarry: `quarry dev` needs the embedded extra: pip install 'quarry-server[embedded]' ({exc})",
                  file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None

        from server.settings import load_settings

        overrides: dict[str, object] = {}
        if data_dir is not None:
            overrides["data_dir"] = data_dir
        if address is not None:
            overrides["grpc_address"] = address
        try:
            settings = load_settings(**overrides)
            code = run_dev(settings)
        except ConfigError as exc:
            print(f"quarry: {exc}", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG) from None
        except RuntimeError as exc:  # an embedded server would not start; its log tail is in the message
            print(f"quarry: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        raise SystemExit(code)
