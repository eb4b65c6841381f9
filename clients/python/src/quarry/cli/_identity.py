"""`quarry tokens create|ls|revoke`, `quarry namespaces create|ls|show|set`, `quarry audit ls`."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from quarry import Client, UsageError
from quarry._admin import parse_duration
from quarry.cli._options import JsonOpt, session_of
from quarry.cli._output import Output, reported, run, size, timestamp, to_dict

__all__ = ["register"]

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15, "kib": 2**10, "mib": 2**20, "gib": 2**30,
               "tib": 2**40, "pib": 2**50, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
ROLE_NAMES = {1: "reader", 2: "writer", 3: "admin"}


def parse_size(text: str) -> int:
    """Bytes in `100GB`, `5GiB`, `1000000` ...; UsageError otherwise."""
    match = _SIZE.match(text.strip())
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(f"invalid size {text!r}: use a number of bytes, optionally with kB, MB, GB, TB or KiB, "
                         "MiB, GiB, TiB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def _grants(pairs: list[str]) -> list[tuple[str, str]]:
    grants = []
    for pair in pairs:
        namespace, sep, role = pair.partition("=")
        if not sep or not namespace or not role:
            raise UsageError(f"invalid grant {pair!r}: expected NAMESPACE=ROLE (reader, writer or admin)")
        grants.append((namespace, role))
    return grants


def _token_row(token: Any) -> list[Any]:
    grants = ", ".join(f"{g.namespace.removeprefix('namespaces/')}={ROLE_NAMES.get(g.role, '?')}" for g in token.grants)
    return [token.name.removeprefix("tokens/"), token.principal, "operator" if token.operator else grants,
            timestamp(token.expire_time) or "never", timestamp(token.last_use_time) or "-",
            timestamp(token.revoke_time) or "-"]


def _when(text: str) -> datetime:
    """An RFC 3339 time, or a duration ago (`1d`: a day ago)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    return moment if moment.tzinfo else moment.astimezone()


def _quota(max_bytes: str | None, max_open_uploads: int | None, max_datasets: int | None,
           requests_per_second: float | None) -> dict[str, Any]:
    return {"max_bytes": parse_size(max_bytes) if max_bytes is not None else None,
            "max_open_uploads": max_open_uploads, "max_datasets": max_datasets,
            "requests_per_second": requests_per_second}


MaxBytes = Annotated[str | None, typer.Option("--max-bytes", help="most bytes stored (e.g. 100GB); 0: no limit")]
MaxOpen = Annotated[int | None, typer.Option("--max-open-uploads", help="most open uploads; 0: the server's")]
MaxDatasets = Annotated[int | None, typer.Option("--max-datasets", help="most datasets; 0: no limit")]
Rate = Annotated[float | None, typer.Option("--requests-per-second", help="calls per second per token; 0: no limit")]


def _namespace_fields(out: Output, namespace: Any) -> None:
    quota, usage = namespace.quota, namespace.usage

    def limit(value: float, shown: str) -> str:
        return shown if value else "none"

    out.fields([("name", namespace.name),
                ("max bytes", limit(quota.max_bytes, size(quota.max_bytes))),
                ("max open uploads", limit(quota.max_open_uploads, str(quota.max_open_uploads))),
                ("max datasets", limit(quota.max_datasets, str(quota.max_datasets))),
                ("requests per second", limit(quota.requests_per_second, f"{quota.requests_per_second:g}")),
                ("stored", size(usage.stored_bytes)), ("open uploads", usage.open_uploads),
                ("datasets", usage.datasets), ("created", timestamp(namespace.create_time)),
                ("etag", namespace.etag)])


def register(app: typer.Typer) -> None:
    """Add the token, namespace and audit commands."""
    _tokens(app)
    _namespaces(app)
    _audit(app)


