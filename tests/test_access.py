"""Who may do what: every RPC × every kind of caller gets exactly what the role table says, a denied call
leaves nothing behind and is an audit row, and the namespace header only chooses among granted namespaces."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import token_pb2, upload_pb2
from quarry.v1 import token_service_pb2 as tpb
from quarry.v1 import upload_service_pb2 as upb

from server.domain.access import RPC_RULES
from server.model.objects import ObjectStore
from tests.access_matrix import CALLERS, GRPC_RULES, REQUESTS, Fixture, Outcome, expected, invoke, methods
from tests.support import (
    ServerHandle,
    bearer,
    create_namespace,
    error_info,
    issue_token,
    server_operator,
    start_server,
    workers_idle,
)


def test_every_served_rpc_has_a_request_here() -> None:
    # Flight's methods are on their own port, in their own protocol: tests/test_flight.py calls them.
    assert set(REQUESTS) == set(methods()) == set(GRPC_RULES)


# The role table as the issue states it, written out independently of server/domain/access.py: reader to get,
# list, preview, read, watch; writer to create and change; admin to delete datasets, manage tokens, read the
# audit log; operator to create namespaces and set quotas; none for health and capabilities.
SPEC = {
    "none": {"GetCapabilities", "Check", "Watch", "List"},
    "authenticated": {"ServerReflectionInfo", "ListNamespaces", "Handshake", "DoPut", "DoExchange", "DoAction",
                      "ListActions"},
    "reader": {"GetDataset", "ListDatasets", "ListVersions", "GetVersion", "ListVersionFiles", "DiffVersions",
               "DiffRows", "PreviewFile", "GetFileStats", "ReadFile", "GetDownloadUrl", "GetUpload", "ListUploads",
               "WatchUpload", "WatchVersion", "GetNamespace", "ListFlights", "GetFlightInfo", "GetSchema", "DoGet"},
    "writer": {"CreateDataset", "UpdateDataset", "CommitVersion", "CreateUpload", "Upload", "CompleteUpload",
               "CancelUpload", "RetryUpload", "CloneDataset", "WriteFile", "RegisterFiles"},
    "admin": {"DeleteDataset", "UndeleteDataset", "CreateToken", "ListTokens", "RevokeToken", "ListAuditEvents"},
    "operator": {"CreateNamespace", "UpdateNamespace"},
}
MUTATING = {"CreateDataset", "UpdateDataset", "DeleteDataset", "UndeleteDataset", "CloneDataset", "WriteFile",
            "RegisterFiles",
            "CommitVersion", "CreateUpload", "Upload",
            "CompleteUpload", "CancelUpload", "RetryUpload", "CreateToken", "RevokeToken", "CreateNamespace",
            "UpdateNamespace"}


def test_the_access_table_says_what_the_issue_says() -> None:
    table = {name.rsplit("/", 1)[1]: rule for name, rule in RPC_RULES.items()}
    assert len(table) == len(RPC_RULES)  # method names are unique across services
    assert {name: rule.access.value for name, rule in table.items()} == {
        name: access for access, names in SPEC.items() for name in names}
    assert {name for name, rule in table.items() if rule.mutating} == MUTATING


async def snapshot(pool: asyncpg.Pool, store: ObjectStore, namespace: str) -> dict[str, object]:
    """Everything a call could leave behind: rows of the namespace (and every token and namespace), staged bytes.
    Versions are counted in the namespace only: another test's commit may still be promoted in the background."""
    counts = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1) AS ds,
                  (SELECT string_agg(d.description || d.revision::text, ',') FROM datasets d
                     JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1) AS described,
                  (SELECT count(*) FROM uploads u JOIN namespaces n ON n.id = u.namespace_id WHERE n.name = $1) AS up,
                  (SELECT string_agg(u.state, ',') FROM uploads u JOIN namespaces n ON n.id = u.namespace_id
                     WHERE n.name = $1) AS states,
                  (SELECT count(*) FROM versions v JOIN datasets d ON d.id = v.dataset_id
                     JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1) AS versions,
                  (SELECT count(*) FROM tokens) AS tokens,
                  (SELECT count(*) FROM tokens WHERE revoke_time IS NOT NULL) AS revoked,
                  (SELECT count(*) FROM namespaces) AS namespaces,
                  (SELECT string_agg(name || ':' || revision::text, ',') FROM namespaces) AS revisions""", namespace)
    staged = [o.key async for o in store.list_objects(f"staging/{namespace}/")]
    multipart = [m.key async for m in store.list_multipart(f"staging/{namespace}/")]
    return {**dict(counts), "staged": staged, "multipart": multipart}


async def wait_until_expired(address: str, token: str, deadline: float = 10) -> None:
    """A token issued with a short ttl: wait (with a deadline) until the server says it expired."""
    async with aio.insecure_channel(address) as channel:
        end = time.monotonic() + deadline
        while True:
            outcome = await invoke(channel, "/quarry.v1.NamespaceService/ListNamespaces",
                                   REQUESTS["/quarry.v1.NamespaceService/ListNamespaces"](None, ""),  # type: ignore
                                   bearer(token))
            if outcome.reason == "TOKEN_EXPIRED":
                return
            assert time.monotonic() < end, outcome
            await asyncio.sleep(0.1)


@pytest.fixture
async def matrix(server_file: ServerHandle, pools: dict[str, asyncpg.Pool]) -> AsyncIterator[
        tuple[Fixture, dict[str, tuple[tuple[str, str], ...]], str]]:
    address, operator = server_file.address, server_operator(server_file.address)
    namespace, other = f"m-{uuid.uuid4().hex[:10]}", f"o-{uuid.uuid4().hex[:10]}"
    create_namespace(address, operator, namespace)
    create_namespace(address, operator, other)
    async with aio.insecure_channel(address) as channel:
        creds = bearer(operator)
        datasets = _stub(channel, "DatasetService")
        uploads = _stub(channel, "UploadService")
        await datasets.CreateDataset(dpb.CreateDatasetRequest(parent=f"namespaces/{namespace}", dataset_id="ds"),
                                     metadata=creds)
        opened = (await uploads.CreateUpload(upb.CreateUploadRequest(
            parent=f"namespaces/{namespace}", upload=upload_pb2.Upload(dataset="ds", path="c.csv")),
            metadata=creds)).upload
        await uploads.CancelUpload(upb.CancelUploadRequest(name=opened.name), metadata=creds)
        tokens = _stub(channel, "TokenService")
        victim = (await tokens.CreateToken(tpb.CreateTokenRequest(token=token_pb2.Token(
            principal="victim", grants=[token_pb2.Grant(namespace=f"namespaces/{namespace}",
                                                        role=token_pb2.ROLE_READER)])), metadata=creds)).token.name
        revoked = issue_token(address, operator, {namespace: "admin"}, principal="revoked")
        revoked_id = revoked.split("_")[1]
        await tokens.RevokeToken(tpb.RevokeTokenRequest(name=f"tokens/{revoked_id}"), metadata=creds)
        expiring = issue_token(address, operator, {namespace: "admin"}, principal="expired",
                               ttl=duration_pb2.Duration(seconds=1))
    callers = {
        "no-token": (),
        "malformed": (("authorization", "Bearer not-a-token"),),
        "unknown": bearer(f"qk_{uuid.uuid4().hex[:16]}_{'A' * 43}"),
        "revoked": bearer(revoked),
        "expired": bearer(expiring),
        "reader": bearer(issue_token(address, operator, {namespace: "reader"}, principal="reader")),
        "writer": bearer(issue_token(address, operator, {namespace: "writer"}, principal="writer")),
        "admin": bearer(issue_token(address, operator, {namespace: "admin"}, principal="admin")),
        "other-admin": bearer(issue_token(address, operator, {other: "admin"}, principal="other-admin")),
        "operator": bearer(operator),
    }
    assert list(callers) == CALLERS
    await wait_until_expired(address, expiring)
    yield Fixture(namespace, f"namespaces/{namespace}/datasets/ds", opened.name, victim), callers, other


def _stub(channel: aio.Channel, service: str) -> object:
    from quarry.v1 import dataset_service_pb2_grpc, token_service_pb2_grpc, upload_service_pb2_grpc

    stubs = {"DatasetService": dataset_service_pb2_grpc.DatasetServiceStub,
             "UploadService": upload_service_pb2_grpc.UploadServiceStub,
             "TokenService": token_service_pb2_grpc.TokenServiceStub}
    return stubs[service](channel)


async def test_every_rpc_for_every_caller_matches_the_role_table(
        matrix: tuple[Fixture, dict[str, tuple[tuple[str, str], ...]], str], server_file: ServerHandle,
        worker_file: object, pools: dict[str, asyncpg.Pool], stores: dict[str, ObjectStore]) -> None:
    # A worker runs, so that what an admitted call starts (a staged upload, a commit) finishes before the next
    # denied call's before-and-after comparison (workers_idle), instead of whenever a worker of the session is up.
    fixture, callers, other = matrix
    pool, store = pools["file"], stores["file"]
    denied: list[tuple[str, str, Outcome]] = []
    mismatches: list[str] = []
    async with aio.insecure_channel(server_file.address) as channel:
        for name in sorted(GRPC_RULES):
            for caller, metadata in callers.items():
                want = expected(name, caller, fixture.namespace, other)
                if want is not None:  # what an admitted call before started must not pass for this one's leftover
                    await workers_idle(pool, fixture.namespace)
                before = await snapshot(pool, store, fixture.namespace) if want is not None else None
                got = await invoke(channel, name, REQUESTS[name](fixture, caller.replace("-", "")), metadata)
                if want is None:
                    if got.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                        mismatches.append(f"{name} as {caller}: admitted expected, got {got}")
                    continue
                # The code and reason exactly; the metadata too where the table prescribes it (a refused token's
                # name is in it as well, which the table does not fix).
                if (got.code, got.reason) != (want.code, want.reason) or (want.metadata and got != want):
                    mismatches.append(f"{name} as {caller}: expected {want}, got {got}")
                after = await snapshot(pool, store, fixture.namespace)
                if after != before:
                    mismatches.append(f"{name} as {caller}: the denied call left something behind: {before} -> {after}")
                denied.append((name, caller, want))
    assert mismatches == []
    # An admitted call to a method grpc's base class leaves unimplemented is UNIMPLEMENTED, not INTERNAL.
    async with aio.insecure_channel(server_file.address) as channel:
        listed = await invoke(channel, "/grpc.health.v1.Health/List", REQUESTS["/grpc.health.v1.Health/List"](
            fixture, ""), ())
    assert (listed.code, listed.reason) == (grpc.StatusCode.UNIMPLEMENTED, "NOT_IMPLEMENTED")
    assert len(denied) > 150  # the table denies something to most callers of most RPCs
    # Every denial is an audit row naming the method, the outcome and (once the secret was proven) the token.
    rows = await pool.fetch("SELECT method, code, reason, principal FROM audit_events WHERE id > 0")
    recorded = {(r["method"], r["code"], r["reason"], r["principal"]) for r in rows}
    principals = {"revoked": "revoked", "expired": "expired", "reader": "reader", "writer": "writer",
                  "admin": "admin", "other-admin": "other-admin"}
    for name, caller, want in denied:
        assert (name, want.code.name, want.reason, principals.get(caller, "")) in recorded, (name, caller)


async def test_the_namespace_header_only_chooses_among_granted_namespaces(server_file: ServerHandle) -> None:
    address, operator = server_file.address, server_operator(server_file.address)
    first, second, stranger = (f"h-{uuid.uuid4().hex[:10]}" for _ in range(3))
    for namespace in (first, second, stranger):
        create_namespace(address, operator, namespace)
    token = issue_token(address, operator, {first: "reader", second: "writer"})
    async with aio.insecure_channel(address) as channel:
        stub = _stub(channel, "DatasetService")
        # No header: the first grant. A header picks another granted namespace; it never grants one.
        await stub.CreateDataset(dpb.CreateDatasetRequest(dataset_id="x"),  # type: ignore[attr-defined]
                                 metadata=(*bearer(token), ("x-quarry-namespace", second)))
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.CreateDataset(dpb.CreateDatasetRequest(dataset_id="x"), metadata=bearer(token))  # type: ignore
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value) == ("ROLE_REQUIRED", {"role": "writer", "namespace": first})
        with pytest.raises(aio.AioRpcError) as stranger_call:
            await stub.ListDatasets(dpb.ListDatasetsRequest(),  # type: ignore[attr-defined]
                                    metadata=(*bearer(token), ("x-quarry-namespace", stranger)))
        assert error_info(stranger_call.value) == ("NAMESPACE_NOT_GRANTED", {"namespace": stranger})
        listed = await stub.ListDatasets(dpb.ListDatasetsRequest(),  # type: ignore[attr-defined]
                                         metadata=(*bearer(token), ("x-quarry-namespace", second)))
        assert [d.name for d in listed.datasets] == [f"namespaces/{second}/datasets/x"]


async def test_with_auth_mode_none_every_caller_is_trusted_in_the_namespace_it_names(
        stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    from quarry.v1 import capabilities_service_pb2 as cpb
    from quarry.v1 import capabilities_service_pb2_grpc as cpb_grpc
    from quarry.v1 import namespace_service_pb2 as npb
    from quarry.v1 import namespace_service_pb2_grpc as npb_grpc

    handle = await asyncio.to_thread(start_server, dict(stack_envs["file"], QUARRY_AUTH_MODE="none"), tmp_path,
                                     "auth-none", "file")
    namespace = f"none-{uuid.uuid4().hex[:8]}"
    try:
        async with aio.insecure_channel(handle.address) as channel:
            answer = await cpb_grpc.CapabilitiesServiceStub(channel).GetCapabilities(cpb.GetCapabilitiesRequest())
            assert answer.auth_mode == cpb.AUTH_MODE_NONE and not answer.tls_required
            # No token anywhere: namespaces still exist only once created (by anyone: all are trusted).
            header = (("x-quarry-namespace", namespace),)
            datasets = _stub(channel, "DatasetService")
            with pytest.raises(aio.AioRpcError) as missing:
                await datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="x"),  # type: ignore[attr-defined]
                                             metadata=header)
            assert error_info(missing.value)[0] == "NAMESPACE_NOT_FOUND"
            await npb_grpc.NamespaceServiceStub(channel).CreateNamespace(npb.CreateNamespaceRequest(
                namespace_id=namespace))
            await datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="x"),  # type: ignore[attr-defined]
                                         metadata=header)
            listed = await datasets.ListDatasets(dpb.ListDatasetsRequest(), metadata=header)  # type: ignore
            assert [d.name for d in listed.datasets] == [f"namespaces/{namespace}/datasets/x"]
            with pytest.raises(aio.AioRpcError) as bad:
                await datasets.ListDatasets(dpb.ListDatasetsRequest(),  # type: ignore[attr-defined]
                                            metadata=(("x-quarry-namespace", "Not A Name"),))
            assert (bad.value.code(), error_info(bad.value)[0]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                                    "INVALID_NAMESPACE")
    finally:
        await asyncio.to_thread(handle.process.stop)
