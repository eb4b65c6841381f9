"""The audit trail: one row per mutating call and per denied call, written with the change; read by admins
(filtered, paged); never updated; deleted only by the sweep past the retention period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from grpc import aio
from quarry.v1 import audit_service_pb2 as apb
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

from tests.inprocess import in_process
from tests.support import Api, ServerHandle, error_info, field_violations, issue_token, open_api, server_operator
from tests.uploading import create_request, one_call_messages, stream_of


async def events(pool: asyncpg.Pool, namespace: str, principal: str | None = None) -> list[asyncpg.Record]:
    """A namespace's rows, oldest first (of one principal: the operator that made the namespace has rows too)."""
    return await pool.fetch("SELECT * FROM audit_events WHERE namespace = $1 AND ($2::text IS NULL OR principal = $2)"
                            " ORDER BY id", namespace, principal)


async def fails(call: object, code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason), raised.value.details()
    return raised.value


async def test_each_mutating_call_is_one_row_and_reads_are_none(api: Api, quarry: ServerHandle,
                                                                pools: dict[str, asyncpg.Pool]) -> None:
    pool = pools[quarry.storage_kind]
    token_id = api.token.split("_")[1]
    made = (await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="kept", request_id="r-1"))).dataset
    await api.datasets.GetDataset(dpb.GetDatasetRequest(name=made.name))
    await api.datasets.ListDatasets(dpb.ListDatasetsRequest())
    await fails(api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="kept")),
                grpc.StatusCode.ALREADY_EXISTS, "DATASET_ALREADY_EXISTS")
    sent = await api.uploads.Upload(stream_of(one_call_messages("kept", "a.bin", b"abc")))
    await api.uploads.CancelUpload(upb.CancelUploadRequest(name=sent.upload.name))
    await api.datasets.DeleteDataset(dpb.DeleteDatasetRequest(name=made.name))
    rows = await events(pool, api.namespace, "test")
    summary = [(r["method"].rsplit("/", 1)[1], r["code"], r["reason"], r["resource"]) for r in rows]
    assert summary == [
        ("CreateDataset", "OK", "", made.name),
        ("CreateDataset", "ALREADY_EXISTS", "DATASET_ALREADY_EXISTS", made.name),
        ("Upload", "OK", "", sent.upload.name),
        ("CancelUpload", "OK", "", sent.upload.name),
        ("DeleteDataset", "OK", "", made.name),
    ]
    first = rows[0]
    assert (first["principal"], first["token_id"], first["request_id"]) == ("test", token_id, "r-1")
    assert first["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:")) and first["event_time"] is not None


async def test_admins_read_their_namespace_trail_filtered_and_paged(api: Api, quarry: ServerHandle) -> None:
    for index in range(5):
        await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id=f"d{index}"))
    await api.uploads.CreateUpload(create_request("d0", "x.csv"))
    listed = (await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(parent=api.parent))).events
    # Newest first: this test's calls, then the operator's that made the namespace and issued the token.
    assert [e.method.rsplit("/", 1)[1] for e in listed] == ["CreateUpload"] + ["CreateDataset"] * 5 + [
        "CreateToken", "CreateNamespace"]
    assert [e.principal for e in listed[-2:]] == ["test-operator"] * 2
    listed = listed[:-2]
    assert all(e.principal == "test" and e.token == f"tokens/{api.token.split('_')[1]}" for e in listed)
    pages, token = [], ""
    while True:
        page = await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(page_size=2, page_token=token,
                                                                          filter='principal = "test"'))
        pages += page.events
        token = page.next_page_token
        if not token:
            break
    assert [e.name for e in pages] == [e.name for e in listed]
    by_method = await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(filter='method = "CreateUpload"'))
    assert len(by_method.events) == 1
    full = await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(
        filter='method = "/quarry.v1.DatasetService/CreateDataset" AND principal = "test"'))
    assert len(full.events) == 5
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(
        filter=f'event_time >= "{later}"'))).events == []
    since = listed[-1].event_time.ToDatetime(tzinfo=UTC).isoformat()
    assert len((await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(
        filter=f'event_time >= "{since}" AND event_time < "{later}" AND principal = "test"'))).events) == 6
    for bad in ('event_time >= "yesterday"', 'event_time >= "2025-01-01T00:00:00"', "colour = red",
                'principal > "a"', 'method = "\\q"'):
        error = await fails(api.audit.ListAuditEvents(apb.ListAuditEventsRequest(filter=bad)),
                            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER")
        assert field_violations(error) == ["filter"]
    # A writer may not read it; an admin of another namespace may not either; an operator reads everything.
    operator = server_operator(quarry.address)
    writer = open_api(quarry.address, api.namespace, token=issue_token(quarry.address, operator,
                                                                       {api.namespace: "writer"}))
    stranger = open_api(quarry.address)
    everyone = open_api(quarry.address, api.namespace, token=operator)
    try:
        await fails(writer.audit.ListAuditEvents(apb.ListAuditEventsRequest()), grpc.StatusCode.PERMISSION_DENIED,
                    "ROLE_REQUIRED")
        await fails(stranger.audit.ListAuditEvents(apb.ListAuditEventsRequest(parent=api.parent)),
                    grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
        await fails(api.audit.ListAuditEvents(apb.ListAuditEventsRequest(parent="namespaces/-")),
                    grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
        every = await everyone.audit.ListAuditEvents(apb.ListAuditEventsRequest(parent="namespaces/-",
                                                                                page_size=1000))
        assert {api.parent.removeprefix("namespaces/"), stranger.namespace} <= {e.namespace for e in every.events}
        # The refusals just now are in the trail too.
        denied = await api.audit.ListAuditEvents(apb.ListAuditEventsRequest(filter='method = "ListAuditEvents"'))
        assert {(e.code, e.reason) for e in denied.events} >= {("PERMISSION_DENIED", "ROLE_REQUIRED"),
                                                              ("PERMISSION_DENIED", "NAMESPACE_NOT_GRANTED")}
    finally:
        for client in (writer, stranger, everyone):
            await client.channel.close()


async def test_the_trail_is_append_only_and_only_the_sweep_deletes(server_file: ServerHandle,
                                                                   stack_envs: dict[str, dict[str, str]],
                                                                   pools: dict[str, asyncpg.Pool]) -> None:
    pool = pools["file"]
    namespace = f"audit-{uuid.uuid4().hex[:8]}"
    old, new = await pool.fetch(
        """INSERT INTO audit_events (event_time, namespace, method, code)
           VALUES (now() - interval '400 days', $1, '/m', 'OK'), (now() - interval '10 days', $1, '/m', 'OK')
           RETURNING id""", namespace)
    for statement in ("UPDATE audit_events SET code = 'X' WHERE id = $1",
                      "DELETE FROM audit_events WHERE id = $1"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(statement, old["id"])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("TRUNCATE audit_events")
    async with in_process(stack_envs["file"], QUARRY_AUDIT_RETENTION_DAYS="365") as services:
        report = await services.sweeper.sweep()
    assert report.audit_events_deleted >= 1
    left = [r["id"] for r in await events(pool, namespace)]
    assert left == [new["id"]]
