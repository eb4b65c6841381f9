"""DatasetService, dataset methods: Create/Get/List/Update/DeleteDataset."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import dataset_service_pb2 as pb

from server.api.base import ServicerBase
from server.domain.errors import NotSupported


class DatasetMethods(ServicerBase):
    """The dataset half of DatasetService."""

    async def CreateDataset(self, request: pb.CreateDatasetRequest,
                            context: aio.ServicerContext) -> pb.CreateDatasetResponse:
        raise NotSupported("CreateDataset is not implemented yet", reason="NOT_IMPLEMENTED")

    async def GetDataset(self, request: pb.GetDatasetRequest, context: aio.ServicerContext) -> pb.GetDatasetResponse:
        raise NotSupported("GetDataset is not implemented yet", reason="NOT_IMPLEMENTED")

    async def ListDatasets(self, request: pb.ListDatasetsRequest,
                           context: aio.ServicerContext) -> pb.ListDatasetsResponse:
        raise NotSupported("ListDatasets is not implemented yet", reason="NOT_IMPLEMENTED")

    async def UpdateDataset(self, request: pb.UpdateDatasetRequest,
                            context: aio.ServicerContext) -> pb.UpdateDatasetResponse:
        raise NotSupported("UpdateDataset is not implemented yet", reason="NOT_IMPLEMENTED")

    async def DeleteDataset(self, request: pb.DeleteDatasetRequest,
                            context: aio.ServicerContext) -> pb.DeleteDatasetResponse:
        raise NotSupported("DeleteDataset is not implemented yet", reason="NOT_IMPLEMENTED")
