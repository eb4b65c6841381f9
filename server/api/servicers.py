"""Register Quarry's servicers on a gRPC server."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import (
    audit_service_pb2_grpc,
    dataset_service_pb2_grpc,
    namespace_service_pb2_grpc,
    token_service_pb2_grpc,
    upload_service_pb2_grpc,
)

from server.api.caller import CallerResolver
from server.api.datasets import DatasetMethods
from server.api.identity import AuditServicer, NamespaceServicer, TokenServicer
from server.api.uploads import UploadServicer
from server.api.versions import VersionMethods
from server.domain.services import Services


class DatasetServicer(DatasetMethods, VersionMethods, dataset_service_pb2_grpc.DatasetServiceServicer):
    """DatasetService: the dataset methods and the version methods."""


def add_quarry_servicers(server: aio.Server, services: Services, idle_seconds: float) -> None:
    """Add DatasetService, UploadService (whose upload streams end after `idle_seconds` without a message),
    TokenService, NamespaceService and AuditService."""
    caller = CallerResolver()
    dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(services, caller), server)
    upload_service_pb2_grpc.add_UploadServiceServicer_to_server(
        UploadServicer(services.uploads, services.upload_stream, caller, idle_seconds), server)
    token_service_pb2_grpc.add_TokenServiceServicer_to_server(TokenServicer(services.tokens, caller), server)
    namespace_service_pb2_grpc.add_NamespaceServiceServicer_to_server(
        NamespaceServicer(services.namespaces, caller), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(services.audit, caller), server)
