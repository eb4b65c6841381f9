"""Arrow Flight: a version's tables as record batches, for any Flight client in any language. Thin: parse the
descriptor or ticket, call the domain (`server/domain/tables.py`) on the server's event loop, convert.

    ListFlights(criteria)      the current version of each dataset of the caller's namespace (criteria: a
                               dataset name prefix), one endpoint per file
    GetFlightInfo(descriptor)  PATH [namespace, dataset, version, path?] (version: a number, a uid or
                               "latest"; path: a file, or a folder ending in "/"; none: every table), or
                               CMD {"namespace", "dataset", "version", "path", "columns"} as JSON: the
                               merged schema, total rows and bytes, one endpoint per file (a Parquet file
                               above QUARRY_FLIGHT_SPLIT_BYTES: one per run of row groups)
    DoGet(ticket)              one endpoint's batches, streamed from the store. A ticket is JSON that a
                               client may also write: {"version": ".../versions/3", "path": "a.parquet",
                               "columns": ["id"] or null, "row_groups": [0, 1] or null}

The caller is resolved from the call headers (`authorization`, `x-quarry-namespace`) by the same admission as
gRPC's (`server/domain/admission.py`), in a middleware, once per call, against the same access table; a refused
call never reaches a handler, and it (like any call refused later) is an audit row. Errors carry the same
reasons as gRPC's: the Flight status (see `flight_errors.py`)
and a `google.rpc.Status` in the error's extra info, which a gRPC client reads as `grpc-status-details-bin`.
Flight runs its own gRPC server on its own threads; each handler waits for the domain's coroutine on the
event loop, and DoGet's batches are read on Flight's thread, one at a time, as the client takes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from server import metrics
from server.api.caller import credentials
from server.api.flight_errors import flight_error, flight_errors, outcome_of
from server.domain.access import rule_for
from server.domain.admission import Admission
from server.domain.caller import Caller, CallRecord
from server.domain.tables import TablePart, TablePlan, Tables, TableStream
from server.model.errors import Internal, InvalidArgument, PermissionDenied

log = logging.getLogger(__name__)

T = TypeVar("T")
MIDDLEWARE = "caller"


FLIGHT_SERVICE = "arrow.flight.protocol.FlightService"
FLIGHT_METHODS = {
    flight.FlightMethod.HANDSHAKE: "Handshake", flight.FlightMethod.LIST_FLIGHTS: "ListFlights",
    flight.FlightMethod.GET_FLIGHT_INFO: "GetFlightInfo", flight.FlightMethod.GET_SCHEMA: "GetSchema",
    flight.FlightMethod.DO_GET: "DoGet", flight.FlightMethod.DO_PUT: "DoPut",
    flight.FlightMethod.DO_EXCHANGE: "DoExchange", flight.FlightMethod.DO_ACTION: "DoAction",
    flight.FlightMethod.LIST_ACTIONS: "ListActions",
}


def method_name(method: flight.FlightMethod) -> str:
    """The full gRPC method name of a Flight method, as the access table names it."""
    return f"/{FLIGHT_SERVICE}/{FLIGHT_METHODS.get(method, 'Unknown')}"


class CallerMiddleware(flight.ServerMiddleware):
    """Holds the caller admitted for one Flight call, and records how the call ended."""

    def __init__(self, caller: Caller | None, record: CallRecord, factory: CallerMiddlewareFactory) -> None:
        self.caller = caller
        self.record = record
        self.factory = factory

    def call_completed(self, exception: BaseException | None) -> None:
        if exception is not None:
            self.factory.conclude(self.record, exception)


class CallerMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Admits each Flight call from its headers, before any handler runs (on the server's event loop)."""

    def __init__(self, admission: Admission, loop: asyncio.AbstractEventLoop) -> None:
        self.admission = admission
        self.loop = loop

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> CallerMiddleware:
        name = method_name(info.method)
        record = CallRecord(method=name)
        pairs = [(key.lower(), value) for key, values in headers.items() for value in values]
        try:
            rule = rule_for(name)
            if rule is None:
                raise PermissionDenied(f"{name} has no access rule", reason="NO_ACCESS_RULE")
            caller = asyncio.run_coroutine_threadsafe(self.admission.admit(record, rule, credentials(pairs)),
                                                      self.loop).result()
        except Exception as exc:
            self.conclude(record, exc)
            raise flight_error(exc) from None
        return CallerMiddleware(caller, record, self)

    def conclude(self, record: CallRecord, exception: BaseException) -> None:
        """Write the audit row a failed call needs (a denied one: always)."""
        code, reason = outcome_of(exception)
        try:
            asyncio.run_coroutine_threadsafe(self.admission.conclude(record, code, reason), self.loop).result(30)
        except Exception as exc:  # the loop is stopping, or the database is away: the call's own error stands
            log.error("could not conclude a Flight call", extra={"method": record.method, "error": repr(exc)})


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument.field(field, f"must be a string, got {value!r}", reason="INVALID_DESCRIPTOR")
    return value


