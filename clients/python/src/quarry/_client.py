"""`quarry.Client`: every RPC of the contract as a blocking method, plus uploads, downloads and previews."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from quarry import _names, _requests
from quarry._batch import Aggregate, check_version, commit_request_id, split_by_size, version_done, version_timeout
from quarry._checksums import crc32c_function
from quarry._config import Config
from quarry._directory import DirectoryFile, load_manifest, select_files
from quarry._download import Download, Restart
from quarry._exceptions import from_grpc
from quarry._preview import to_table
from quarry._results import DirectoryUploadResult, DownloadResult, ProgressCallback, UploadResult
from quarry._resume import ResumeStore
from quarry._retry import RetryPolicy
from quarry._transport import SyncTransport, stream_timeout
from quarry._uploader import SyncUploader
from quarry._uploads import MAX_CHUNK, UploadJob
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

if TYPE_CHECKING:
    import pyarrow

__all__ = ["Client"]

WATCH_TIMEOUT = 3600.0


class Client:
    """A blocking client of one Quarry server, acting in one namespace."""

    def __init__(self, address: str | None = None, *, namespace: str | None = None, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, streams: int = 4,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.config = Config.resolve(address, namespace, cache_dir)
        self.streams = streams
        self._t = SyncTransport(self.config, timeout, retry or RetryPolicy())
        self._resume = ResumeStore(self.config.cache_dir)
        self._chunk: int | None = None
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.config.namespace

    @property
    def parent(self) -> str:
        """`namespaces/{namespace}`."""
        return f"namespaces/{self.namespace}"

    def close(self) -> None:
        """Close the channel."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------------------

    def _call(self, method: Any, request: Any, *, idempotent: bool = True) -> Any:
        return self._t.unary(method, request, idempotent=idempotent)

    def _pages(self, method: Any, request: Any, field: str) -> Iterator[Any]:
        while True:
            response = self._call(method, request)
            yield from getattr(response, field)
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def _stream(self, call: Any) -> Iterator[Any]:
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_grpc(exc) from exc

    def _chunk_size(self) -> int:
        with self._lock:
            if self._chunk is None:
                self._chunk = min(MAX_CHUNK, int(self.get_capabilities().max_chunk_bytes) or MAX_CHUNK)
            return self._chunk

    def _version(self, dataset: str, version: int | str) -> str:
        return _names.version_name(self.namespace, dataset, version)

    # --- capabilities ----------------------------------------------------------------------------------

    def get_capabilities(self) -> cpb.GetCapabilitiesResponse:
        """The server's limits and features."""
        return self._call(self._t.capabilities.GetCapabilities, cpb.GetCapabilitiesRequest())

    # --- datasets --------------------------------------------------------------------------------------

    def create_dataset(self, name: str, *, description: str = "", labels: Mapping[str, str] | None = None,
                       rules: Any = None, request_id: str | None = None) -> Any:
        """Create a dataset (retried safely: the request carries a request_id)."""
        request = _requests.create_dataset(self.parent, name, description=description, labels=labels, rules=rules,
                                           request_id_=request_id)
        return self._call(self._t.datasets.CreateDataset, request).dataset

    def get_dataset(self, name: str) -> Any:
        """One dataset."""
        return self._call(self._t.datasets.GetDataset,
                          dpb.GetDatasetRequest(name=_names.dataset_name(self.namespace, name))).dataset

    def list_datasets(self, *, filter: str = "", order_by: str = "", show_deleted: bool = False,
                      page_size: int = 0) -> Iterator[Any]:
        """Every dataset of the namespace (pages fetched as needed)."""
        request = dpb.ListDatasetsRequest(parent=self.parent, filter=filter, order_by=order_by,
                                          show_deleted=show_deleted, page_size=page_size)
        return self._pages(self._t.datasets.ListDatasets, request, "datasets")

    def update_dataset(self, name: str, *, description: str | None = None, labels: Mapping[str, str] | None = None,
                       rules: Any = None, etag: str = "") -> Any:
        """Change the given fields (not retried: a repeat after success would see a stale etag)."""
        request = _requests.update_dataset(_names.dataset_name(self.namespace, name), description=description,
                                           labels=labels, rules=rules, etag=etag)
        return self._call(self._t.datasets.UpdateDataset, request, idempotent=False).dataset

    def delete_dataset(self, name: str, *, etag: str = "") -> Any:
        """Soft-delete a dataset."""
        request = dpb.DeleteDatasetRequest(name=_names.dataset_name(self.namespace, name), etag=etag)
        return self._call(self._t.datasets.DeleteDataset, request, idempotent=False).dataset

    # --- versions --------------------------------------------------------------------------------------

    def list_versions(self, dataset: str, *, page_size: int = 0) -> Iterator[Any]:
        """The dataset's versions, newest first."""
        request = dpb.ListVersionsRequest(parent=_names.dataset_name(self.namespace, dataset), page_size=page_size)
        return self._pages(self._t.datasets.ListVersions, request, "versions")

    def get_version(self, dataset: str, version: int | str = "latest") -> Any:
        """One version with its files."""
        return self._call(self._t.datasets.GetVersion,
                          dpb.GetVersionRequest(name=self._version(dataset, version))).version

    def commit_version(self, dataset: str, uploads: Iterable[str], *, delete_paths: Iterable[str] = (),
                       message: str = "", base_version: str = "", request_id: str | None = None) -> Any:
        """Request a new version from uploads to add or replace and paths to delete."""
        request = dpb.CommitVersionRequest(
            parent=_names.dataset_name(self.namespace, dataset), base_version=base_version,
            uploads=[_names.upload_name(self.namespace, u) for u in uploads], delete_paths=list(delete_paths),
            message=message, request_id=_requests.request_id(request_id))
        return self._call(self._t.datasets.CommitVersion, request).version

    def diff_versions(self, dataset: str, base: int | str, target: int | str = "latest") -> Any:
        """Files added, removed and changed between two versions."""
        request = dpb.DiffVersionsRequest(base_version=self._version(dataset, base),
                                          target_version=self._version(dataset, target))
        return self._call(self._t.datasets.DiffVersions, request)

    def preview_file(self, dataset: str, path: str, *, version: int | str = "latest", row_limit: int = 0) -> Any:
        """The first rows of a tabular file (the raw response: Arrow IPC bytes and JSON rows)."""
        request = dpb.PreviewFileRequest(version=self._version(dataset, version), path=path, row_limit=row_limit)
        return self._call(self._t.datasets.PreviewFile, request)

    def preview(self, dataset: str, path: str, *, version: int | str = "latest", rows: int = 0) -> pyarrow.Table:
        """The first rows of a tabular file as a pyarrow.Table (needs the `arrow` extra)."""
        return to_table(self.preview_file(dataset, path, version=version, row_limit=rows))

    def get_file_stats(self, dataset: str, path: str, *, version: int | str = "latest") -> Any:
        """Per-column statistics of a tabular file."""
        request = dpb.GetFileStatsRequest(version=self._version(dataset, version), path=path)
        return self._call(self._t.datasets.GetFileStats, request)

    def read_file(self, dataset: str, path: str, *, version: int | str = "latest", offset: int = 0,
                  limit: int = 0, timeout: float = WATCH_TIMEOUT) -> Iterator[Any]:
        """The raw ReadFile stream (see `download` for a resumable, verified copy)."""
        request = dpb.ReadFileRequest(version=self._version(dataset, version), path=path, offset=offset, limit=limit)
        return self._stream(self._t.datasets.ReadFile(request, timeout=timeout, metadata=self._t.metadata))

    def get_download_url(self, dataset: str, path: str, *, version: int | str = "latest",
                         ttl: float | None = None) -> Any:
        """A presigned URL, where the server's store supports them."""
        request = dpb.GetDownloadUrlRequest(version=self._version(dataset, version), path=path,
                                            ttl=_requests.ttl(ttl))
        return self._call(self._t.datasets.GetDownloadUrl, request)

    def download(self, dataset: str, path: str, out: str | os.PathLike[str], *, version: int | str = "latest",
                 progress: ProgressCallback | None = None) -> DownloadResult:
        """Copy a file to `out`, continuing an interrupted earlier download, and verify its sha256."""
        name = self._version(dataset, version)
        state = Download(out, f"{name}:{path}", progress)
        state.open()
        attempt, waited = 0, 0.0
        try:
            while not state.complete:
                offset, limit = state.request()
                request = dpb.ReadFileRequest(version=name, path=path, offset=offset, limit=limit)
                call = self._t.datasets.ReadFile(request, metadata=self._t.metadata,
                                                 timeout=stream_timeout(limit, self._t.timeout))
                try:
                    got = False
                    for message in call:
                        got = True
                        state.accept(message)
                    if not got:
                        state.nothing_read()
                    attempt = 0
                except Restart:
                    call.cancel()  # the file changed since the partial download: read it again from 0
                    continue
                except grpc.RpcError as exc:
                    attempt += 1
                    delay = self._t.delay_after(exc, attempt, waited)
                    time.sleep(delay)
                    waited += delay
            return state.finish()
        finally:
            state.close()

    # --- uploads: the RPCs -----------------------------------------------------------------------------

    def create_upload(self, dataset: str, path: str, *, size: int | None = None, sha256: str = "",
                      content_type: str = "", auto_commit: bool = False, commit_message: str = "",
                      request_id: str | None = None) -> Any:
        """Open an upload session."""
        request = _requests.create_upload(self.parent, dataset, path, size=size, sha256=sha256,
                                          content_type=content_type, auto_commit=auto_commit,
                                          commit_message=commit_message, request_id_=request_id)
        return self._call(self._t.uploads.CreateUpload, request).upload

    def upload_stream(self, requests: Iterable[upb.UploadRequest], *, timeout: float = WATCH_TIMEOUT) -> Any:
        """The raw Upload call: header, chunks, finish (see `upload_file` for the resumable way)."""
        return self._t.call(lambda: self._t.uploads.Upload(iter(requests), timeout=timeout,
                                                           metadata=self._t.metadata))

    def get_upload(self, name: str) -> Any:
        """One upload, by uid or resource name."""
        return self._call(self._t.uploads.GetUpload,
                          upb.GetUploadRequest(name=_names.upload_name(self.namespace, name))).upload

    def list_uploads(self, *, state: str | None = None, dataset: str | None = None, filter: str = "",
                     page_size: int = 0) -> Iterator[Any]:
        """The namespace's uploads, newest first, optionally by state (e.g. "failed") and dataset."""
        request = upb.ListUploadsRequest(parent=self.parent, filter=_requests.uploads_filter(state, dataset, filter),
                                         page_size=page_size)
        return self._pages(self._t.uploads.ListUploads, request, "uploads")

    def complete_upload(self, name: str, *, sha256: str = "") -> Any:
        """Assemble the parts of an upload written by parallel streams."""
        request = upb.CompleteUploadRequest(name=_names.upload_name(self.namespace, name), sha256=sha256)
        return self._call(self._t.uploads.CompleteUpload, request).upload

    def cancel_upload(self, name: str) -> Any:
        """Cancel an upload and delete its bytes (cancelling twice is harmless)."""
        request = upb.CancelUploadRequest(name=_names.upload_name(self.namespace, name))
        return self._call(self._t.uploads.CancelUpload, request).upload

    def retry_upload(self, name: str) -> Any:
        """Run a FAILED validation or promotion again."""
        request = upb.RetryUploadRequest(name=_names.upload_name(self.namespace, name))
        return self._call(self._t.uploads.RetryUpload, request, idempotent=False).upload

    def watch_upload(self, name: str, *, timeout: float | None = WATCH_TIMEOUT) -> Iterator[Any]:
        """The upload now, then at every state change until a final state; follows a broken stream."""
        request = upb.WatchUploadRequest(name=_names.upload_name(self.namespace, name))
        deadline = time.monotonic() + (timeout or WATCH_TIMEOUT)
        attempt, waited = 0, 0.0
        while True:
            try:
                for message in self._t.uploads.WatchUpload(request, metadata=self._t.metadata,
                                                           timeout=max(0.001, deadline - time.monotonic())):
                    attempt = 0
                    yield message.upload
                return
            except grpc.RpcError as exc:
                attempt += 1
                delay = self._t.delay_after(exc, attempt, waited)
            time.sleep(delay)
            waited += delay

    # --- uploads: files and directories ----------------------------------------------------------------

    def upload_file(self, path: str | os.PathLike[str], dataset: str, dest: str | None = None, *,
                    wait: bool = False, progress: ProgressCallback | None = None, content_type: str = "",
                    commit_message: str = "", streams: int | None = None,
                    wait_timeout: float | None = WATCH_TIMEOUT) -> UploadResult:
        """Upload a file to `dataset` at `dest` (default: its name), resuming an interrupted earlier call.

        With `wait`, the upload commits a version by itself once valid, and the call returns when it is
        PROMOTED (or raises UploadFailed)."""
        job = UploadJob.prepare(self._resume, self.namespace, Path(path), dataset, dest, content_type=content_type,
                                auto_commit=wait, commit_message=commit_message)
        return self._uploader(streams).run(job, progress=progress, wait=wait, wait_timeout=wait_timeout,
                                           watch=lambda name, left: self.watch_upload(name, timeout=left))

    def _uploader(self, streams: int | None) -> SyncUploader:
        return SyncUploader(self._t, streams or self.streams, self._chunk_size(), crc32c_function())

    def upload_dir(self, directory: str | os.PathLike[str], dataset: str, *, prefix: str = "",
                   ignore: Iterable[str] = (), manifest: str | os.PathLike[str] | None = None,
                   message: str | None = None, wait: bool = False, progress: ProgressCallback | None = None,
                   use_gitignore: bool = True, wait_timeout: float | None = WATCH_TIMEOUT) -> DirectoryUploadResult:
        """Upload a directory's files (gitignore rules apply) and commit them as one version."""
        loaded = load_manifest(manifest) if manifest else None
        if loaded is not None and message:
            loaded.message = message
        selection = select_files(directory, ignore=ignore, manifest=loaded, manifest_path=manifest, prefix=prefix,
                                 use_gitignore=use_gitignore)
        if loaded is None and message:
            selection.message = message
        total = Aggregate(sum(f.size for f in selection.files), progress)
        big, small = split_by_size(selection.files)

        def one(file: DirectoryFile, streams: int) -> tuple[UploadJob, UploadResult]:
            job = UploadJob.prepare(self._resume, self.namespace, file.path, dataset, file.dest,
                                    content_type=file.content_type)
            return job, self._uploader(streams).run(job, progress=total.callback(file.dest), keep_state=True)

        done = [one(file, self.streams) for file in big]
        with ThreadPoolExecutor(self.streams, thread_name_prefix="quarry-dir") as pool:
            done += list(pool.map(lambda f: one(f, 1), small))
        names = [result.upload.name for _, result in done]
        # Resume states stay until the commit: a re-run after a failed commit re-uses the staged uploads.
        version = self.commit_version(dataset, names, message=selection.message,
                                      request_id=commit_request_id(self.namespace, dataset, names))
        for job, _ in done:
            job.forget()
        if wait:
            version = self._wait_version(version, wait_timeout)
        return DirectoryUploadResult([result for _, result in done], version, selection.ignored)

    def _wait_version(self, version: Any, timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or WATCH_TIMEOUT)
        delay = 0.2  # there is no WatchVersion: poll, slowing down
        while not version_done(version):
            if time.monotonic() + delay > deadline:
                raise version_timeout(version.name)
            time.sleep(delay)
            delay = min(2.0, delay * 1.5)
            version = self._call(self._t.datasets.GetVersion, dpb.GetVersionRequest(name=version.name)).version
        return check_version(version)
