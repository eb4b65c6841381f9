"""Arrow Flight (both stores): a `pyarrow.flight.FlightClient` lists flights, plans a version's tables, reads
the endpoints in parallel and gets the source tables back; bad input gets a Flight error with the same reason
as gRPC's (also seen by a plain gRPC client as `grpc-status-details-bin`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import quarry
from google.rpc import error_details_pb2, status_pb2

from tests.reading import Published
from tests.sdk_support import provision


@pytest.fixture
def client(published: Published) -> Iterator[flight.FlightClient]:
    connection = flight.connect(published.server.flight_location)
    yield connection
    connection.close()


def options(published: Published, namespace: str | None = None,
            token: str | None = None) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"x-quarry-namespace", (namespace or published.namespace).encode()),
                                             (b"authorization", f"Bearer {token or published.token}".encode())])


def read_endpoints(client: flight.FlightClient, info: flight.FlightInfo,
                   call: flight.FlightCallOptions) -> dict[str, pa.Table]:
    """Every endpoint read in parallel; the batches of each path joined in endpoint order."""
    def read(endpoint: flight.FlightEndpoint) -> tuple[str, pa.Table]:
        return json.loads(endpoint.ticket.ticket)["path"], client.do_get(endpoint.ticket, call).read_all()

    with ThreadPoolExecutor(4) as pool:
        pieces = list(pool.map(read, info.endpoints))
    tables: dict[str, list[pa.Table]] = {}
    for path, table in pieces:
        tables.setdefault(path, []).append(table)
    return {path: pa.concat_tables(parts) for path, parts in tables.items()}


def test_a_version_read_endpoint_by_endpoint_in_parallel(client: flight.FlightClient, published: Published) -> None:
    call = options(published)
    info = client.get_flight_info(flight.FlightDescriptor.for_path(published.namespace, "lib", "1"), call)
    tabular = ["events/e1.jsonl", "parts/p1.parquet", "parts/p2.parquet", "sales.csv"]
    assert info.total_records == sum(published.tables[p].num_rows for p in tabular)
    assert info.total_bytes == sum(len(published.source(p)) for p in tabular)
    paths = [json.loads(e.ticket.ticket)["path"] for e in info.endpoints]
    # Each Parquet file (1.5 MB, 4 row groups) is above the test servers' 1 MiB split: two endpoints each.
    assert paths == ["events/e1.jsonl", "parts/p1.parquet", "parts/p1.parquet", "parts/p2.parquet",
                     "parts/p2.parquet", "sales.csv"]
    assert set(info.schema.names) == {"id", "region", "amount", "event", "value", "ok", "x", "label"}
    tables = read_endpoints(client, info, call)
    for path in tabular:
        assert tables[path].equals(published.tables[path]), path


def test_projection_and_a_folder_by_command(client: flight.FlightClient, published: Published) -> None:
    call = options(published)
    command = json.dumps({"namespace": published.namespace, "dataset": "lib", "version": "latest",
                          "path": "parts/", "columns": ["x", "id"]})
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), call)
    assert info.schema.names == ["x", "id"] and len(info.endpoints) == 4
    for path, table in read_endpoints(client, info, call).items():
        assert table.equals(published.tables[path].select(["x", "id"])), path
    # A ticket written by hand: one file, one column, the version by number.
    ticket = flight.Ticket(json.dumps({"version": published.version, "path": "sales.csv", "columns": ["region"]}))
    assert client.do_get(ticket, call).read_all().equals(published.tables["sales.csv"].select(["region"]))
    one = client.get_flight_info(flight.FlightDescriptor.for_path(published.namespace, "lib", "latest",
                                                                  "events/e1.jsonl"), call)
    assert len(one.endpoints) == 1 and one.total_records == 500
    assert client.do_get(one.endpoints[0].ticket, call).read_all().equals(published.tables["events/e1.jsonl"])


def test_list_flights_names_each_datasets_current_version(client: flight.FlightClient, published: Published) -> None:
    [info] = list(client.list_flights(b"", options(published)))
    assert [p.decode() if isinstance(p, bytes) else p for p in info.descriptor.path] == [published.namespace, "lib",
                                                                                           "1"]
    assert info.total_records == 2000 + 500 + 2 * published.tables["parts/p1.parquet"].num_rows
    assert list(client.list_flights(b"other", options(published))) == []


def reason_of(error: flight.FlightError) -> tuple[int, str]:
    """(google.rpc code, ErrorInfo reason) of a Flight error's extra info."""
    status = status_pb2.Status.FromString(error.extra_info)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return status.code, info.reason
    return status.code, ""


