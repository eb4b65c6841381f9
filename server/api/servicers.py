"""Register Quarry's servicers on a gRPC server."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import dataset_service_pb2_grpc, upload_service_pb2_grpc

from server.api.unimplemented import unimplemented
from server.dependencies import Dependencies
from server.settings import Settings

DATASET_METHODS = ["CreateDataset", "GetDataset", "ListDatasets", "UpdateDataset", "DeleteDataset",
                   "ListVersions", "GetVersion", "CommitVersion", "DiffVersions", "PreviewFile", "GetFileStats",
                   "ReadFile", "GetDownloadUrl"]
UPLOAD_METHODS = ["CreateUpload", "Upload", "GetUpload", "ListUploads", "CompleteUpload", "CancelUpload",
                  "RetryUpload", "WatchUpload"]


def add_quarry_servicers(server: aio.Server, settings: Settings, deps: Dependencies) -> None:
    """Add DatasetService and UploadService."""
    dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(
        unimplemented(dataset_service_pb2_grpc.DatasetServiceServicer, DATASET_METHODS), server)
    upload_service_pb2_grpc.add_UploadServiceServicer_to_server(
        unimplemented(upload_service_pb2_grpc.UploadServiceServicer, UPLOAD_METHODS), server)
