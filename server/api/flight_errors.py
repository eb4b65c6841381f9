"""Domain errors as Arrow Flight errors, with the same reasons as gRPC's (the table of `errors.py` decides).

Flight has a few status codes of its own; each gRPC code maps to the nearest (request errors, which Flight
has no code for, are "failed": UNKNOWN on the wire). The message starts with the gRPC code and the reason
("NOT_FOUND FILE_NOT_FOUND: …"), and the error's extra info is the `google.rpc.Status` a gRPC call would
carry (code, ErrorInfo reason, field violations, RetryInfo): Flight sends it as `grpc-status-details-bin`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pyarrow.flight as flight

from server.api.errors import code_for, status_for
from server.model.errors import QuarryError

FLIGHT_ERROR_BY_CODE: dict[grpc.StatusCode, type[flight.FlightError]] = {
    grpc.StatusCode.UNAUTHENTICATED: flight.FlightUnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: flight.FlightUnauthorizedError,
    grpc.StatusCode.UNAVAILABLE: flight.FlightUnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: flight.FlightUnavailableError,
    grpc.StatusCode.ABORTED: flight.FlightUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: flight.FlightTimedOutError,
    grpc.StatusCode.CANCELLED: flight.FlightCancelledError,
    grpc.StatusCode.INTERNAL: flight.FlightInternalError,
    grpc.StatusCode.DATA_LOSS: flight.FlightInternalError,
}


def flight_error(exc: BaseException) -> flight.FlightError:
    """The Flight error for any exception a handler raised (unknown ones: internal, detail only in the log)."""
    if isinstance(exc, flight.FlightError):
        return exc
    status = status_for(exc)
    reason = _reason(status.details)
    kind = FLIGHT_ERROR_BY_CODE.get(status.code, flight.FlightServerError)
    return kind(f"{status.code.name} {reason}: {status.message}", status.details)


def _reason(details: bytes) -> str:
    from google.rpc import error_details_pb2, status_pb2

    for detail in status_pb2.Status.FromString(details).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def outcome_of(exc: BaseException) -> tuple[str, str]:
    """(gRPC status code name, ErrorInfo reason) of how a Flight call ended, for the audit trail."""
    if isinstance(exc, QuarryError):
        return code_for(exc).name, exc.reason
    details = getattr(exc, "extra_info", None)
    if isinstance(exc, flight.FlightError) and details:
        from google.rpc import code_pb2, status_pb2

        try:
            return code_pb2.Code.Name(status_pb2.Status.FromString(details).code), _reason(details)
        except ValueError:
            pass
    return ("CANCELLED", "") if isinstance(exc, flight.FlightCancelledError) else ("UNKNOWN", "")


@contextmanager
def flight_errors() -> Iterator[None]:
    """Any exception raised in the block leaves it as a Flight error."""
    try:
        yield
    except Exception as exc:
        raise flight_error(exc) from None
