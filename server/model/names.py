"""Names and paths: validation, and the resource names of the contract.

    namespaces/{namespace}
    namespaces/{namespace}/datasets/{dataset}
    namespaces/{namespace}/datasets/{dataset}/versions/{uid}      (canonical; a number or "latest" on input)
    namespaces/{namespace}/uploads/{uid}
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from server.model.errors import InvalidArgument

MAX_NAME = 63  # namespace, dataset and label key
NAME_PATTERN = re.compile(rf"^[a-z0-9][a-z0-9_.-]{{0,{MAX_NAME - 1}}}$")
MAX_PATH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def dataset_name(name: str, field: str = "dataset") -> str:
    """A dataset name: 1-63 characters of lower-case letters, digits and "-_.", starting with a letter or digit."""
    if not NAME_PATTERN.match(name):
        raise InvalidArgument.field(field, f"invalid dataset name {name!r}: use 1-63 lower-case letters, digits "
                                           "and -_. starting with a letter or digit", reason="INVALID_DATASET_NAME")
    return name


def file_path(path: str, field: str = "path") -> str:
    """A file path inside a version: relative, normalised, "/"-separated, no "..", at most 1,024 characters."""
    if not path:
        raise InvalidArgument.field(field, "path is empty", reason="INVALID_PATH")
    if len(path) > MAX_PATH:
        raise InvalidArgument.field(field, f"path has {len(path)} characters; at most {MAX_PATH}",
                                    reason="INVALID_PATH")
    if _CONTROL.search(path):
        raise InvalidArgument.field(field, "path contains a NUL or control character", reason="INVALID_PATH")
    if path.startswith("/"):
        raise InvalidArgument.field(field, f"path {path!r} is absolute; it must be relative", reason="INVALID_PATH")
    if "\\" in path:
        raise InvalidArgument.field(field, f"path {path!r} contains a backslash; use /", reason="INVALID_PATH")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidArgument.field(field, f"path {path!r} is not normalised (empty, '.' or '..' segment)",
                                    reason="INVALID_PATH")
    return path


def sha256_hex(value: str, field: str) -> str:
    """A lower-case hex SHA-256 (64 characters)."""
    if not SHA256_PATTERN.match(value):
        raise InvalidArgument.field(field, "must be 64 lower-case hex characters", reason="INVALID_SHA256")
    return value


def uid(value: str, field: str) -> uuid.UUID:
    """A UUID."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument.field(field, f"{value!r} is not a valid id", reason="INVALID_NAME") from None


def _segments(name: str, field: str, shape: str, count: int) -> list[str]:
    parts = name.split("/")
    if len(parts) != count or any(not p for p in parts):
        raise InvalidArgument.field(field, f"must look like {shape}, got {name!r}", reason="INVALID_NAME")
    return parts


@dataclass(frozen=True)
class DatasetRef:
    """A dataset by namespace and name."""

    namespace: str
    dataset: str

    @property
    def name(self) -> str:
        """Its resource name."""
        return f"namespaces/{self.namespace}/datasets/{self.dataset}"


@dataclass(frozen=True)
class VersionRef:
    """A version by number, by uid, or "latest"."""

    dataset: DatasetRef
    number: int | None = None
    uid: uuid.UUID | None = None

    @property
    def latest(self) -> bool:
        """Whether this names the dataset's current version."""
        return self.number is None and self.uid is None


def parse_dataset(name: str, field: str = "name") -> DatasetRef:
    """`namespaces/{ns}/datasets/{dataset}`."""
    shape = "namespaces/{namespace}/datasets/{dataset}"
    parts = _segments(name, field, shape, 4)
    if parts[0] != "namespaces" or parts[2] != "datasets":
        raise InvalidArgument.field(field, f"must look like {shape}, got {name!r}", reason="INVALID_NAME")
    return DatasetRef(parts[1], dataset_name(parts[3], field))


def parse_version(name: str, field: str = "name") -> VersionRef:
    """`namespaces/{ns}/datasets/{dataset}/versions/{number | uid | latest}`."""
    shape = "namespaces/{namespace}/datasets/{dataset}/versions/{number}"
    parts = _segments(name, field, shape, 6)
    if parts[4] != "versions":
        raise InvalidArgument.field(field, f"must look like {shape}, got {name!r}", reason="INVALID_NAME")
    dataset = parse_dataset("/".join(parts[:4]), field)
    ident = parts[5]
    if ident == "latest":
        return VersionRef(dataset)
    if ident.isdigit():
        number = int(ident)
        if number < 1 or number > 2**31 - 1:
            raise InvalidArgument.field(field, f"version number {ident} is out of range", reason="INVALID_NAME")
        return VersionRef(dataset, number=number)
    return VersionRef(dataset, uid=uid(ident, field))


def parse_upload(name: str, field: str = "name") -> tuple[str, uuid.UUID]:
    """`namespaces/{ns}/uploads/{uid}` → (namespace, uid)."""
    shape = "namespaces/{namespace}/uploads/{uid}"
    parts = _segments(name, field, shape, 4)
    if parts[0] != "namespaces" or parts[2] != "uploads":
        raise InvalidArgument.field(field, f"must look like {shape}, got {name!r}", reason="INVALID_NAME")
    return parts[1], uid(parts[3], field)


def upload_name(namespace: str, upload_id: uuid.UUID) -> str:
    """The resource name of an upload."""
    return f"namespaces/{namespace}/uploads/{upload_id}"


def version_name(namespace: str, dataset: str, version_id: uuid.UUID) -> str:
    """The canonical resource name of a version (AIP-122): by uid, the same from the commit on (a number exists
    only once the version is READY). A number or "latest" is accepted on input as an alias."""
    return f"namespaces/{namespace}/datasets/{dataset}/versions/{version_id}"


def validate_namespace(name: str) -> str:
    """A namespace name: 1-63 characters of lower-case letters, digits and "-_.", starting with a letter or digit."""
    if not NAME_PATTERN.match(name):
        raise InvalidArgument.field("namespace", f"invalid namespace name {name!r}", reason="INVALID_NAMESPACE")
    return name