def _columns(value: Any, field: str, reason: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise InvalidArgument.field(field, "must be a list of column names", reason=reason)
    return tuple(value)


def descriptor_request(descriptor: flight.FlightDescriptor) -> tuple[str, str, tuple[str, ...] | None]:
    """(version resource name, path, columns) of a PATH or CMD descriptor."""
    if descriptor.descriptor_type == flight.DescriptorType.PATH:
        parts = [p.decode() if isinstance(p, bytes) else str(p) for p in descriptor.path]
        if len(parts) < 3:
            raise InvalidArgument.field("descriptor.path", "must be [namespace, dataset, version, path?]",
                                        reason="INVALID_DESCRIPTOR")
        namespace, dataset, version, path, columns = parts[0], parts[1], parts[2], "/".join(parts[3:]), None
    else:
        try:
            command = json.loads(descriptor.command)
        except (ValueError, UnicodeDecodeError):
            command = None
        if not isinstance(command, dict):
            raise InvalidArgument.field("descriptor.cmd", 'must be JSON: {"namespace": …, "dataset": …, "version": '
                                        '…, "path": …, "columns": […]}', reason="INVALID_DESCRIPTOR")
        namespace = _text(command.get("namespace"), "descriptor.cmd.namespace")
        dataset = _text(command.get("dataset"), "descriptor.cmd.dataset")
        version = _text(command.get("version", "latest"), "descriptor.cmd.version")
        path = _text(command.get("path", ""), "descriptor.cmd.path")
        columns = _columns(command.get("columns"), "descriptor.cmd.columns", "INVALID_DESCRIPTOR")
    return f"namespaces/{namespace}/datasets/{dataset}/versions/{version or 'latest'}", path, columns


def ticket_of(part: TablePart) -> flight.Ticket:
    """The ticket of one part: JSON a client can read and write."""
    return flight.Ticket(json.dumps({"version": part.version, "path": part.path,
                                     "columns": list(part.columns) if part.columns is not None else None,
                                     "row_groups": list(part.row_groups) if part.row_groups is not None else None}))


def part_of(ticket: flight.Ticket) -> TablePart:
    """The part a ticket names; INVALID_ARGUMENT (INVALID_TICKET) when it is not one of ours."""
    try:
        data = json.loads(ticket.ticket)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str) or \
            not isinstance(data.get("path"), str):
        raise InvalidArgument.field("ticket", 'must be JSON {"version": …, "path": …, "columns": …, '
                                              '"row_groups": …} as GetFlightInfo returns it', reason="INVALID_TICKET")
    groups = data.get("row_groups")
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, int) for g in groups)):
        raise InvalidArgument.field("ticket.row_groups", "must be a list of row group numbers",
                                    reason="INVALID_TICKET")
    return TablePart(data["version"], data["path"], tuple(groups) if groups is not None else None,
                     _columns(data.get("columns"), "ticket.columns", "INVALID_TICKET"), 0, 0)


def flight_info(plan: TablePlan, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
    """A plan as a FlightInfo: an endpoint per part, on this server (no locations)."""
    endpoints = [flight.FlightEndpoint(ticket_of(part), []) for part in plan.parts]
    return flight.FlightInfo(plan.schema, descriptor, endpoints, plan.rows, plan.size)


class QuarryFlightServer(flight.FlightServerBase):
    """The Flight service of one server process."""

    def __init__(self, location: str, tables: Tables, admission: Admission, loop: asyncio.AbstractEventLoop,
                 tls: FlightTls | None = None) -> None:
        secure: dict[str, Any] = {}
        if tls is not None:
            secure = {"tls_certificates": [flight.CertKeyPair(tls.cert, tls.key)],
                      "verify_client": tls.client_ca is not None, "root_certificates": tls.client_ca}
        super().__init__(location, middleware={MIDDLEWARE: CallerMiddlewareFactory(admission, loop)}, **secure)
        self._tables = tables
        self._loop = loop

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @staticmethod
    def _caller(context: flight.ServerCallContext) -> Caller:
        middleware: CallerMiddleware = context.get_middleware(MIDDLEWARE)
        if middleware.caller is None:
            raise Internal("no caller was admitted for this Flight call", reason="NO_CALLER")
        return middleware.caller

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        with flight_errors():
            prefix = (criteria or b"").decode()
            plans = self._run(self._tables.current(self._caller(context), prefix))
        for plan in plans:
            version = plan.version
            yield flight_info(plan, flight.FlightDescriptor.for_path(version.namespace, version.dataset,
                                                                     str(version.number)))

    def get_flight_info(self, context: flight.ServerCallContext,
                        descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        with flight_errors():
            version, path, columns = descriptor_request(descriptor)
            plan = self._run(self._tables.plan(self._caller(context), version, path, columns))
            return flight_info(plan, descriptor)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        with flight_errors():
            stream = self._run(self._tables.open_part(self._caller(context), part_of(ticket)))
            return flight.GeneratorStream(stream.schema, _batches(stream))


def _batches(stream: TableStream) -> Iterator[pa.RecordBatch]:
    """The part's batches in its announced schema; an error midway ends the stream with its Flight status."""
    batches = stream.batches()
    try:
        for batch in batches:
            metrics.FLIGHT_ROWS.inc(batch.num_rows)
            metrics.FLIGHT_BYTES.inc(batch.nbytes)
            yield pa.RecordBatch.from_arrays(batch.columns, schema=stream.schema)
    except Exception as exc:
        raise flight_error(exc) from None
    finally:
        batches.close()


@dataclass(frozen=True)
class FlightTls:
    """The server's certificate and key (PEM), and the CA its clients' certificates must be signed by, if any."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None


def start_flight(address: str, tables: Tables, admission: Admission, loop: asyncio.AbstractEventLoop,
                 tls: FlightTls | None = None) -> QuarryFlightServer:
    """The Flight server, listening on `address` (host:port) once this returns; over TLS (grpc+tls://) when the
    gRPC server speaks it, with the same certificate."""
    scheme = "grpc+tls" if tls is not None else "grpc+tcp"
    return QuarryFlightServer(f"{scheme}://{address}", tables, admission, loop, tls)
