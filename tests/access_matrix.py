"""The role table as tests see it: a request for every RPC of the contract (plus health and reflection), and
the outcome each kind of caller must get. Used by the matrix test and the fuzz test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, field_mask_pb2, message_factory
from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from quarry.v1 import (
    audit_service_pb2,
    capabilities_service_pb2,
    dataset_pb2,
    dataset_service_pb2,
    namespace_pb2,
    namespace_service_pb2,
    token_pb2,
    token_service_pb2,
    upload_pb2,
    upload_service_pb2,
)

from server.domain.access import RPC_RULES
from server.model.identity import Access

FLIGHT = "/arrow.flight.protocol.FlightService/"
GRPC_RULES = {name: rule for name, rule in RPC_RULES.items() if not name.startswith(FLIGHT)}

SERVICES = [dataset_service_pb2, upload_service_pb2, capabilities_service_pb2, token_service_pb2,
            namespace_service_pb2, audit_service_pb2]


def methods() -> dict[str, descriptor.MethodDescriptor]:
    """Every method the server serves, by full name."""
    found = {}
    descriptors = [s for module in SERVICES for s in module.DESCRIPTOR.services_by_name.values()]
    descriptors += [health_pb2.DESCRIPTOR.services_by_name["Health"],
                    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]
    for service in descriptors:
        for method in service.methods:
            found[f"/{service.full_name}/{method.name}"] = method
    return found


@dataclass
class Fixture:
    """What the requests name: the namespace under test, a dataset and a cancelled upload in it, a token to
    revoke."""

    namespace: str
    dataset: str
    upload: str
    victim: str

    @property
    def parent(self) -> str:
        return f"namespaces/{self.namespace}"

    @property
    def version(self) -> str:
        return f"{self.dataset}/versions/1"


def _upload_stream(f: Fixture, tag: str) -> list[upload_service_pb2.UploadRequest]:
    header = upload_service_pb2.UploadHeader(create=upload_service_pb2.CreateUploadRequest(
        parent=f.parent, upload=upload_pb2.Upload(dataset="ds", path=f"{tag}.csv")))
    return [upload_service_pb2.UploadRequest(header=header),
            upload_service_pb2.UploadRequest(chunk=upload_service_pb2.UploadChunk(data=b"a,b\n1,2\n")),
            upload_service_pb2.UploadRequest(finish=upload_service_pb2.UploadFinish())]


D, U, T, N = dataset_service_pb2, upload_service_pb2, token_service_pb2, namespace_service_pb2

# Method name -> request (or list of requests, for client streams) built from the fixture and a tag unique to
# the caller, so that calls that are allowed to create something create distinct things.
REQUESTS: dict[str, Callable[[Fixture, str], Any]] = {
    "/quarry.v1.DatasetService/CreateDataset": lambda f, t: D.CreateDatasetRequest(parent=f.parent,
                                                                                   dataset_id=f"new-{t}"),
    "/quarry.v1.DatasetService/GetDataset": lambda f, t: D.GetDatasetRequest(name=f.dataset),
    "/quarry.v1.DatasetService/ListDatasets": lambda f, t: D.ListDatasetsRequest(parent=f.parent),
    "/quarry.v1.DatasetService/UpdateDataset": lambda f, t: D.UpdateDatasetRequest(
        dataset=dataset_pb2.Dataset(name=f.dataset, description=t),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])),
    "/quarry.v1.DatasetService/DeleteDataset": lambda f, t: D.DeleteDatasetRequest(
        name=f"{f.parent}/datasets/missing"),
    "/quarry.v1.DatasetService/ListVersions": lambda f, t: D.ListVersionsRequest(parent=f.dataset),
    "/quarry.v1.DatasetService/GetVersion": lambda f, t: D.GetVersionRequest(name=f.version),
    "/quarry.v1.DatasetService/ListVersionFiles": lambda f, t: D.ListVersionFilesRequest(parent=f.version),
    "/quarry.v1.DatasetService/CommitVersion": lambda f, t: D.CommitVersionRequest(parent=f.dataset,
                                                                                   uploads=[f.upload]),
    "/quarry.v1.DatasetService/WatchVersion": lambda f, t: D.WatchVersionRequest(name=f.version),
    "/quarry.v1.DatasetService/DiffVersions": lambda f, t: D.DiffVersionsRequest(
        base_version=f.version, target_version=f"{f.dataset}/versions/2"),
    "/quarry.v1.DatasetService/DiffRows": lambda f, t: D.DiffRowsRequest(
        base_version=f.version, target_version=f.version, path="a.csv", key_columns=["id"]),
    "/quarry.v1.DatasetService/PreviewFile": lambda f, t: D.PreviewFileRequest(version=f.version, path="a.csv"),
    "/quarry.v1.DatasetService/GetFileStats": lambda f, t: D.GetFileStatsRequest(version=f.version, path="a.csv"),
    "/quarry.v1.DatasetService/ReadFile": lambda f, t: D.ReadFileRequest(version=f.version, path="a.csv"),
    "/quarry.v1.DatasetService/GetDownloadUrl": lambda f, t: D.GetDownloadUrlRequest(version=f.version,
                                                                                     path="a.csv"),
    "/quarry.v1.DatasetService/CloneDataset": lambda f, t: D.CloneDatasetRequest(
        source=f.dataset, parent=f.parent, dataset_id=f"clone-{t}"),
    "/quarry.v1.DatasetService/UndeleteDataset": lambda f, t: D.UndeleteDatasetRequest(
        name=f"{f.parent}/datasets/missing"),
    "/quarry.v1.DatasetService/WriteFile": lambda f, t: D.WriteFileRequest(parent=f.dataset, path=f"{t}.txt",
                                                                           content=b"notes\n"),
    "/quarry.v1.DatasetService/RegisterFiles": lambda f, t: D.RegisterFilesRequest(
        parent=f.dataset, source_uri=f"s3://missing-bucket-{t}/x/"),
    "/quarry.v1.UploadService/CreateUpload": lambda f, t: U.CreateUploadRequest(
        parent=f.parent, upload=upload_pb2.Upload(dataset="ds", path=f"{t}.csv")),
    "/quarry.v1.UploadService/Upload": _upload_stream,
    "/quarry.v1.UploadService/GetUpload": lambda f, t: U.GetUploadRequest(name=f.upload),
    "/quarry.v1.UploadService/ListUploads": lambda f, t: U.ListUploadsRequest(parent=f.parent),
    "/quarry.v1.UploadService/CompleteUpload": lambda f, t: U.CompleteUploadRequest(name=f.upload),
    "/quarry.v1.UploadService/CancelUpload": lambda f, t: U.CancelUploadRequest(name=f.upload),
    "/quarry.v1.UploadService/RetryUpload": lambda f, t: U.RetryUploadRequest(name=f.upload),
    "/quarry.v1.UploadService/WatchUpload": lambda f, t: U.WatchUploadRequest(name=f.upload),
    "/quarry.v1.CapabilitiesService/GetCapabilities": lambda f, t: capabilities_service_pb2.GetCapabilitiesRequest(),
    "/quarry.v1.TokenService/CreateToken": lambda f, t: T.CreateTokenRequest(token=token_pb2.Token(
        principal=f"made-by-{t}", grants=[token_pb2.Grant(namespace=f.parent, role=token_pb2.ROLE_READER)])),
    "/quarry.v1.TokenService/ListTokens": lambda f, t: T.ListTokensRequest(parent=f.parent),
    "/quarry.v1.TokenService/RevokeToken": lambda f, t: T.RevokeTokenRequest(name=f.victim),
    "/quarry.v1.NamespaceService/CreateNamespace": lambda f, t: N.CreateNamespaceRequest(
        namespace_id=f"made-{uuid.uuid4().hex[:8]}"),
    "/quarry.v1.NamespaceService/ListNamespaces": lambda f, t: N.ListNamespacesRequest(),
    "/quarry.v1.NamespaceService/GetNamespace": lambda f, t: N.GetNamespaceRequest(name=f.parent),
    "/quarry.v1.NamespaceService/UpdateNamespace": lambda f, t: N.UpdateNamespaceRequest(
        namespace=namespace_pb2.Namespace(name=f.parent, quota=namespace_pb2.NamespaceQuota(max_datasets=1000)),
        update_mask=field_mask_pb2.FieldMask(paths=["quota.max_datasets"])),
    "/quarry.v1.AuditService/ListAuditEvents": lambda f, t: audit_service_pb2.ListAuditEventsRequest(
        parent=f.parent),
    "/grpc.health.v1.Health/Check": lambda f, t: health_pb2.HealthCheckRequest(),
    "/grpc.health.v1.Health/Watch": lambda f, t: health_pb2.HealthCheckRequest(),
    "/grpc.health.v1.Health/List": lambda f, t: health_pb2.HealthListRequest(),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": lambda f, t: [
        reflection_pb2.ServerReflectionRequest(list_services="")],
}


@dataclass(frozen=True)
class Outcome:
    """What a call ended with: a status code, and the ErrorInfo reason and metadata of a failure."""

    code: grpc.StatusCode
    reason: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


async def _requests(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def invoke(channel: aio.Channel, name: str, request: Any, metadata: tuple[tuple[str, str], ...],
                 timeout: float = 30) -> Outcome:
    """Call method `name` with `request` through a generic stub; the outcome (streams: read the first message
    at most, which is all an endless stream like Health.Watch needs to show it was admitted)."""
    from tests.support import error_info

    method = methods()[name]
    response_class = message_factory.GetMessageClass(method.output_type)
    kwargs = {"request_serializer": lambda m: m.SerializeToString(), "response_deserializer": response_class.FromString}
    try:
        if method.client_streaming and method.server_streaming:
            call = channel.stream_stream(name, **kwargs)(_requests(request), metadata=metadata, timeout=timeout)
            async for _ in call:
                break
            call.cancel()
        elif method.client_streaming:
            await channel.stream_unary(name, **kwargs)(_requests(request), metadata=metadata, timeout=timeout)
        elif method.server_streaming:
            stream = channel.unary_stream(name, **kwargs)(request, metadata=metadata, timeout=timeout)
            async for _ in stream:
                break  # admitted: the first message came (an endless stream such as Health.Watch sends no more)
            stream.cancel()
        else:
            await channel.unary_unary(name, **kwargs)(request, metadata=metadata, timeout=timeout)
    except aio.AioRpcError as error:
        reason, info = error_info(error)
        return Outcome(error.code(), reason, tuple(sorted(info.items())))
    return Outcome(grpc.StatusCode.OK)


# The kinds of caller, and the role each holds in the namespace under test ("other-admin" is admin elsewhere).
CALLERS = ["no-token", "malformed", "unknown", "revoked", "expired", "reader", "writer", "admin", "other-admin",
           "operator"]
UNAUTHENTICATED = {"no-token": "TOKEN_MISSING", "malformed": "TOKEN_INVALID", "unknown": "TOKEN_INVALID",
                   "revoked": "TOKEN_REVOKED", "expired": "TOKEN_EXPIRED"}
RANK = {"reader": 1, "writer": 2, "admin": 3}


def expected(name: str, caller: str, namespace: str, other: str) -> Outcome | None:
    """The denial the role table prescribes for `caller` calling `name` (None: the call is admitted)."""
    access = RPC_RULES[name].access
    if access is Access.NONE:
        return None
    if caller in UNAUTHENTICATED:
        return Outcome(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED[caller])
    if access is Access.AUTHENTICATED or caller == "operator":
        return None
    if access is Access.OPERATOR:
        home = other if caller == "other-admin" else namespace  # where the caller acts: its first grant
        return Outcome(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", (("namespace", home), ("role", "operator")))
    if caller == "other-admin":
        if name == "/quarry.v1.TokenService/RevokeToken":
            return None  # an admin where it acts; the token is not its to manage, which is NOT_FOUND
        return Outcome(grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED", (("namespace", namespace),))
    needed = access.value
    if RANK[caller] < RANK[needed]:
        return Outcome(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", (("namespace", namespace),
                                                                            ("role", needed)))
    return None
