"""CapabilitiesService: the limits a generated client must respect."""

from __future__ import annotations

from google.protobuf import duration_pb2
from grpc import aio
from quarry.v1 import capabilities_service_pb2 as pb
from quarry.v1 import capabilities_service_pb2_grpc as pb_grpc
from quarry.v1 import common_pb2

from server import __version__
from server.api import convert
from server.domain.capabilities import Capabilities
from server.model.datasets import FileFormat


class CapabilitiesServicer(pb_grpc.CapabilitiesServiceServicer):
    """Answers GetCapabilities."""

    def __init__(self, capabilities: Capabilities) -> None:
        self._response = _capabilities(capabilities)

    async def GetCapabilities(self, request: pb.GetCapabilitiesRequest,
                              context: aio.ServicerContext) -> pb.GetCapabilitiesResponse:
        return self._response


def _capabilities(settings: Capabilities) -> pb.GetCapabilitiesResponse:
    expiry = duration_pb2.Duration()
    expiry.FromNanoseconds(int(settings.upload_expiry_seconds * 1e9))
    url_ttl = duration_pb2.Duration()
    url_ttl.FromNanoseconds(int(settings.max_url_ttl_seconds * 1e9))
    return pb.GetCapabilitiesResponse(
        server_version=__version__,
        max_message_bytes=settings.max_message_bytes,
        max_chunk_bytes=settings.max_chunk_bytes,
        min_part_size_bytes=settings.min_part_bytes,
        max_part_size_bytes=settings.max_part_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_open_uploads=settings.max_open_uploads,
        upload_expiry=expiry,
        checksum_algorithms=[common_pb2.CHECKSUM_ALGORITHM_CRC32C, common_pb2.CHECKSUM_ALGORITHM_SHA256],
        formats=[convert.file_format(f) for f in FileFormat],
        max_page_size=settings.max_page_size,
        max_preview_rows=settings.max_preview_rows,
        download_urls=settings.download_urls,
        storage_kind=settings.storage_kind,
        auth_mode=pb.AUTH_MODE_TOKENS if settings.auth_mode == "tokens" else pb.AUTH_MODE_NONE,
        tls_required=settings.tls,
        client_certificate_required=settings.client_certificates,
        max_download_url_ttl=url_ttl,
        min_api_version=settings.api_versions[0],
        max_api_version=settings.api_versions[1],
        max_path_length=settings.max_path_length,
        max_labels=settings.max_labels,
        max_label_key_length=settings.max_label_key_length,
        max_label_value_length=settings.max_label_value_length,
        max_changes_per_commit=settings.max_changes_per_commit,
        max_parts=settings.max_parts,
        max_inline_bytes=settings.max_inline_bytes,
    )
