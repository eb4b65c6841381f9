"""DatasetService, dataset methods: Create/Get/List/Update/Delete/Clone/UndeleteDataset, and WriteFile."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import dataset_pb2
from quarry.v1 import dataset_service_pb2 as pb

from server.api import convert
from server.api.base import ServicerBase
from server.api.caller import CallerResolver
from server.domain.datasets import DatasetChanges, DatasetListing, NewDataset
from server.domain.inline import InlineWrite
from server.domain.lifecycle import CloneRequest
from server.domain.registration import RegisterRequest
from server.domain.services import Services
from server.model.datasets import Dataset
from server.model.registration import Registration


def new_dataset(request: pb.CreateDatasetRequest) -> NewDataset:
    """The writable fields of a create request."""
    fields: dataset_pb2.Dataset = request.dataset
    return NewDataset(name=request.dataset_id, description=fields.description, labels=dict(fields.labels),
                      rules=convert.rules_from(fields.rules), request_id=request.request_id or None)


def dataset_changes(request: pb.UpdateDatasetRequest) -> DatasetChanges:
    """The new values and the mask of an update request."""
    fields: dataset_pb2.Dataset = request.dataset
    paths = tuple(request.update_mask.paths)
    # Rules outside the mask are ignored (AIP-134), so a bad format there must not fail the conversion.
    wanted = not paths or "rules" in paths or "*" in paths
    return DatasetChanges(description=fields.description, labels=dict(fields.labels),
                          rules=convert.rules_from(fields.rules) if fields.HasField("rules") and wanted else None,
                          paths=paths)


class _Answers:
    """GetDataset's answer for each Dataset object the replica's cache hands out, built once per object.

    The cache returns the same (immutable) Dataset until the row changes, so its message need not be built on
    every read (the conversion was a sixth of the handler's time). Entries hold their Dataset, so an id cannot
    be reused while its entry stands; the map is emptied when full.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._answers: dict[int, tuple[Dataset, pb.GetDatasetResponse]] = {}

    def __call__(self, dataset: Dataset) -> pb.GetDatasetResponse:
        entry = self._answers.get(id(dataset))
        if entry is not None and entry[0] is dataset:
            return entry[1]
        if len(self._answers) >= self._limit:
            self._answers.clear()
        answer = pb.GetDatasetResponse(dataset=convert.dataset(dataset))
        self._answers[id(dataset)] = (dataset, answer)
        return answer


class DatasetMethods(ServicerBase):
    """The dataset half of DatasetService."""

    def __init__(self, services: Services, caller: CallerResolver) -> None:
        super().__init__(services, caller)
        self._answers = _Answers()

    async def CreateDataset(self, request: pb.CreateDatasetRequest,
                            context: aio.ServicerContext) -> pb.CreateDatasetResponse:
        dataset = await self.services.datasets.create(self.caller(context), request.parent, new_dataset(request))
        return pb.CreateDatasetResponse(dataset=convert.dataset(dataset))

    async def GetDataset(self, request: pb.GetDatasetRequest, context: aio.ServicerContext) -> pb.GetDatasetResponse:
        dataset = await self.services.datasets.get(self.caller(context), request.name)
        return self._answers(dataset)

    async def ListDatasets(self, request: pb.ListDatasetsRequest,
                           context: aio.ServicerContext) -> pb.ListDatasetsResponse:
        listing = DatasetListing(parent=request.parent, page_size=request.page_size, page_token=request.page_token,
                                 filter=request.filter, order_by=request.order_by, show_deleted=request.show_deleted)
        page, token = await self.services.datasets.list(self.caller(context), listing)
        return pb.ListDatasetsResponse(datasets=[convert.dataset(d) for d in page], next_page_token=token)

    async def UpdateDataset(self, request: pb.UpdateDatasetRequest,
                            context: aio.ServicerContext) -> pb.UpdateDatasetResponse:
        dataset = await self.services.datasets.update(self.caller(context), request.dataset.name,
                                                      request.dataset.etag, dataset_changes(request))
        return pb.UpdateDatasetResponse(dataset=convert.dataset(dataset))

    async def DeleteDataset(self, request: pb.DeleteDatasetRequest,
                            context: aio.ServicerContext) -> pb.DeleteDatasetResponse:
        dataset = await self.services.datasets.delete(self.caller(context), request.name, request.etag)
        return pb.DeleteDatasetResponse(dataset=convert.dataset(dataset))

    async def CloneDataset(self, request: pb.CloneDatasetRequest,
                           context: aio.ServicerContext) -> pb.CloneDatasetResponse:
        clone = CloneRequest(source=request.source, parent=request.parent, name=request.dataset_id,
                             message=request.message, request_id=request.request_id or None)
        dataset, version = await self.services.lifecycle.clone(self.caller(context), clone)
        return pb.CloneDatasetResponse(dataset=convert.dataset(dataset), version=convert.version(version))

    async def UndeleteDataset(self, request: pb.UndeleteDatasetRequest,
                              context: aio.ServicerContext) -> pb.UndeleteDatasetResponse:
        dataset = await self.services.lifecycle.undelete(self.caller(context), request.name)
        return pb.UndeleteDatasetResponse(dataset=convert.dataset(dataset))

    async def WriteFile(self, request: pb.WriteFileRequest, context: aio.ServicerContext) -> pb.WriteFileResponse:
        write = InlineWrite(parent=request.parent, path=request.path, content=request.content,
                            content_type=request.content_type, message=request.message,
                            base_version=request.base_version, request_id=request.request_id or None)
        version = await self.services.inline.write(self.caller(context), write)
        return pb.WriteFileResponse(version=convert.version(version))

    async def RegisterFiles(self, request: pb.RegisterFilesRequest,
                            context: aio.ServicerContext) -> pb.RegisterFilesResponse:
        spec = Registration(request.source_uri, tuple(request.include), tuple(request.exclude), request.copy,
                            request.path_prefix)
        version = await self.services.registrations.register(
            self.caller(context), RegisterRequest(request.parent, spec, request.message, request.request_id or None))
        return pb.RegisterFilesResponse(version=convert.version(version))
