"""What this deployment supports and allows: the limits a generated client must respect."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """The limits GetCapabilities reports (from the settings) and the kind of object store."""

    max_message_bytes: int
    max_chunk_bytes: int
    min_part_bytes: int
    max_part_bytes: int
    max_upload_bytes: int
    max_open_uploads: int
    upload_expiry_seconds: float
    max_page_size: int
    max_preview_rows: int
    storage_kind: str
    auth_mode: str = "tokens"
    tls: bool = False
    client_certificates: bool = False
    max_url_ttl_seconds: float = 3600
    max_inline_bytes: int = 0

    @property
    def download_urls(self) -> bool:
        """Whether GetDownloadUrl can presign URLs (S3 can; a local directory cannot)."""
        return self.storage_kind == "s3"
