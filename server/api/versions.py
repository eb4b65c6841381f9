"""DatasetService, version methods: history, commits, diffs, previews, statistics and file bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio
from quarry.v1 import dataset_service_pb2 as pb

from server.api import convert
from server.api.base import ServicerBase
from server.domain.errors import NotSupported


def _todo(method: str) -> NotSupported:
    return NotSupported(f"{method} is not implemented yet", reason="NOT_IMPLEMENTED")


class VersionMethods(ServicerBase):
    """The version half of DatasetService."""

    async def ListVersions(self, request: pb.ListVersionsRequest,
                           context: aio.ServicerContext) -> pb.ListVersionsResponse:
        versions, token = await self.services.versions.history(self.caller(context), request.parent,
                                                               request.page_size, request.page_token)
        return pb.ListVersionsResponse(versions=[convert.version(v) for v in versions], next_page_token=token)

    async def GetVersion(self, request: pb.GetVersionRequest, context: aio.ServicerContext) -> pb.GetVersionResponse:
        version = await self.services.versions.get(self.caller(context), request.name)
        return pb.GetVersionResponse(version=convert.version(version))

    async def CommitVersion(self, request: pb.CommitVersionRequest,
                            context: aio.ServicerContext) -> pb.CommitVersionResponse:
        version = await self.services.versions.commit(
            self.caller(context), request.parent, request.base_version, list(request.uploads),
            list(request.delete_paths), request.message, request.request_id)
        return pb.CommitVersionResponse(version=convert.version(version))

    async def DiffVersions(self, request: pb.DiffVersionsRequest,
                           context: aio.ServicerContext) -> pb.DiffVersionsResponse:
        raise _todo("DiffVersions")

    async def PreviewFile(self, request: pb.PreviewFileRequest,
                          context: aio.ServicerContext) -> pb.PreviewFileResponse:
        raise _todo("PreviewFile")

    async def GetFileStats(self, request: pb.GetFileStatsRequest,
                           context: aio.ServicerContext) -> pb.GetFileStatsResponse:
        raise _todo("GetFileStats")

    async def ReadFile(self, request: pb.ReadFileRequest,
                       context: aio.ServicerContext) -> AsyncIterator[pb.ReadFileResponse]:
        raise _todo("ReadFile")
        yield pb.ReadFileResponse()  # pragma: no cover - makes this an async generator

    async def GetDownloadUrl(self, request: pb.GetDownloadUrlRequest,
                             context: aio.ServicerContext) -> pb.GetDownloadUrlResponse:
        raise _todo("GetDownloadUrl")