@pytest.mark.parametrize(("descriptor", "code", "reason"), [
    (["lib", "9"], grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND"),
    (["nolib", "1"], grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND"),
    (["lib", "1", "missing.csv"], grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND"),
    (["lib", "1", "notes.txt"], grpc.StatusCode.FAILED_PRECONDITION, "NOT_TABULAR"),
    (["lib", "one"], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
    (["lib"], grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DESCRIPTOR"),
])
def test_bad_descriptors_fail_with_their_reason(client: flight.FlightClient, published: Published,
                                                descriptor: list[str], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        client.get_flight_info(flight.FlightDescriptor.for_path(published.namespace, *descriptor),
                               options(published))
    assert reason_of(caught.value) == (code.value[0], reason)
    assert f"{code.name} {reason}: " in str(caught.value)


def test_bad_columns_tickets_and_namespaces(client: flight.FlightClient, published: Published) -> None:
    call = options(published)
    command = json.dumps({"namespace": published.namespace, "dataset": "lib", "path": "sales.csv",
                          "columns": ["id", "nope"]})
    with pytest.raises(flight.FlightServerError) as caught:
        client.get_flight_info(flight.FlightDescriptor.for_command(command), call)
    assert reason_of(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "COLUMN_NOT_FOUND")
    assert "no column 'nope'" in str(caught.value)
    for ticket, reason in [(b"not json", "INVALID_TICKET"),
                           (json.dumps({"version": published.version, "path": "parts/p1.parquet",
                                        "row_groups": [7]}).encode(), "INVALID_TICKET"),
                           (json.dumps({"version": published.version, "path": "blob.bin"}).encode(), "NOT_TABULAR"),
                           (json.dumps({"version": published.version, "path": "sales.csv", "columns": ["zz"]})
                            .encode(), "COLUMN_NOT_FOUND")]:
        with pytest.raises(flight.FlightServerError) as caught:
            client.do_get(flight.Ticket(ticket), call).read_all()
        assert reason_of(caught.value)[1] == reason
    # Another namespace's version: refused as gRPC refuses it.
    with pytest.raises(flight.FlightUnauthorizedError) as denied:
        client.get_flight_info(flight.FlightDescriptor.for_path(published.namespace, "lib", "1"),
                               options(published, "someone-else"))
    assert reason_of(denied.value)[1] == "NAMESPACE_NOT_GRANTED"
    with pytest.raises(flight.FlightServerError) as invalid:
        client.get_flight_info(flight.FlightDescriptor.for_path(published.namespace, "lib", "1"),
                               options(published, "Not Valid"))
    assert reason_of(invalid.value)[1] == "INVALID_NAMESPACE"


def test_a_plain_grpc_client_reads_the_same_reason(published: Published) -> None:
    ticket = flight.Ticket(json.dumps({"version": published.version, "path": "missing.parquet"}))
    with grpc.insecure_channel(published.server.flight_address) as channel:
        do_get = channel.unary_stream("/arrow.flight.protocol.FlightService/DoGet",
                                      request_serializer=lambda t: t.serialize(), response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as caught:
            list(do_get(ticket, metadata=[("x-quarry-namespace", published.namespace),
                                          ("authorization", f"Bearer {published.token}")], timeout=30))
    trailers = dict(caught.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0] and "FILE_NOT_FOUND" in caught.value.details()


def test_tables_whose_schemas_do_not_merge_are_read_one_path_at_a_time(client: flight.FlightClient,
                                                                       published: Published, tmp_path: Path) -> None:
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.csv").write_text("id\n1\n2\n")
    (tmp_path / "mixed" / "b.csv").write_text("id\nx\ny\n")  # "id" is a string here
    namespace, token = provision(published.server.address)  # not the shared one: its listings stay as they are
    with quarry.Client(published.server.address, namespace=namespace, token=token,
                       cache_dir=tmp_path / "cache") as sdk:
        sdk.upload_dir(tmp_path / "mixed", "mixed", wait=True, wait_timeout=120)
    call = options(published, namespace, token)
    with pytest.raises(flight.FlightServerError) as caught:
        client.get_flight_info(flight.FlightDescriptor.for_path(namespace, "mixed", "1"), call)
    assert reason_of(caught.value) == (grpc.StatusCode.FAILED_PRECONDITION.value[0], "SCHEMAS_DIFFER")
    one = client.get_flight_info(flight.FlightDescriptor.for_path(namespace, "mixed", "1", "b.csv"), call)
    assert client.do_get(one.endpoints[0].ticket, call).read_all().column("id").to_pylist() == ["x", "y"]


def test_flight_admits_callers_as_grpc_does(client: flight.FlightClient, published: Published) -> None:
    from tests.support import issue_token, server_operator

    descriptor = flight.FlightDescriptor.for_path(published.namespace, "lib", "1")
    address, operator = published.server.address, server_operator(published.server.address)
    reader = issue_token(address, operator, {published.namespace: "reader"}, principal="flight-reader")
    info = client.get_flight_info(descriptor, flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {reader}".encode())]))  # the header may be left out: first grant
    assert client.do_get(info.endpoints[0].ticket, flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {reader}".encode())])).read_all().num_rows > 0
    refusals = [(flight.FlightCallOptions(), flight.FlightUnauthenticatedError, "TOKEN_MISSING"),
                (flight.FlightCallOptions(headers=[(b"authorization", b"Bearer qk_nope")]),
                 flight.FlightUnauthenticatedError, "TOKEN_INVALID")]
    namespace, stranger = provision(address)  # an admin elsewhere
    refusals.append((flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {stranger}".encode())]),
                     flight.FlightUnauthorizedError, "NAMESPACE_NOT_GRANTED"))
    for call, kind, reason in refusals:
        with pytest.raises(kind) as refused:
            client.get_flight_info(descriptor, call)
        assert reason_of(refused.value)[1] == reason
        with pytest.raises(kind):
            client.do_get(info.endpoints[0].ticket, call).read_all()
    # A method Flight routes but Quarry does not serve: a valid token gets UNIMPLEMENTED, never INTERNAL.
    with pytest.raises(pa.ArrowNotImplementedError):
        list(client.list_actions(flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {reader}".encode())])))
    with pytest.raises(flight.FlightUnauthenticatedError):  # but only to a caller with a token
        list(client.list_actions(flight.FlightCallOptions()))
    # Every refusal is in the namespace's audit trail, as a gRPC one would be.
    with quarry.Client(address, namespace=published.namespace, token=published.token) as sdk:
        denied = [(e.method.rsplit("/", 1)[1], e.code, e.reason) for e in sdk.list_audit_events(
            filter='method = "GetFlightInfo"')]
    assert ("GetFlightInfo", "PERMISSION_DENIED", "NAMESPACE_NOT_GRANTED") in denied
