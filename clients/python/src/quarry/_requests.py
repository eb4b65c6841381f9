"""Request messages built from keyword arguments, shared by Client and AsyncClient."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast

from google.protobuf import duration_pb2, field_mask_pb2

from quarry._exceptions import UsageError
from quarry.v1 import common_pb2, dataset_pb2, upload_pb2
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

__all__ = ["View", "create_dataset", "create_upload", "file_formats", "update_dataset", "uploads_filter", "view"]

View = Literal["basic", "full"]
"""How much of a version's files a read returns: "basic" (no columns, no validation reports) or "full"."""


def request_id(given: str | None) -> str:
    """The caller's idempotency key, or a fresh one (which makes the call safe to retry)."""
    return given or str(uuid.uuid4())


def create_dataset(parent: str, name: str, *, description: str, labels: Mapping[str, str] | None,
                   rules: Any, request_id_: str | None) -> dpb.CreateDatasetRequest:
    """CreateDataset with a request_id."""
    dataset = dataset_pb2.Dataset(description=description, labels=dict(labels or {}))
    if rules is not None:
        dataset.rules.CopyFrom(rules)
    return dpb.CreateDatasetRequest(parent=parent, dataset_id=name, dataset=dataset,
                                    request_id=request_id(request_id_))


def update_dataset(name: str, *, description: str | None, labels: Mapping[str, str] | None, rules: Any,
                   etag: str) -> dpb.UpdateDatasetRequest:
    """UpdateDataset changing exactly the fields given (not None)."""
    dataset = dataset_pb2.Dataset(name=name, etag=etag)
    paths = []
    if description is not None:
        dataset.description = description
        paths.append("description")
    if labels is not None:
        dataset.labels.update(labels)
        paths.append("labels")
    if rules is not None:
        dataset.rules.CopyFrom(rules)
        paths.append("rules")
    if not paths:
        raise UsageError("nothing to update: give description, labels or rules")
    return dpb.UpdateDatasetRequest(dataset=dataset, update_mask=field_mask_pb2.FieldMask(paths=paths))


def create_upload(parent: str, dataset: str, path: str, *, size: int | None, sha256: str, content_type: str,
                  auto_commit: bool, commit_message: str, request_id_: str | None) -> upb.CreateUploadRequest:
    """CreateUpload with a request_id."""
    upload = upload_pb2.Upload(dataset=dataset, path=path, declared_sha256=sha256, content_type=content_type,
                               auto_commit=auto_commit, commit_message=commit_message)
    if size is not None:
        upload.declared_size_bytes = size
    return upb.CreateUploadRequest(parent=parent, upload=upload, request_id=request_id(request_id_))


def uploads_filter(state: str | None, dataset: str | None, extra: str = "") -> str:
    """A ListUploads filter: `state = FAILED AND dataset = "x"` (state without its prefix, any case)."""
    terms = [extra] if extra else []
    if state:
        terms.append(f"state = {state.upper().removeprefix('UPLOAD_STATE_')}")
    if dataset:
        if '"' in dataset or "\\" in dataset:
            raise UsageError(f"invalid dataset name {dataset!r}")
        terms.append(f'dataset = "{dataset}"')
    return " AND ".join(terms)


def ttl(seconds: float | None) -> duration_pb2.Duration | None:
    """A Duration, or None for the server's default."""
    if seconds is None:
        return None
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def view(value: View) -> dpb.VersionView:
    """The VersionView of "basic" or "full"."""
    views = {"basic": dpb.VERSION_VIEW_BASIC, "full": dpb.VERSION_VIEW_FULL}
    if value not in views:
        raise UsageError(f"invalid view {value!r}: use 'basic' or 'full'")
    return views[value]


def file_formats(values: Iterable[str | int]) -> list[common_pb2.FileFormat]:
    """FileFormat numbers from names ("parquet", "PARQUET", "FILE_FORMAT_PARQUET") or numbers."""
    numbers: list[common_pb2.FileFormat] = []
    for value in values:
        if isinstance(value, int):
            numbers.append(cast(common_pb2.FileFormat, value))
            continue
        name = "FILE_FORMAT_" + value.strip().upper().removeprefix("FILE_FORMAT_")
        try:
            numbers.append(cast(common_pb2.FileFormat, common_pb2.FileFormat.Value(name)))
        except ValueError:
            raise UsageError(f"unknown file format {value!r}: use csv, jsonl, parquet, text or binary") from None
    return numbers
