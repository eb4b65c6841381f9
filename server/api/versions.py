"""DatasetService, version methods: history, commits, diffs, previews, statistics and file bytes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from grpc import aio
from quarry.v1 import dataset_service_pb2 as pb

from server import metrics
from server.api import convert
from server.api.base import ServicerBase
from server.domain.files import FileFilter
from server.model.versions import VersionView


class VersionMethods(ServicerBase):
    """The version half of DatasetService."""

    async def ListVersions(self, request: pb.ListVersionsRequest,
                           context: aio.ServicerContext) -> pb.ListVersionsResponse:
        versions, token = await self.services.versions.history(self.caller(context), request.parent,
                                                               request.page_size, request.page_token)
        return pb.ListVersionsResponse(versions=[convert.version(v) for v in versions], next_page_token=token)

    async def GetVersion(self, request: pb.GetVersionRequest, context: aio.ServicerContext) -> pb.GetVersionResponse:
        full = convert.view_from(request.view) is VersionView.FULL
        version = await self.services.versions.get(self.caller(context), request.name, with_files=full)
        return pb.GetVersionResponse(version=convert.version(version))

    async def ListVersionFiles(self, request: pb.ListVersionFilesRequest,
                               context: aio.ServicerContext) -> pb.ListVersionFilesResponse:
        view = convert.view_from(request.view)
        which = FileFilter(request.path_prefix, convert.formats_from(request.formats, "formats", "INVALID_FORMAT"))
        page = await self.services.files.list(self.caller(context), request.parent, request.page_size,
                                              request.page_token, which, view)
        return convert.file_page(page, view)

    async def CommitVersion(self, request: pb.CommitVersionRequest,
                            context: aio.ServicerContext) -> pb.CommitVersionResponse:
        version = await self.services.versions.commit(
            self.caller(context), request.parent, request.base_version, list(request.uploads),
            list(request.delete_paths), request.message, request.request_id)
        return pb.CommitVersionResponse(version=convert.version(version))

    async def WatchVersion(self, request: pb.WatchVersionRequest,
                           context: aio.ServicerContext) -> AsyncIterator[pb.WatchVersionResponse]:
        async for version in self.services.versions.watch(self.caller(context), request.name):
            yield pb.WatchVersionResponse(version=convert.version(version))

    async def DiffVersions(self, request: pb.DiffVersionsRequest,
                           context: aio.ServicerContext) -> pb.DiffVersionsResponse:
        view = convert.view_from(request.view)
        diff = await self.services.files.diff(self.caller(context), request.base_version, request.target_version, view,
                                              request.page_size, request.page_token)
        return convert.version_diff(diff, view)

    async def DiffRows(self, request: pb.DiffRowsRequest, context: aio.ServicerContext) -> pb.DiffRowsResponse:
        diff = await self.services.row_diffs.diff(self.caller(context), request.base_version, request.target_version,
                                                  request.path, list(request.key_columns), request.sample_rows)
        return convert.row_diff(diff)

    async def PreviewFile(self, request: pb.PreviewFileRequest,
                          context: aio.ServicerContext) -> pb.PreviewFileResponse:
        preview = await self.services.files.preview(self.caller(context), request.version, request.path,
                                                    request.row_limit)
        return convert.preview(preview)

    async def GetFileStats(self, request: pb.GetFileStatsRequest,
                           context: aio.ServicerContext) -> pb.GetFileStatsResponse:
        file = await self.services.files.stats(self.caller(context), request.version, request.path)
        return convert.file_stats(file)

    async def ReadFile(self, request: pb.ReadFileRequest,
                       context: aio.ServicerContext) -> AsyncIterator[bytes]:
        read = await self.services.files.read(self.caller(context), request.version, request.path, request.offset,
                                              request.limit, request.rendition)
        # Each message is read from the store only when gRPC asks for the next one: a slow reader holds us back.
        # Closed with this generator (a cancelled call): the read's grant goes back now, not when the collector
        # finds the suspended generator.
        async with contextlib.aclosing(read.chunks()) as chunks:
            async for offset, data in chunks:
                metrics.READ_BYTES.labels(protocol="grpc").inc(len(data))
                yield convert.read_chunk(read, offset, data)  # encoded: ReadFile's serializer passes it through

    async def GetDownloadUrl(self, request: pb.GetDownloadUrlRequest,
                             context: aio.ServicerContext) -> pb.GetDownloadUrlResponse:
        url = await self.services.files.download_url(self.caller(context), request.version, request.path,
                                                     convert.duration_seconds(request.ttl))
        return convert.download_url(url)
