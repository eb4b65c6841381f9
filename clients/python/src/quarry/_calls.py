"""Every RPC of the contract as a call to make, built without I/O: shared by Client and AsyncClient.

A `Unary` names the stub method, holds the request (names, versions, pages, masks filled in), says how to
read the answer and whether the call may be repeated; a `Stream` is a server stream with its deadline; a
`Pages` is a List call and how to ask for the next page. The transports send them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from quarry import _names, _requests
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import dataset_pb2, upload_pb2, version_pb2
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

__all__ = ["WATCH_TIMEOUT", "Calls", "Pages", "Stream", "Unary", "Watch", "stream_timeout"]

WATCH_TIMEOUT = 3600.0
MiB = 1 << 20

T = TypeVar("T")


def stream_timeout(nbytes: int, base: float) -> float:
    """A deadline for a stream moving `nbytes`: the unary deadline plus a second per MiB (1 MiB/s floor)."""
    return base + nbytes / MiB


def _response(response: Any) -> Any:
    return response


@dataclass(frozen=True)
class Unary(Generic[T]):
    """A unary call: which method, the request, how to read the answer, whether a repeat is safe."""

    service: str  # "datasets", "uploads" or "capabilities"
    method: str
    request: Any
    read: Callable[[Any], T] = _response
    idempotent: bool = True
    timeout: float | None = None  # None: the client's deadline


@dataclass(frozen=True)
class Stream:
    """A server-streaming call with its deadline (None: the client's)."""

    service: str
    method: str
    request: Any
    timeout: float | None = None


@dataclass(frozen=True)
class Pages(Generic[T]):
    """A List call: its first page, the response field that holds the items, and the next page's call."""

    first: Unary[Any]
    field: str

    def items(self, response: Any) -> list[T]:
        """The items of one page."""
        return list(getattr(response, self.field))

    def joined(self, last: Any, items: list[T]) -> Any:
        """One answer for every page: the last page's response with the items of all pages, and no next page."""
        whole = type(last)()
        whole.CopyFrom(last)
        field = getattr(whole, self.field)
        del field[:]
        field.extend(items)
        whole.next_page_token = ""
        return whole

    def after(self, response: Any) -> Unary[Any] | None:
        """The call for the page after `response`, or None when it was the last."""
        if not response.next_page_token:
            return None
        request = type(self.first.request)()
        request.CopyFrom(self.first.request)
        request.page_token = response.next_page_token
        return replace(self.first, request=request)


class Watch:
    """A WatchUpload or WatchVersion followed across broken streams: each new stream gets what is left of one
    deadline."""

    def __init__(self, service: str, method: str, request: Any, timeout: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.method = method
        self.request = request
        self._clock = clock
        self.deadline = clock() + (timeout or WATCH_TIMEOUT)

    def call(self) -> Stream:
        """The stream to open now."""
        return Stream(self.service, self.method, self.request, max(0.001, self.deadline - self._clock()))


class Calls:
    """The calls of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.parent = f"namespaces/{namespace}"

    def dataset(self, name: str) -> str:
        """A dataset's resource name."""
        return _names.dataset_name(self.namespace, name)

    def version(self, dataset: str, version: int | str) -> str:
        """A version's resource name."""
        return _names.version_name(self.namespace, dataset, version)

    def upload(self, name: str) -> str:
        """An upload's resource name."""
        return _names.upload_name(self.namespace, name)

    # --- capabilities ----------------------------------------------------------------------------------

    def get_capabilities(self) -> Unary[cpb.GetCapabilitiesResponse]:
        """GetCapabilities."""
        return Unary("capabilities", "GetCapabilities", cpb.GetCapabilitiesRequest())

    # --- datasets --------------------------------------------------------------------------------------

    def create_dataset(self, name: str, *, description: str, labels: Mapping[str, str] | None,
                       rules: dataset_pb2.DatasetRules | None, request_id: str | None) -> Unary[dataset_pb2.Dataset]:
        """CreateDataset, safe to repeat: it carries a request_id."""
        request = _requests.create_dataset(self.parent, name, description=description, labels=labels, rules=rules,
                                           request_id_=request_id)
        return Unary("datasets", "CreateDataset", request, _dataset)

    def get_dataset(self, name: str) -> Unary[dataset_pb2.Dataset]:
        """GetDataset."""
        return Unary("datasets", "GetDataset", dpb.GetDatasetRequest(name=self.dataset(name)), _dataset)

    def list_datasets(self, *, filter: str, order_by: str, show_deleted: bool,
                      page_size: int) -> Pages[dataset_pb2.Dataset]:
        """ListDatasets."""
        request = dpb.ListDatasetsRequest(parent=self.parent, filter=filter, order_by=order_by,
                                          show_deleted=show_deleted, page_size=page_size)
        return Pages(Unary("datasets", "ListDatasets", request), "datasets")

    def update_dataset(self, name: str, *, description: str | None, labels: Mapping[str, str] | None,
                       rules: dataset_pb2.DatasetRules | None, etag: str) -> Unary[dataset_pb2.Dataset]:
        """UpdateDataset of the fields given; not repeated (a repeat after success would see a stale etag)."""
        request = _requests.update_dataset(self.dataset(name), description=description, labels=labels, rules=rules,
                                           etag=etag)
        return Unary("datasets", "UpdateDataset", request, _dataset, idempotent=False)

    def delete_dataset(self, name: str, *, etag: str) -> Unary[dataset_pb2.Dataset]:
        """DeleteDataset; not repeated."""
        request = dpb.DeleteDatasetRequest(name=self.dataset(name), etag=etag)
        return Unary("datasets", "DeleteDataset", request, _dataset, idempotent=False)

    def clone_dataset(self, source: str, name: str, *, version: int | str | None, message: str,
                      request_id: str | None) -> Unary[dpb.CloneDatasetResponse]:
        """CloneDataset of a dataset's version (its current one when `version` is None); safe to repeat: it
        carries a request_id."""
        origin = self.dataset(source) if version is None else self.version(source, version)
        request = dpb.CloneDatasetRequest(source=origin, parent=self.parent, dataset_id=name, message=message,
                                          request_id=_requests.request_id(request_id))
        return Unary("datasets", "CloneDataset", request)

    def undelete_dataset(self, name: str) -> Unary[dataset_pb2.Dataset]:
        """UndeleteDataset; not repeated (a repeat after success finds no deleted dataset)."""
        request = dpb.UndeleteDatasetRequest(name=self.dataset(name))
        return Unary("datasets", "UndeleteDataset", request, _dataset, idempotent=False)

    # --- versions --------------------------------------------------------------------------------------

    def list_versions(self, dataset: str, *, page_size: int) -> Pages[version_pb2.Version]:
        """ListVersions."""
        request = dpb.ListVersionsRequest(parent=self.dataset(dataset), page_size=page_size)
        return Pages(Unary("datasets", "ListVersions", request), "versions")

    def get_version(self, dataset: str, version: int | str = "latest", *,
                    view: _requests.View = "basic") -> Unary[version_pb2.Version]:
        """GetVersion (a full version name as `dataset` works too); its files only with the "full" view."""
        request = dpb.GetVersionRequest(name=self.version(dataset, version), view=_requests.view(view))
        return Unary("datasets", "GetVersion", request, _version)

    def list_version_files(self, dataset: str, version: int | str = "latest", *, prefix: str = "",
                           formats: Iterable[str | int] = (), view: _requests.View = "basic",
                           page_size: int = 0) -> Pages[version_pb2.VersionFile]:
        """ListVersionFiles: the files under `prefix`, of `formats` (all when empty)."""
        request = dpb.ListVersionFilesRequest(parent=self.version(dataset, version), path_prefix=prefix,
                                              formats=_requests.file_formats(formats), view=_requests.view(view),
                                              page_size=page_size)
        return Pages(Unary("datasets", "ListVersionFiles", request), "files")

    def commit_version(self, dataset: str, uploads: Iterable[str], *, delete_paths: Iterable[str], message: str,
                       base_version: str, request_id: str | None) -> Unary[version_pb2.Version]:
        """CommitVersion, safe to repeat: it carries a request_id."""
        request = dpb.CommitVersionRequest(
            parent=self.dataset(dataset), base_version=base_version, uploads=[self.upload(u) for u in uploads],
            delete_paths=list(delete_paths), message=message, request_id=_requests.request_id(request_id))
        return Unary("datasets", "CommitVersion", request, _version)

    def write_file(self, dataset: str, path: str, content: bytes, *, content_type: str, message: str,
                   base_version: str, request_id: str | None) -> Unary[version_pb2.Version]:
        """WriteFile (a small file kept inline, committed as a READY version); safe to repeat: it carries a
        request_id."""
        request = dpb.WriteFileRequest(parent=self.dataset(dataset), path=path, content=content,
                                       content_type=content_type, message=message, base_version=base_version,
                                       request_id=_requests.request_id(request_id))
        return Unary("datasets", "WriteFile", request, _version)

    def register_files(self, dataset: str, source_uri: str, *, include: Iterable[str], exclude: Iterable[str],
                       copy: bool, path_prefix: str, message: str,
                       request_id: str | None) -> Unary[version_pb2.Version]:
        """RegisterFiles (a PENDING version the worker builds); safe to repeat: it carries a request_id."""
        request = dpb.RegisterFilesRequest(parent=self.dataset(dataset), source_uri=source_uri, include=list(include),
                                           exclude=list(exclude), copy=copy, path_prefix=path_prefix, message=message,
                                           request_id=_requests.request_id(request_id))
        return Unary("datasets", "RegisterFiles", request, _version)

    def diff_versions(self, dataset: str, base: int | str, target: int | str, *,
                      view: _requests.View = "basic", page_size: int = 0) -> Pages[dpb.FileChange]:
        """DiffVersions, paged (the changed files' columns and reports only with the "full" view)."""
        request = dpb.DiffVersionsRequest(base_version=self.version(dataset, base),
                                          target_version=self.version(dataset, target), view=_requests.view(view),
                                          page_size=page_size)
        return Pages(Unary("datasets", "DiffVersions", request), "changes")

    def diff_rows(self, dataset: str, path: str, base: int | str, target: int | str, *, keys: Sequence[str],
                  sample_rows: int = 0) -> Unary[dpb.DiffRowsResponse]:
        """DiffRows: the rows of one tabular file matched by `keys` between two versions."""
        request = dpb.DiffRowsRequest(base_version=self.version(dataset, base),
                                      target_version=self.version(dataset, target), path=path,
                                      key_columns=list(keys), sample_rows=sample_rows)
        return Unary("datasets", "DiffRows", request)

    def preview_file(self, dataset: str, path: str, *, version: int | str,
                     row_limit: int) -> Unary[dpb.PreviewFileResponse]:
        """PreviewFile."""
        request = dpb.PreviewFileRequest(version=self.version(dataset, version), path=path, row_limit=row_limit)
        return Unary("datasets", "PreviewFile", request)

    def get_file_stats(self, dataset: str, path: str, *, version: int | str) -> Unary[dpb.GetFileStatsResponse]:
        """GetFileStats."""
        request = dpb.GetFileStatsRequest(version=self.version(dataset, version), path=path)
        return Unary("datasets", "GetFileStats", request)

    def read_file(self, dataset: str, path: str, *, version: int | str, offset: int, limit: int,
                  timeout: float, rendition: bool = False) -> Stream:
        """ReadFile, the raw stream (of the file's Parquet rendition with `rendition`)."""
        request = dpb.ReadFileRequest(version=self.version(dataset, version), path=path, offset=offset, limit=limit,
                                      rendition=rendition)
        return Stream("datasets", "ReadFile", request, timeout)

    def get_download_url(self, dataset: str, path: str, *, version: int | str,
                         ttl: float | None) -> Unary[dpb.GetDownloadUrlResponse]:
        """GetDownloadUrl."""
        request = dpb.GetDownloadUrlRequest(version=self.version(dataset, version), path=path,
                                            ttl=_requests.ttl(ttl))
        return Unary("datasets", "GetDownloadUrl", request)

    # --- uploads ---------------------------------------------------------------------------------------

    def create_upload(self, dataset: str, path: str, *, size: int | None, sha256: str, content_type: str,
                      auto_commit: bool, commit_message: str, request_id: str | None) -> Unary[upload_pb2.Upload]:
        """CreateUpload, safe to repeat: it carries a request_id."""
        request = _requests.create_upload(self.parent, dataset, path, size=size, sha256=sha256,
                                          content_type=content_type, auto_commit=auto_commit,
                                          commit_message=commit_message, request_id_=request_id)
        return _upload_call("CreateUpload", request)

    def created(self, request: upb.CreateUploadRequest) -> Unary[upload_pb2.Upload]:
        """CreateUpload of a request built elsewhere (an upload job's, with its saved request_id)."""
        return _upload_call("CreateUpload", request)

    def get_upload(self, name: str) -> Unary[upload_pb2.Upload]:
        """GetUpload, by uid or resource name."""
        return _upload_call("GetUpload", upb.GetUploadRequest(name=self.upload(name)))

    def list_uploads(self, *, state: str | None, dataset: str | None, filter: str,
                     page_size: int) -> Pages[upload_pb2.Upload]:
        """ListUploads with a filter made of the state and dataset given."""
        request = upb.ListUploadsRequest(parent=self.parent, filter=_requests.uploads_filter(state, dataset, filter),
                                         page_size=page_size)
        return Pages(Unary("uploads", "ListUploads", request), "uploads")

    def complete_upload(self, name: str, *, sha256: str = "") -> Unary[upload_pb2.Upload]:
        """CompleteUpload (harmless to repeat)."""
        return _upload_call("CompleteUpload", upb.CompleteUploadRequest(name=self.upload(name), sha256=sha256))

    def cancel_upload(self, name: str) -> Unary[upload_pb2.Upload]:
        """CancelUpload (harmless to repeat)."""
        return _upload_call("CancelUpload", upb.CancelUploadRequest(name=self.upload(name)))

    def retry_upload(self, name: str) -> Unary[upload_pb2.Upload]:
        """RetryUpload; not repeated blindly."""
        request = upb.RetryUploadRequest(name=self.upload(name))
        return Unary("uploads", "RetryUpload", request, _upload, idempotent=False)

    def watch_upload(self, name: str, *, timeout: float | None) -> Watch:
        """WatchUpload, followed until a final state or the deadline."""
        return Watch("uploads", "WatchUpload", upb.WatchUploadRequest(name=self.upload(name)), timeout)

    def watch_version(self, dataset: str, version: int | str = "latest", *, timeout: float | None) -> Watch:
        """WatchVersion (a full version name as `dataset` works too), followed until READY or FAILED or the
        deadline."""
        request = dpb.WatchVersionRequest(name=self.version(dataset, version))
        return Watch("datasets", "WatchVersion", request, timeout)


def _dataset(response: Any) -> dataset_pb2.Dataset:
    return response.dataset


def _version(response: Any) -> version_pb2.Version:
    return response.version


def _upload(response: Any) -> upload_pb2.Upload:
    return response.upload


def _upload_call(method: str, request: Any) -> Unary[upload_pb2.Upload]:
    return Unary("uploads", method, request, _upload)
