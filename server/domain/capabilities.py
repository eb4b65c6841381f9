"""What this deployment supports and allows: the limits a generated client must respect."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.datasets import MAX_LABEL_VALUE, MAX_LABELS
from server.domain.parts import MAX_PARTS
from server.domain.versions import MAX_CHANGES
from server.model.names import MAX_NAME, MAX_PATH

API_VERSIONS = ("v1", "v1")  # the oldest and newest proto package this server serves


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
    # Fixed by the code, not by settings: reported so a generated client can check before it calls.
    api_versions: tuple[str, str] = API_VERSIONS
    max_path_length: int = MAX_PATH
    max_labels: int = MAX_LABELS
    max_label_key_length: int = MAX_NAME
    max_label_value_length: int = MAX_LABEL_VALUE
    max_changes_per_commit: int = MAX_CHANGES
    max_parts: int = MAX_PARTS
    max_inline_bytes: int = 0

    @property
    def download_urls(self) -> bool:
        """Whether GetDownloadUrl can presign URLs (S3 can; a local directory cannot)."""
        return self.storage_kind == "s3"
