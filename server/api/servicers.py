"""Register Quarry's servicers on a gRPC server."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import dataset_service_pb2_grpc, upload_service_pb2_grpc

from server.api.caller import CallerResolver
from server.api.datasets import DatasetMethods
from server.api.uploads import UploadServicer
from server.api.versions import VersionMethods
from server.domain.services import Services


class DatasetServicer(DatasetMethods, VersionMethods, dataset_service_pb2_grpc.DatasetServiceServicer):
    """DatasetService: the dataset methods and the version methods."""


def add_quarry_servicers(server: aio.Server, services: Services, default_namespace: str,
                         idle_seconds: float) -> None:
    """Add DatasetService and UploadService (whose upload streams end after `idle_seconds` without a message)."""
    caller = CallerResolver(default_namespace)
    dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(services, caller), server)
    upload_service_pb2_grpc.add_UploadServiceServicer_to_server(
        UploadServicer(services.uploads, services.upload_stream, caller, idle_seconds), server)
