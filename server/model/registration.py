"""Registered files: objects outside Quarry's store that a version lists without copying them.

A registration names a source (an `s3://bucket/prefix` the server's credentials can read, or a `file://` directory
under one of QUARRY_REGISTER_ROOTS) and which of its objects to take (globs on their paths below the prefix).
Each registered object is pinned by what identifies its bytes (its ETag, and its version id where the bucket
keeps versions; a local file's size and modification time): a read of an object that changed since fails
rather than serving different bytes.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any

EXTERNAL_PREFIX = "external/"


@dataclass(frozen=True)
class Registration:
    """What RegisterFiles asked for (stored with the version it builds)."""

    source_uri: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    copy: bool = False
    path_prefix: str = ""

    def wants(self, relative: str) -> bool:
        """Whether an object at `relative` (its path below the source prefix) is taken."""
        if self.include and not any(fnmatch.fnmatchcase(relative, glob) for glob in self.include):
            return False
        return not any(fnmatch.fnmatchcase(relative, glob) for glob in self.exclude)

    def to_json(self) -> dict[str, Any]:
        """The jsonb form."""
        return {"source_uri": self.source_uri, "include": list(self.include), "exclude": list(self.exclude),
                "copy": self.copy, "path_prefix": self.path_prefix}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Registration | None:
        """Read the jsonb form (None: the version was not a registration)."""
        if not value:
            return None
        return cls(value["source_uri"], tuple(value.get("include", [])), tuple(value.get("exclude", [])),
                   bool(value.get("copy", False)), value.get("path_prefix", ""))


@dataclass(frozen=True)
class ExternalObject:
    """One object of a source, as listed: where it is, what pins its bytes, its size and path in the version."""

    uri: str  # s3://bucket/key or file:///path
    etag: str
    size: int
    relative: str  # below the source prefix
    version_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def key(self, sha256: str) -> str:
        """The key of its fresh_objects row: by content and location, so re-registering it updates the pin."""
        return f"{EXTERNAL_PREFIX}{sha256}/{hashlib.sha256(self.uri.encode()).hexdigest()[:32]}"
