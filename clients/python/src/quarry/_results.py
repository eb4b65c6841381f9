"""What the high-level helpers return: the resource, plus what it took to get there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DirectoryUploadResult", "DownloadResult", "ProgressCallback", "UploadResult"]

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as bytes go out or come in; may be called from worker threads."""


@dataclass
class UploadResult:
    """An uploaded file: the upload (STAGED, or PROMOTED when waited for) and the bytes it took."""

    upload: Any  # quarry.v1.upload_pb2.Upload
    path: Path
    size: int
    sha256: str
    bytes_sent: int  # chunk bytes sent by this call, including any re-sent after a broken stream
    bytes_skipped: int  # bytes already committed by an earlier, interrupted call: not sent again
    resumed: bool
    streams: int  # Upload streams opened by this call

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"upload": self.upload.name, "uid": self.upload.uid, "path": self.upload.path,
                "dataset": self.upload.dataset, "file": str(self.path), "size": self.size, "sha256": self.sha256,
                "state": _enum_name(self.upload, "state"), "bytes_sent": self.bytes_sent,
                "bytes_skipped": self.bytes_skipped, "resumed": self.resumed, "streams": self.streams}


@dataclass
class DirectoryUploadResult:
    """A directory upload: one UploadResult per file, and the version that holds them all."""

    files: list[UploadResult]
    version: Any = None  # quarry.v1.version_pb2.Version, once committed
    ignored: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        """Bytes sent over all files."""
        return sum(f.bytes_sent for f in self.files)

    @property
    def bytes_skipped(self) -> int:
        """Bytes not sent because an earlier call had committed them."""
        return sum(f.bytes_skipped for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"files": [f.to_dict() for f in self.files], "ignored": self.ignored,
                "version": self.version.name if self.version is not None else None,
                "bytes_sent": self.bytes_sent, "bytes_skipped": self.bytes_skipped}


@dataclass
class DownloadResult:
    """A downloaded, verified file."""

    path: Path
    size: int
    sha256: str
    bytes_received: int
    bytes_resumed: int  # bytes kept from a partial file of an earlier, interrupted download

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"path": str(self.path), "size": self.size, "sha256": self.sha256,
                "bytes_received": self.bytes_received, "bytes_resumed": self.bytes_resumed}


def _enum_name(message: Any, field_name: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    return str(descriptor.values_by_number[getattr(message, field_name)].name)