def _tokens(app: typer.Typer) -> None:
    tokens = typer.Typer(help="Issue, list and revoke tokens (admins of their namespaces, operators).",
                         no_args_is_help=True)
    app.add_typer(tokens, name="tokens", rich_help_panel="Access")

    @tokens.command("create")
    def create(ctx: typer.Context, json: JsonOpt = False,
               name: Annotated[str, typer.Option("--name", help="who the token is for (its principal)")] = "",
               grant: Annotated[list[str] | None, typer.Option(
                   "--grant", "-g", help="NAMESPACE=ROLE, role reader, writer or admin (repeatable; the first is "
                                         "where calls act by default)")] = None,
               expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 30d, 12h (default: never)")] = None,
               operator: Annotated[bool, typer.Option("--operator", help="an operator token (operators only)")] = False,
               ) -> None:
        """Issue a token; prints its secret (on stdout, once: Quarry keeps only a hash)."""
        out = Output(json)
        with reported(out):
            if not name:
                raise UsageError("give the token's principal with --name")
            grants = _grants(grant or [])
            lifetime = parse_duration(expires) if expires else None

        def command(client: Client) -> None:
            issued = client.create_token(name, grants, operator=operator, expires=lifetime)
            if json:
                out.data({"token": to_dict(issued.token), "secret": issued.secret})
                return
            print(issued.secret)
            print(f"issued {issued.token.name} for {name}: the secret above is shown once; use it as "
                  "QUARRY_TOKEN or --token", file=sys.stderr)

        run(session_of(ctx), out, command)

    @tokens.command("ls")
    def ls(ctx: typer.Context, json: JsonOpt = False,
           namespace: Annotated[str | None, typer.Option(help="whose tokens (default: the client's namespace)")] = None,
           all: Annotated[bool, typer.Option("--all", help="every token (operators)")] = False,
           revoked: Annotated[bool, typer.Option("--revoked", help="include revoked tokens")] = False) -> None:
        """List the tokens with a grant on a namespace (never their secrets)."""
        out = Output(json)

        def command(client: Client) -> None:
            found = list(client.list_tokens(namespace=namespace, every=all, show_revoked=revoked))
            if json:
                out.data([to_dict(t) for t in found])
            else:
                out.table(["ID", "PRINCIPAL", "GRANTS", "EXPIRES", "LAST USED", "REVOKED"],
                          [_token_row(t) for t in found], empty="no tokens")

        run(session_of(ctx), out, command)

    @tokens.command("revoke")
    def revoke(ctx: typer.Context, token: Annotated[str, typer.Argument(help="the token's id (or tokens/ID)")],
               json: JsonOpt = False) -> None:
        """Revoke a token: every server refuses it within a second."""
        out = Output(json)

        def command(client: Client) -> None:
            revoked = client.revoke_token(token)
            if json:
                out.data(to_dict(revoked))
            else:
                out.note(f"revoked {revoked.name} ({revoked.principal})")

        run(session_of(ctx), out, command)


