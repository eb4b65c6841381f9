"""How the CLI talks back: tables for people, JSON for scripts, one-line errors and stable exit codes.

Exit codes:
    0    success
    1    the server refused or failed the request (the line shows its status code)
    2    usage or configuration error: bad arguments, a missing file, a bad manifest
    3    the server could not be reached
    4    a deadline passed (the call, or a --wait, took too long)
    5    the data is not right: an upload or version ended FAILED, a download did not verify
    130  interrupted (Ctrl-C); an interrupted upload or download resumes when run again
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, NoReturn

from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from quarry import (
    Client,
    ConnectError,
    DeadlineExceeded,
    IntegrityError,
    MissingDependency,
    QuarryError,
    RetryPolicy,
    RpcError,
    UploadFailed,
    tune_allocator,
)
from quarry._transport import translated

__all__ = ["EXIT_FAILED", "EXIT_SERVER", "EXIT_TIMEOUT", "EXIT_UNREACHABLE", "EXIT_USAGE", "Output", "Session"]

EXIT_SERVER = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_FAILED = 5
EXIT_INTERRUPTED = 130


def to_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as JSON-ready data with the proto's field names."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def enum_name(message: Any, field_name: str, prefix: str = "") -> str:
    """The name of an enum field's value, without its type prefix (e.g. "STAGED")."""
    descriptor = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    return str(descriptor.values_by_number[getattr(message, field_name)].name).removeprefix(prefix)


def timestamp(value: Any) -> str:
    """A Timestamp as local ISO time to the second, or "" when unset."""
    if not value.seconds and not value.nanos:
        return ""
    return value.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def size(nbytes: int) -> str:
    """Bytes for people: 1.2 GB."""
    amount = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{nbytes} B"


def exit_code(error: BaseException) -> int:
    """The exit code of an error (see the module docstring)."""
    if isinstance(error, ConnectError):
        return EXIT_UNREACHABLE
    if isinstance(error, DeadlineExceeded):
        return EXIT_TIMEOUT
    if isinstance(error, RpcError):
        return EXIT_SERVER
    if isinstance(error, UploadFailed | IntegrityError):
        return EXIT_FAILED
    return EXIT_USAGE


def error_line(error: BaseException) -> str:
    """The one line printed for an error: `CODE: message` for a status, else the message."""
    return " ".join(_error_text(error).split())


def _error_text(error: BaseException) -> str:
    if isinstance(error, ConnectError):
        return f"{error.code.name}: cannot reach the server: {error.message}"
    if isinstance(error, RpcError):
        return f"{error.code.name}: {error.message}"
    if isinstance(error, OSError):
        return f"{error.filename}: {error.strerror}" if error.filename else str(error)
    return str(error)


def error_data(error: BaseException) -> dict[str, Any]:
    """The error as JSON for --json output."""
    data: dict[str, Any] = {"message": str(getattr(error, "message", error)), "exit_code": exit_code(error)}
    if isinstance(error, RpcError):
        data.update(code=error.code.name, reason=error.reason, metadata=error.metadata)
    else:
        data.update(code=type(error).__name__)
    return data


@dataclass
class Output:
    """Where a command writes: stdout for results (tables or JSON), stderr for errors and progress."""

    json: bool = False
    # Piped output is for grep and awk: no wrapping at 80 columns.
    out: Console = field(default_factory=lambda: Console(soft_wrap=True, width=None if sys.stdout.isatty() else 4096))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    def data(self, value: Any) -> None:
        """Print JSON (for scripts)."""
        print(json.dumps(value, indent=2, sort_keys=False, default=str))

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "nothing to show") -> None:
        """Print a table (for people)."""
        if not rows:
            self.err.print(f"[dim]{empty}[/dim]")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        self.out.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """Print `name: value` lines (for people)."""
        width = max(len(name) for name, _ in pairs)
        for name, value in pairs:
            self.out.print(f"[bold]{name.ljust(width)}[/bold]  {value}", highlight=False)

    def note(self, text: str) -> None:
        """A line for people on stdout (not printed with --json)."""
        if not self.json:
            self.out.print(text, highlight=False)

    def fail(self, error: BaseException) -> NoReturn:
        """Print the error in one line (and as JSON with --json) and exit with its code."""
        print(f"quarry: {error_line(error)}", file=sys.stderr)
        if self.json:
            self.data({"error": error_data(error)})
        raise SystemExit(exit_code(error))


@dataclass
class Session:
    """What every client command gets from the global options."""

    address: str | None = None
    namespace: str | None = None
    timeout: float = 30.0
    retry_for: float = RetryPolicy.max_total
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def client(self) -> Client:
        """A Client configured from the options and QUARRY_* variables (in a process whose allocator is tuned
        for transfers: client commands move large files; server commands never come here)."""
        tune_allocator()
        return Client(self.address, namespace=self.namespace, token=self.token, ca_file=self.ca_file,
                      cert_file=self.cert_file, key_file=self.key_file, timeout=self.timeout,
                      retry=RetryPolicy(max_total=self.retry_for))


@contextmanager
def reported(output: Output) -> Iterator[None]:
    """Turn any error of a command into one line on stderr and an exit code: never a traceback."""
    try:
        with translated():  # the SDK translates grpc's errors; should one slip through, still no traceback
            yield
    except (QuarryError, OSError, MissingDependency) as error:
        output.fail(error)
    except KeyboardInterrupt:
        print("quarry: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


def run(session: Session, output: Output, command: Callable[[Client], None]) -> None:
    """Run a command with a client, reporting errors the CLI way."""
    with reported(output):
        client = session.client()
        try:
            command(client)
        finally:
            client.close()

