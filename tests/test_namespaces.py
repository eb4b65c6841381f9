"""Namespaces: only an operator creates them (none appears on first use), readers see their quota and usage,
and the quotas and the rate limit an operator sets hold across two server replicas sharing one database and
one Redis."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import namespace_pb2, upload_pb2
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import namespace_service_pb2_grpc as npb_grpc
from quarry.v1 import upload_service_pb2 as upb

from tests.support import (
    Api,
    ServerHandle,
    bearer,
    create_namespace,
    error_info,
    field_violations,
    issue_token,
    open_api,
    server_operator,
    start_server,
)
from tests.uploading import MiB, create_request, one_call_messages, stream_of


async def fails(call: object, code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason), raised.value.details()
    return raised.value


def details_of(error: aio.AioRpcError) -> list[object]:
    """The google.rpc details of a failed call, unpacked."""
    found: list[object] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                for kind in (error_details_pb2.QuotaFailure, error_details_pb2.RetryInfo,
                             error_details_pb2.ErrorInfo):
                    if detail.Is(kind.DESCRIPTOR):
                        message = kind()
                        detail.Unpack(message)
                        found.append(message)
    return found


@pytest.fixture
async def operator_api(server_file: ServerHandle) -> AsyncIterator[Api]:
    api = open_api(server_file.address, token=server_operator(server_file.address))
    yield api
    await api.channel.close()


async def test_only_an_operator_creates_namespaces(api: Api, quarry: ServerHandle,
                                                   pools: dict[str, asyncpg.Pool]) -> None:
    pool = pools[quarry.storage_kind]
    count = await pool.fetchval("SELECT count(*) FROM namespaces")
    name = f"n-{uuid.uuid4().hex[:10]}"
    await fails(api.namespaces.CreateNamespace(npb.CreateNamespaceRequest(namespace_id=name)),
                grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    # Nothing appears on first use either: an operator's dataset in a namespace nobody created is NOT_FOUND.
    operator = open_api(quarry.address, api.namespace, token=server_operator(quarry.address))
    try:
        await fails(operator.datasets.CreateDataset(dpb.CreateDatasetRequest(parent=f"namespaces/{name}",
                                                                             dataset_id="x")),
                    grpc.StatusCode.NOT_FOUND, "NAMESPACE_NOT_FOUND")
        elsewhere = create_request("x", "x.csv")
        elsewhere.parent = f"namespaces/{name}"
        await fails(operator.uploads.CreateUpload(elsewhere), grpc.StatusCode.NOT_FOUND, "NAMESPACE_NOT_FOUND")
        assert await pool.fetchval("SELECT count(*) FROM namespaces") == count
        for bad in ("", "Upper", "-x", "a" * 64, "a/b"):
            error = await fails(operator.namespaces.CreateNamespace(npb.CreateNamespaceRequest(namespace_id=bad)),
                                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAMESPACE")
            assert field_violations(error) == ["namespace"]
        error = await fails(operator.namespaces.CreateNamespace(npb.CreateNamespaceRequest(
            namespace_id=name, namespace=namespace_pb2.Namespace(quota=namespace_pb2.NamespaceQuota(max_bytes=-1)))),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_QUOTA")
        assert field_violations(error) == ["namespace.quota.max_bytes"]
        assert await pool.fetchval("SELECT count(*) FROM namespaces") == count
        made = (await operator.namespaces.CreateNamespace(npb.CreateNamespaceRequest(
            namespace_id=name, request_id="make-1"))).namespace
        assert made.name == f"namespaces/{name}" and made.etag
        replay = (await operator.namespaces.CreateNamespace(npb.CreateNamespaceRequest(
            namespace_id=name, request_id="make-1"))).namespace
        assert replay == made
        await fails(operator.namespaces.CreateNamespace(npb.CreateNamespaceRequest(namespace_id=name)),
                    grpc.StatusCode.ALREADY_EXISTS, "NAMESPACE_ALREADY_EXISTS")
    finally:
        await operator.channel.close()


async def test_a_token_lists_its_namespaces_and_reads_their_usage(api: Api, quarry: ServerHandle) -> None:
    operator = server_operator(quarry.address)
    second = f"n-{uuid.uuid4().hex[:10]}"
    create_namespace(quarry.address, operator, second)
    token = issue_token(quarry.address, operator, {api.namespace: "writer", second: "reader"})
    reader = open_api(quarry.address, api.namespace, token=token)
    try:
        listed = (await reader.namespaces.ListNamespaces(npb.ListNamespacesRequest())).namespaces
        assert [n.name for n in listed] == sorted([api.parent, f"namespaces/{second}"])
        first_page = await reader.namespaces.ListNamespaces(npb.ListNamespacesRequest(page_size=1))
        rest = await reader.namespaces.ListNamespaces(npb.ListNamespacesRequest(
            page_size=1, page_token=first_page.next_page_token))
        assert [n.name for n in [*first_page.namespaces, *rest.namespaces]] == [n.name for n in listed]
        await api.uploads.Upload(stream_of(one_call_messages("used", "u.bin", b"x" * 3000)))
        await api.uploads.CreateUpload(create_request("used", "open.bin"))
        namespace = (await reader.namespaces.GetNamespace(npb.GetNamespaceRequest(name=api.parent))).namespace
        assert (namespace.usage.datasets, namespace.usage.open_uploads) == (1, 1)
        assert namespace.usage.stored_bytes == 3000  # the staged part; nothing is fresh yet
        await fails(reader.namespaces.GetNamespace(npb.GetNamespaceRequest(name="namespaces/default")),
                    grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
        error = await fails(reader.namespaces.GetNamespace(npb.GetNamespaceRequest(name="default")),
                            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
        assert field_violations(error) == ["name"]
        # An empty name is where the token acts when a call names nowhere: its first grant, unless the header
        # picks another.
        async with aio.insecure_channel(quarry.address) as channel:
            stub = npb_grpc.NamespaceServiceStub(channel)
            home = await stub.GetNamespace(npb.GetNamespaceRequest(), metadata=bearer(token))
            assert home.namespace.name == api.parent
            picked = await stub.GetNamespace(npb.GetNamespaceRequest(),
                                             metadata=(*bearer(token), ("x-quarry-namespace", second)))
            assert picked.namespace.name == f"namespaces/{second}"
    finally:
        await reader.channel.close()


async def test_an_operator_sets_quotas_by_mask(operator_api: Api, server_file: ServerHandle) -> None:
    name = f"n-{uuid.uuid4().hex[:10]}"
    create_namespace(server_file.address, server_operator(server_file.address), name)
    stub = operator_api.namespaces
    current = (await stub.GetNamespace(npb.GetNamespaceRequest(name=f"namespaces/{name}"))).namespace
    changed = (await stub.UpdateNamespace(npb.UpdateNamespaceRequest(
        namespace=namespace_pb2.Namespace(name=current.name, etag=current.etag, quota=namespace_pb2.NamespaceQuota(
            max_bytes=10, max_datasets=7)), update_mask=field_mask_pb2.FieldMask(paths=["quota.max_datasets"])))
                ).namespace
    assert (changed.quota.max_bytes, changed.quota.max_datasets) == (0, 7) and changed.etag != current.etag
    await fails(stub.UpdateNamespace(npb.UpdateNamespaceRequest(namespace=namespace_pb2.Namespace(
        name=current.name, etag=current.etag, quota=namespace_pb2.NamespaceQuota(max_bytes=5)))),
        grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    error = await fails(stub.UpdateNamespace(npb.UpdateNamespaceRequest(
        namespace=namespace_pb2.Namespace(name=current.name), update_mask=field_mask_pb2.FieldMask(paths=["name"]))),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK")
    assert field_violations(error) == ["update_mask"]
    await fails(stub.UpdateNamespace(npb.UpdateNamespaceRequest(namespace=namespace_pb2.Namespace(
        name="namespaces/never-made-here", quota=namespace_pb2.NamespaceQuota(max_bytes=5)))),
        grpc.StatusCode.NOT_FOUND, "NAMESPACE_NOT_FOUND")
    await fails(stub.UpdateNamespace(npb.UpdateNamespaceRequest(namespace=namespace_pb2.Namespace(
        name=current.name, quota=namespace_pb2.NamespaceQuota(requests_per_second=-1)))),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_QUOTA")
    everything = (await stub.UpdateNamespace(npb.UpdateNamespaceRequest(
        namespace=namespace_pb2.Namespace(name=current.name, quota=namespace_pb2.NamespaceQuota(max_bytes=5)),
        update_mask=field_mask_pb2.FieldMask(paths=["quota"])))).namespace
    assert everything.quota == namespace_pb2.NamespaceQuota(max_bytes=5)


# --- limits across two replicas ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(stack_envs: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[ServerHandle]]:
    """Two servers on one database and one Redis."""
    log_dir = tmp_path_factory.mktemp("replicas")
    started = [start_server(stack_envs["file"], log_dir, f"replica-{i}", "file") for i in range(2)]
    yield started
    for handle in started:
        handle.process.stop()


def limited_namespace(replicas: list[ServerHandle], **quota: float) -> tuple[str, str]:
    """A namespace with `quota`, and a writer token on it."""
    operator = server_operator(replicas[0].address)
    name = f"q-{uuid.uuid4().hex[:10]}"
    create_namespace(replicas[0].address, operator, name, **quota)
    return name, issue_token(replicas[0].address, operator, {name: "admin"})


@pytest.fixture
async def two_apis(replicas: list[ServerHandle], request: pytest.FixtureRequest) -> AsyncIterator[list[Api]]:
    name, token = limited_namespace(replicas, **request.param)
    apis = [open_api(r.address, name, token=token) for r in replicas]
    yield apis
    for api in apis:
        await api.channel.close()


def quota_failure(error: aio.AioRpcError) -> error_details_pb2.QuotaFailure:
    found = [d for d in details_of(error) if isinstance(d, error_details_pb2.QuotaFailure)]
    assert len(found) == 1, details_of(error)
    return found[0]


@pytest.mark.acceptance
@pytest.mark.parametrize("two_apis", [{"max_datasets": 3}], indirect=True)
async def test_the_dataset_quota_holds_across_replicas(two_apis: list[Api]) -> None:
    calls = [two_apis[i % 2].datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id=f"d{i}")) for i in range(8)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, aio.AioRpcError)]
    assert len(made) == 3 and len(refused) == 5
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(error) == ("QUOTA_EXCEEDED", {"quota": "max_datasets", "limit": "3",
                                                        "subject": two_apis[0].parent})
        violation = quota_failure(error).violations[0]
        assert (violation.subject, violation.quota_id, violation.quota_value) == (two_apis[0].parent,
                                                                                  "max_datasets", 3)
    # An upload that would add a fourth dataset is refused too; one into an existing dataset is not.
    await fails(two_apis[1].uploads.CreateUpload(create_request("fourth", "f.csv")),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED")
    existing = made[0].dataset.name.rsplit("/", 1)[1]  # type: ignore[union-attr]
    await two_apis[1].uploads.CreateUpload(create_request(existing, "f.csv"))


@pytest.mark.acceptance
@pytest.mark.parametrize("two_apis", [{"max_open_uploads": 2}], indirect=True)
async def test_the_open_upload_quota_holds_across_replicas(two_apis: list[Api]) -> None:
    results = await asyncio.gather(*(two_apis[i % 2].uploads.CreateUpload(create_request("ds", f"{i}.csv"))
                                     for i in range(6)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, aio.AioRpcError)]
    assert len(refused) == 4
    assert {error_info(e)[0] for e in refused} == {"TOO_MANY_OPEN_UPLOADS"}
    assert quota_failure(refused[0]).violations[0].quota_id == "max_open_uploads"


@pytest.mark.acceptance
@pytest.mark.parametrize("two_apis", [{"max_bytes": 20 * MiB}], indirect=True)
async def test_the_byte_quota_counts_parts_as_they_are_committed(two_apis: list[Api],
                                                                 replicas: list[ServerHandle]) -> None:
    # Two 12 MiB files at once through the two replicas, under a 20 MiB quota: the part of the first to commit
    # counts, the other is refused as it would be committed and stays OPEN (resumable once there is room).
    error = await fails(two_apis[0].uploads.CreateUpload(create_request("big", "declared.bin", 21 * MiB)),
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED")
    assert quota_failure(error).violations[0].quota_id == "max_bytes"
    data = os.urandom(12 * MiB)
    opened = [(await two_apis[0].uploads.CreateUpload(create_request("big", f"{i}.bin"))).upload for i in range(2)]

    async def stream(name: str) -> AsyncIterator[upb.UploadRequest]:
        yield upb.UploadRequest(header=upb.UploadHeader(upload=name, write_offset=0))
        for start in range(0, len(data), MiB):
            yield upb.UploadRequest(chunk=upb.UploadChunk(data=data[start:start + MiB]))
        yield upb.UploadRequest(finish=upb.UploadFinish())

    results = await asyncio.gather(*(two_apis[i].uploads.Upload(stream(opened[i].name)) for i in range(2)),
                                   return_exceptions=True)
    staged = [r for r in results if isinstance(r, upb.UploadResponse)]
    refused = [r for r in results if isinstance(r, aio.AioRpcError)]
    assert len(staged) == 1 and len(refused) == 1, results
    assert error_info(refused[0])[0] == "QUOTA_EXCEEDED"
    loser = opened[results.index(refused[0])]
    now = (await two_apis[0].uploads.GetUpload(upb.GetUploadRequest(name=loser.name))).upload
    assert now.state == upload_pb2.UPLOAD_STATE_OPEN and now.committed_bytes == 0
    usage = (await two_apis[0].namespaces.GetNamespace(npb.GetNamespaceRequest(name=two_apis[0].parent))
             ).namespace.usage
    assert usage.stored_bytes == 12 * MiB
    # An operator raises the quota; the refused upload resumes and lands.
    operator = open_api(replicas[0].address, two_apis[0].namespace, token=server_operator(replicas[0].address))
    try:
        await operator.namespaces.UpdateNamespace(npb.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=two_apis[0].parent, quota=namespace_pb2.NamespaceQuota()),
            update_mask=field_mask_pb2.FieldMask(paths=["quota.max_bytes"])))
    finally:
        await operator.channel.close()
    resumed = await two_apis[1].uploads.Upload(stream(loser.name))
    assert resumed.upload.state == upload_pb2.UPLOAD_STATE_STAGED


@pytest.mark.acceptance
@pytest.mark.parametrize("two_apis", [{"requests_per_second": 5}], indirect=True)
async def test_the_rate_limit_holds_across_replicas(two_apis: list[Api]) -> None:
    # One token, calls spread over both replicas: the bucket (5 per second, a burst of 5) is in Redis.
    request = dpb.ListDatasetsRequest()
    started = time.monotonic()
    results = await asyncio.gather(*(two_apis[i % 2].datasets.ListDatasets(request) for i in range(40)),
                                   return_exceptions=True)
    elapsed = time.monotonic() - started
    allowed = [r for r in results if not isinstance(r, BaseException)]
    limited = [r for r in results if isinstance(r, aio.AioRpcError)]
    assert 5 <= len(allowed) <= 5 + 5 * elapsed + 1, (len(allowed), elapsed)
    assert len(allowed) + len(limited) == 40
    for error in limited:
        assert (error.code(), error_info(error)[0]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        delays = [d for d in details_of(error) if isinstance(d, error_details_pb2.RetryInfo)]
        assert len(delays) == 1 and 0 < delays[0].retry_delay.ToNanoseconds() <= 1e9
    # Waiting as RetryInfo says lets the next call through, on either replica.
    wait = max(d.retry_delay.ToNanoseconds() for e in limited for d in details_of(e)
               if isinstance(d, error_details_pb2.RetryInfo)) / 1e9
    await asyncio.sleep(wait)
    await two_apis[1].datasets.ListDatasets(request)


@pytest.mark.acceptance
def test_health_needs_no_token_and_is_never_limited(replicas: list[ServerHandle]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(replicas[0].address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(20):
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING

