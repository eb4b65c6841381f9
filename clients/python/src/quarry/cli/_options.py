"""Options shared by the client commands, and the session the global options make."""

from __future__ import annotations

from typing import Annotated

import typer

from quarry import RetryPolicy
from quarry.cli._output import Session

__all__ = ["EPILOG", "JsonOpt", "add_global_options", "session_of"]

EPILOG = ("Exit codes: 0 ok, 1 error from the server, 2 usage or configuration, 3 cannot reach the server, "
          "4 deadline passed, 5 upload or version FAILED or download did not verify, 130 interrupted.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def session_of(ctx: typer.Context) -> Session:
    """The Session the global options made (a default one when the app has no callback, e.g. in tests)."""
    return ctx.obj if isinstance(ctx.obj, Session) else Session()


def add_global_options(app: typer.Typer) -> None:
    """`--address`, `--namespace`, `--token`, the TLS files, `--timeout` and `--retry-for` before the command."""

    @app.callback()
    def options(ctx: typer.Context,
                address: Annotated[str | None, typer.Option(
                    "--address", "-a", show_default=False,
                    help="host:port of the server, grpcs://host:port for TLS (env QUARRY_ADDRESS; default "
                         "127.0.0.1:50051)")] = None,
                namespace: Annotated[str | None, typer.Option(
                    "--namespace", "-n", show_default=False,
                    help="namespace to act in (env QUARRY_NAMESPACE; default: default)")] = None,
                token: Annotated[str | None, typer.Option(
                    "--token", show_default=False,
                    help="token to call with (env QUARRY_TOKEN; default: the credentials file, QUARRY_CREDENTIALS "
                         "or ~/.config/quarry/credentials)")] = None,
                ca_file: Annotated[str | None, typer.Option(
                    "--ca-file", show_default=False,
                    help="PEM CA to trust for TLS (env QUARRY_CA_FILE; implies TLS)")] = None,
                cert_file: Annotated[str | None, typer.Option(
                    "--cert-file", show_default=False,
                    help="PEM client certificate, for servers that require one (env QUARRY_CERT_FILE)")] = None,
                key_file: Annotated[str | None, typer.Option(
                    "--key-file", show_default=False, help="PEM key of --cert-file (env QUARRY_KEY_FILE)")] = None,
                timeout: Annotated[float, typer.Option(help="deadline of each call, in seconds")] = 30.0,
                retry_for: Annotated[float, typer.Option(
                    "--retry-for", help="seconds to keep retrying while the server cannot answer (a restart, a "
                                        "database outage); 0: try once")] = RetryPolicy.max_total) -> None:
        """Options of every client command."""
        ctx.obj = Session(address, namespace, timeout, retry_for, token=token, ca_file=ca_file, cert_file=cert_file,
                          key_file=key_file)