def _namespaces(app: typer.Typer) -> None:
    namespaces = typer.Typer(help="Create namespaces and set their quotas (operators); list and show them.",
                             no_args_is_help=True)
    app.add_typer(namespaces, name="namespaces", rich_help_panel="Access")

    @namespaces.command("create")
    def create(ctx: typer.Context, name: str, json: JsonOpt = False, max_bytes: MaxBytes = None,
               max_open_uploads: MaxOpen = None, max_datasets: MaxDatasets = None,
               requests_per_second: Rate = None) -> None:
        """Create a namespace (operators), optionally with quotas."""
        out = Output(json)
        with reported(out):
            quota = {k: v for k, v in _quota(max_bytes, max_open_uploads, max_datasets, requests_per_second).items()
                     if v is not None}

        def command(client: Client) -> None:
            made = client.create_namespace(name, **quota)
            if json:
                out.data(to_dict(made))
            else:
                out.note(f"created {made.name}")

        run(session_of(ctx), out, command)

    @namespaces.command("ls")
    def ls(ctx: typer.Context, json: JsonOpt = False) -> None:
        """List the namespaces your token is granted (all of them, for an operator)."""
        out = Output(json)

        def command(client: Client) -> None:
            found = list(client.list_namespaces())
            if json:
                out.data([to_dict(n) for n in found])
                return
            out.table(["NAME", "MAX BYTES", "MAX OPEN UPLOADS", "MAX DATASETS", "REQUESTS/S", "CREATED"],
                      [[n.name.removeprefix("namespaces/"), size(n.quota.max_bytes) if n.quota.max_bytes else "-",
                        n.quota.max_open_uploads or "-", n.quota.max_datasets or "-",
                        f"{n.quota.requests_per_second:g}" if n.quota.requests_per_second else "-",
                        timestamp(n.create_time)] for n in found], empty="no namespaces")

        run(session_of(ctx), out, command)

    @namespaces.command("show")
    def show(ctx: typer.Context, name: Annotated[str | None, typer.Argument(help="default: the client's")] = None,
             json: JsonOpt = False) -> None:
        """Show a namespace: its quotas and what it holds."""
        out = Output(json)

        def command(client: Client) -> None:
            found = client.get_namespace(name)
            if json:
                out.data(to_dict(found))
            else:
                _namespace_fields(out, found)

        run(session_of(ctx), out, command)

    @namespaces.command("set")
    def set_(ctx: typer.Context, name: str, json: JsonOpt = False, max_bytes: MaxBytes = None,
             max_open_uploads: MaxOpen = None, max_datasets: MaxDatasets = None, requests_per_second: Rate = None,
             etag: Annotated[str, typer.Option(help="only if the namespace still has this etag")] = "") -> None:
        """Set a namespace's quotas (operators); 0 removes a limit."""
        out = Output(json)
        with reported(out):
            quota = _quota(max_bytes, max_open_uploads, max_datasets, requests_per_second)

        def command(client: Client) -> None:
            updated = client.update_namespace(name, etag=etag, **quota)
            if json:
                out.data(to_dict(updated))
            else:
                _namespace_fields(out, client.get_namespace(updated.name))

        run(session_of(ctx), out, command)


def _audit(app: typer.Typer) -> None:
    audit = typer.Typer(help="Read the audit trail (admins of a namespace, operators).", no_args_is_help=True)
    app.add_typer(audit, name="audit", rich_help_panel="Access")

    @audit.command("ls")
    def ls(ctx: typer.Context, json: JsonOpt = False,
           namespace: Annotated[str | None, typer.Option(help="whose trail (default: the client's namespace)")] = None,
           all: Annotated[bool, typer.Option("--all", help="every namespace's (operators)")] = False,
           principal: Annotated[str | None, typer.Option(help="only this principal's calls")] = None,
           method: Annotated[str | None, typer.Option(help="only this method's calls, e.g. DeleteDataset")] = None,
           since: Annotated[str | None, typer.Option(help="from this time (RFC 3339) or this long ago (e.g. 1d)")]
           = None,
           filter: Annotated[str, typer.Option(help='a filter, e.g. `event_time < "2025-01-31T00:00:00Z"`')] = "",
           limit: Annotated[int, typer.Option(help="at most this many events")] = 100) -> None:
        """List audit events, newest first."""
        out = Output(json)
        with reported(out):
            start = _when(since) if since else None

        def command(client: Client) -> None:
            found = []
            for event in client.list_audit_events(namespace=namespace, every=all, filter=filter, principal=principal,
                                                  method=method, since=start, page_size=min(limit, 1000)):
                found.append(event)
                if len(found) >= limit:
                    break
            if json:
                out.data([to_dict(e) for e in found])
                return
            out.table(["TIME", "PRINCIPAL", "NAMESPACE", "METHOD", "RESOURCE", "CODE", "REASON"],
                      [[timestamp(e.event_time), e.principal or "-", e.namespace, e.method.rsplit("/", 1)[-1],
                        e.resource, e.code, e.reason] for e in found], empty="no events")

        run(session_of(ctx), out, command)
