"""DatasetService, version methods: history, commits, diffs, previews, statistics and file bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio
from quarry.v1 import dataset_service_pb2 as pb

from server.api.base import ServicerBase
from server.domain.errors import NotSupported


def _todo(method: str) -> NotSupported:
    return NotSupported(f"{method} is not implemented yet", reason="NOT_IMPLEMENTED")


class VersionMethods(ServicerBase):
    """The version half of DatasetService."""

    async def ListVersions(self, request: pb.ListVersionsRequest,
                           context: aio.ServicerContext) -> pb.ListVersionsResponse:
        raise _todo("ListVersions")

    async def GetVersion(self, request: pb.GetVersionRequest, context: aio.ServicerContext) -> pb.GetVersionResponse:
        raise _todo("GetVersion")

    async def CommitVersion(self, request: pb.CommitVersionRequest,
                            context: aio.ServicerContext) -> pb.CommitVersionResponse:
        raise _todo("CommitVersion")

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
