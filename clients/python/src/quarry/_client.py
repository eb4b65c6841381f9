"""`quarry.Client`: every RPC of the contract as a blocking method, plus uploads, downloads and previews.

Requests, answers and retry decisions come from the shared core (`BaseClient`, `Calls`, `Budget`); this
module holds the blocking I/O only.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from quarry import _tables
from quarry._admin import IssuedToken
from quarry._base import BaseClient
from quarry._batch import check_version, version_done, version_ready, version_timeout
from quarry._calls import WATCH_TIMEOUT, Watch
from quarry._checksums import crc32c_function
from quarry._directory import DirectoryFile
from quarry._download import Download
from quarry._exceptions import DeadlineExceeded
from quarry._preview import to_table
from quarry._reads import FoundFile, RangeRead, Reader
from quarry._remote_file import RemoteFile
from quarry._requests import View
from quarry._results import DirectoryUploadResult, DownloadResult, ProgressCallback, UploadResult
from quarry._retry import attempts
from quarry._tables import Filter
from quarry._transport import SyncTransport
from quarry._uploader import SyncUploader
from quarry._uploads import UploadJob
from quarry._version_download import VersionDownload, VersionDownloadResult
from quarry.v1 import audit_pb2, dataset_pb2, namespace_pb2, token_pb2, upload_pb2, version_pb2
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

if TYPE_CHECKING:
    import pandas
    import pyarrow
    import pyarrow.dataset

__all__ = ["Client"]


class Client(BaseClient[SyncTransport]):
    """A blocking client of one Quarry server, acting in one namespace."""

    _transport = SyncTransport

    def close(self) -> None:
        """Close the channel."""
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _chunk_size(self) -> int:
        with self._lock:
            return self._chunk or self._chunk_of(self.get_capabilities())

    # --- capabilities ----------------------------------------------------------------------------------

    def get_capabilities(self) -> cpb.GetCapabilitiesResponse:
        """The server's limits and features."""
        return self._t.call(self._calls.get_capabilities())

    # --- tokens, namespaces, audit ---------------------------------------------------------------------

    def create_token(self, principal: str, grants: Mapping[str, str] | Iterable[tuple[str, str]] = (), *,
                     operator: bool = False, expires: float | timedelta | None = None,
                     request_id: str | None = None) -> IssuedToken:
        """Issue a token for `principal` with `grants` (namespace -> "reader", "writer" or "admin"), expiring
        after `expires` (seconds or a timedelta; None: never). The secret is in the result, this once."""
        return self._t.call(self._admin.create_token(principal, grants, operator=operator, expires=expires,
                                                     request_id=request_id))

    def list_tokens(self, *, namespace: str | None = None, every: bool = False, show_revoked: bool = False,
                    page_size: int = 0) -> Iterator[token_pb2.Token]:
        """The tokens with a grant on a namespace (default: the client's), or every token (`every`, operators)."""
        return self._t.pages(self._admin.list_tokens(namespace=namespace, every=every, show_revoked=show_revoked,
                                                     page_size=page_size))

    def revoke_token(self, token: str) -> token_pb2.Token:
        """Revoke a token (by id, `tokens/{id}`, or the token itself): refused everywhere within a second."""
        return self._t.call(self._admin.revoke_token(token))

    def create_namespace(self, name: str, *, request_id: str | None = None,
                         **quota: float) -> namespace_pb2.Namespace:
        """Create a namespace (operators), with quota fields (max_bytes, max_open_uploads, max_datasets,
        requests_per_second)."""
        return self._t.call(self._admin.create_namespace(name, quota=quota, request_id=request_id))

    def list_namespaces(self, *, page_size: int = 0) -> Iterator[namespace_pb2.Namespace]:
        """The namespaces the token is granted (every namespace, for an operator)."""
        return self._t.pages(self._admin.list_namespaces(page_size=page_size))

    def get_namespace(self, name: str | None = None) -> namespace_pb2.Namespace:
        """A namespace (default: the client's) with its quota and usage."""
        return self._t.call(self._admin.get_namespace(name))

    def update_namespace(self, name: str, *, etag: str = "", max_bytes: int | None = None,
                         max_open_uploads: int | None = None, max_datasets: int | None = None,
                         requests_per_second: float | None = None) -> namespace_pb2.Namespace:
        """Set the quota fields given (operators); 0 removes a limit."""
        quota = {"max_bytes": max_bytes, "max_open_uploads": max_open_uploads, "max_datasets": max_datasets,
                 "requests_per_second": requests_per_second}
        return self._t.call(self._admin.update_namespace(name, quota=quota, etag=etag))

    def list_audit_events(self, *, namespace: str | None = None, every: bool = False, filter: str = "",
                          principal: str | None = None, method: str | None = None, since: datetime | None = None,
                          until: datetime | None = None, page_size: int = 0) -> Iterator[audit_pb2.AuditEvent]:
        """A namespace's audit events (default: the client's; `every`: all, operators), newest first."""
        return self._t.pages(self._admin.list_audit_events(namespace=namespace, every=every, filter=filter,
                                                           principal=principal, method=method, since=since,
                                                           until=until, page_size=page_size))

    # --- datasets --------------------------------------------------------------------------------------

    def create_dataset(self, name: str, *, description: str = "", labels: Mapping[str, str] | None = None,
                       rules: dataset_pb2.DatasetRules | None = None,
                       request_id: str | None = None) -> dataset_pb2.Dataset:
        """Create a dataset (retried safely: the request carries a request_id)."""
        return self._t.call(self._calls.create_dataset(name, description=description, labels=labels, rules=rules,
                                                       request_id=request_id))

    def get_dataset(self, name: str) -> dataset_pb2.Dataset:
        """One dataset."""
        return self._t.call(self._calls.get_dataset(name))

    def list_datasets(self, *, filter: str = "", order_by: str = "", show_deleted: bool = False,
                      page_size: int = 0) -> Iterator[dataset_pb2.Dataset]:
        """Every dataset of the namespace (pages fetched as needed)."""
        return self._t.pages(self._calls.list_datasets(filter=filter, order_by=order_by, show_deleted=show_deleted,
                                                       page_size=page_size))

    def update_dataset(self, name: str, *, description: str | None = None, labels: Mapping[str, str] | None = None,
                       rules: dataset_pb2.DatasetRules | None = None, etag: str = "") -> dataset_pb2.Dataset:
        """Change the given fields (not retried: a repeat after success would see a stale etag)."""
        return self._t.call(self._calls.update_dataset(name, description=description, labels=labels, rules=rules,
                                                       etag=etag))

    def delete_dataset(self, name: str, *, etag: str = "") -> dataset_pb2.Dataset:
        """Soft-delete a dataset."""
        return self._t.call(self._calls.delete_dataset(name, etag=etag))

    def clone_dataset(self, source: str, name: str, *, version: int | str | None = None, message: str = "",
                      request_id: str | None = None) -> dpb.CloneDatasetResponse:
        """A new dataset `name` whose version 1 holds the files of `source`'s version (its current one by
        default): metadata only, no bytes copied. The answer carries the new dataset and its READY version."""
        return self._t.call(self._calls.clone_dataset(source, name, version=version, message=message,
                                                      request_id=request_id))

    def undelete_dataset(self, name: str) -> dataset_pb2.Dataset:
        """Restore a deleted dataset (with its versions) within the server's retention period."""
        return self._t.call(self._calls.undelete_dataset(name))

    # --- versions --------------------------------------------------------------------------------------

    def list_versions(self, dataset: str, *, page_size: int = 0) -> Iterator[version_pb2.Version]:
        """The dataset's versions, newest first."""
        return self._t.pages(self._calls.list_versions(dataset, page_size=page_size))

    def get_version(self, dataset: str, version: int | str = "latest", *, view: View = "basic") -> version_pb2.Version:
        """One version; its files too with view="full" (see `list_version_files` for a version of many files)."""
        return self._t.call(self._calls.get_version(dataset, version, view=view))

    def list_version_files(self, dataset: str, version: int | str = "latest", *, prefix: str = "",
                           formats: Iterable[str | int] = (), view: View = "basic",
                           page_size: int = 0) -> Iterator[version_pb2.VersionFile]:
        """The files of a version by path (pages fetched as needed), optionally under `prefix` and of `formats`."""
        return self._t.pages(self._calls.list_version_files(dataset, version, prefix=prefix, formats=formats,
                                                            view=view, page_size=page_size))

    def commit_version(self, dataset: str, uploads: Iterable[str], *, delete_paths: Iterable[str] = (),
                       message: str = "", base_version: str = "",
                       request_id: str | None = None) -> version_pb2.Version:
        """Request a new version from uploads to add or replace and paths to delete."""
        return self._t.call(self._calls.commit_version(dataset, uploads, delete_paths=delete_paths, message=message,
                                                       base_version=base_version, request_id=request_id))

    def write_file(self, dataset: str, path: str, content: bytes, *, content_type: str = "", message: str = "",
                   base_version: str = "", request_id: str | None = None) -> version_pb2.Version:
        """Write one small file (at most the server's max_inline_bytes), kept inline, and commit it: the answer is
        the new READY version."""
        return self._t.call(self._calls.write_file(dataset, path, content, content_type=content_type,
                                                   message=message, base_version=base_version,
                                                   request_id=request_id))

    def write_text(self, dataset: str, path: str, text: str, *, message: str = "", content_type: str = "",
                   base_version: str = "", request_id: str | None = None) -> version_pb2.Version:
        """`write_file` of text (UTF-8): a config, JSON, notes or a small CSV, READY when this returns."""
        return self.write_file(dataset, path, text.encode(), content_type=content_type, message=message,
                                 base_version=base_version, request_id=request_id)

    def register_files(self, dataset: str, source_uri: str, *, include: Iterable[str] = (),
                       exclude: Iterable[str] = (), copy: bool = False, path_prefix: str = "", message: str = "",
                       wait: bool = False, wait_timeout: float | None = WATCH_TIMEOUT,
                       request_id: str | None = None) -> version_pb2.Version:
        """Register the objects under `source_uri` (s3://bucket/prefix, or file:///dir under the server's register
        roots) as a new version without uploading them (or copied in, with `copy`). The version is PENDING until
        a worker has validated every object; with `wait`, the call returns it READY (or raises if it failed)."""
        version = self._t.call(self._calls.register_files(
            dataset, source_uri, include=include, exclude=exclude, copy=copy, path_prefix=path_prefix,
            message=message, request_id=request_id))
        return self._wait_version(version, wait_timeout) if wait else version

    def diff_versions(self, dataset: str, base: int | str, target: int | str = "latest", *,
                      view: View = "basic", page_size: int = 0) -> dpb.DiffVersionsResponse:
        """Files added, removed and changed between two versions, by path: every page of DiffVersions as one answer
        (`page_size` changes a call at most; 0: as many as one message holds)."""
        diff: dpb.DiffVersionsResponse = self._t.whole(self._calls.diff_versions(dataset, base, target, view=view,
                                                                                 page_size=page_size))
        return diff

    def diff_rows(self, dataset: str, path: str, base: int | str, target: int | str = "latest", *,
                  keys: Sequence[str], sample_rows: int = 0) -> dpb.DiffRowsResponse:
        """How the rows of one tabular file differ between two versions, matched by the `keys` columns: counts of
        added, removed, changed and unchanged rows, and the first `sample_rows` (0: 10) of each kind, as JSON."""
        return self._t.call(self._calls.diff_rows(dataset, path, base, target, keys=keys, sample_rows=sample_rows))

    def preview_file(self, dataset: str, path: str, *, version: int | str = "latest",
                     row_limit: int = 0) -> dpb.PreviewFileResponse:
        """The first rows of a tabular file (the raw response: Arrow IPC bytes and JSON rows)."""
        return self._t.call(self._calls.preview_file(dataset, path, version=version, row_limit=row_limit))

    def preview(self, dataset: str, path: str, *, version: int | str = "latest", rows: int = 0) -> pyarrow.Table:
        """The first rows of a tabular file as a pyarrow.Table (needs the `arrow` extra)."""
        return to_table(self.preview_file(dataset, path, version=version, row_limit=rows))

    def get_file_stats(self, dataset: str, path: str, *, version: int | str = "latest") -> dpb.GetFileStatsResponse:
        """Per-column statistics of a tabular file."""
        return self._t.call(self._calls.get_file_stats(dataset, path, version=version))

    def read_file(self, dataset: str, path: str, *, version: int | str = "latest", offset: int = 0,
                  limit: int = 0, timeout: float = WATCH_TIMEOUT,
                  rendition: bool = False) -> Iterator[dpb.ReadFileResponse]:
        """The raw ReadFile stream (see `download` for a resumable, verified copy); of the file's Parquet rendition
        with `rendition`."""
        return self._t.messages(self._calls.read_file(dataset, path, version=version, offset=offset, limit=limit,
                                                      timeout=timeout, rendition=rendition))

    def get_download_url(self, dataset: str, path: str, *, version: int | str = "latest",
                         ttl: float | None = None) -> dpb.GetDownloadUrlResponse:
        """A presigned URL, where the server's store supports them."""
        return self._t.call(self._calls.get_download_url(dataset, path, version=version, ttl=ttl))

    def download(self, dataset: str, path: str, out: str | os.PathLike[str], *, version: int | str = "latest",
                 progress: ProgressCallback | None = None, parallel: int | None = None) -> DownloadResult:
        """Copy a file to `out`, continuing an interrupted earlier download, and verify its sha256. A large
        file is fetched in ranges, `parallel` at once (the client's `streams`, or 4)."""
        state = self._download(dataset, path, out, version, progress)
        state.open()
        try:
            streams = self._parallel(parallel)
            if streams > 1:
                found = self._reader.file(self._calls.version(dataset, version), path)
                state.adopt(found.file.sha256, found.file.size_bytes)
                self._download_ranges(state, found, streams)
            budget = self._t.budget()
            while not state.complete:
                for attempt in attempts(budget):
                    with attempt, self._t.stream(state.read_call()) as messages:
                        for message in messages:
                            if not state.accept(message):
                                break  # the file changed since the partial download: read it again from 0
                            budget.progressed()
                        else:
                            state.window_done()
            return state.finish()
        finally:
            state.close()

    def _download_ranges(self, state: Download, found: FoundFile, streams: int) -> None:
        """Fetch what is left of a large file in ranges, `streams` at once and one more ahead, written in order
        here while the next ones arrive."""
        ranges = iter(state.ranges())
        with ThreadPoolExecutor(streams, thread_name_prefix="quarry-download") as pool:
            ahead: deque[Future[RangeRead]] = deque()
            try:
                while True:
                    while len(ahead) <= streams and (next_range := next(ranges, None)) is not None:
                        read = RangeRead.of(found, *next_range, self._t.timeout)
                        ahead.append(pool.submit(self._fetch_range, read))
                    if not ahead:
                        return
                    read = ahead.popleft().result()
                    state.write_range(read.offset, read.pieces)
            finally:
                for pending in ahead:
                    pending.cancel()

    # --- reading versions as files and tables ----------------------------------------------------------

    def _fetch_range(self, read: RangeRead) -> RangeRead:
        """One range of a file: ReadFile, resumed where a broken stream stopped, within the retry budget."""
        budget = self._t.budget()
        for attempt in attempts(budget):
            if read.done:
                break  # the stream broke after its last message
            with attempt, self._t.stream(read.call()) as messages:
                for message in messages:
                    read.accept(message)
                    budget.progressed()
        return read

    def _fetch(self, read: RangeRead) -> bytes:
        return self._fetch_range(read).data()

    @functools.cached_property
    def _reader(self) -> Reader:
        return Reader(self._t.call, self._fetch, self._t.timeout)

    def open(self, dataset: str, path: str, *, version: int | str = "latest") -> RemoteFile:
        """A file of a version as a seekable, buffered, read-only binary file (ranged ReadFile calls)."""
        return self._reader.open(self._reader.file(self._calls.version(dataset, version), path))

    def read_table(self, dataset: str, path: str, *, version: int | str = "latest",
                   columns: Sequence[str] | None = None, filter: Filter = None) -> pyarrow.Table:
        """A CSV, JSON Lines or Parquet file as a pyarrow.Table, only `columns` and the rows `filter` keeps (for
        Parquet, only the column chunks and row groups needed are fetched). Needs the `arrow` extra."""
        return _tables.read_table(self._reader, self._calls.version(dataset, version), path, columns, filter)

    def to_pandas(self, dataset: str, path: str, *, version: int | str = "latest",
                  columns: Sequence[str] | None = None, filter: Filter = None) -> pandas.DataFrame:
        """`read_table` as a pandas DataFrame (needs the `pandas` extra)."""
        return _tables.to_pandas(self.read_table(dataset, path, version=version, columns=columns, filter=filter))

    def dataset(self, dataset: str, *, version: int | str = "latest", format: str | None = None,
                prefix: str = "") -> pyarrow.dataset.Dataset:
        """The version's tabular files of one format (under `prefix`) as a pyarrow Dataset, read lazily."""
        return _tables.dataset(self._reader, self._calls.version(dataset, version), format=format, prefix=prefix)

    def download_version(self, dataset: str, directory: str | os.PathLike[str], *, version: int | str = "latest",
                         include: Iterable[str] = (), exclude: Iterable[str] = (),
                         progress: ProgressCallback | None = None,
                         parallel: int | None = None) -> VersionDownloadResult:
        """Every file of a version (those matching the `include` globs, none matching `exclude`) into
        `directory`: `parallel` ranges at once, big files split, resumable, each verified by sha256; files
        already there with the right sha256 are skipped."""
        pinned, found = self._reader.listing(self._calls.version(dataset, version), view="basic")
        download, pieces = VersionDownload.plan(directory, pinned, found, include, exclude, progress)
        try:
            with ThreadPoolExecutor(self._parallel(parallel), thread_name_prefix="quarry-get") as pool:
                for _ in pool.map(lambda p: download.received_piece(p, self._reader.read(p.job.found, p.offset,
                                                                                         p.length)), pieces):
                    pass
            return download.finish()
        finally:
            download.close()

    # --- uploads: the RPCs -----------------------------------------------------------------------------

    def create_upload(self, dataset: str, path: str, *, size: int | None = None, sha256: str = "",
                      content_type: str = "", auto_commit: bool = False, commit_message: str = "",
                      request_id: str | None = None) -> upload_pb2.Upload:
        """Open an upload session."""
        return self._t.call(self._calls.create_upload(dataset, path, size=size, sha256=sha256,
                                                      content_type=content_type, auto_commit=auto_commit,
                                                      commit_message=commit_message, request_id=request_id))

    def upload_stream(self, requests: Iterable[upb.UploadRequest], *,
                      timeout: float = WATCH_TIMEOUT) -> upb.UploadResponse:
        """The raw Upload call: header, chunks, finish (see `upload_file` for the resumable way)."""
        return self._t.upload(requests, timeout)

    def get_upload(self, name: str) -> upload_pb2.Upload:
        """One upload, by uid or resource name."""
        return self._t.call(self._calls.get_upload(name))

    def list_uploads(self, *, state: str | None = None, dataset: str | None = None, filter: str = "",
                     page_size: int = 0) -> Iterator[upload_pb2.Upload]:
        """The namespace's uploads, newest first, optionally by state (e.g. "failed") and dataset."""
        return self._t.pages(self._calls.list_uploads(state=state, dataset=dataset, filter=filter,
                                                      page_size=page_size))

    def complete_upload(self, name: str, *, sha256: str = "") -> upload_pb2.Upload:
        """Assemble the parts of an upload written by parallel streams."""
        return self._t.call(self._calls.complete_upload(name, sha256=sha256))

    def cancel_upload(self, name: str) -> upload_pb2.Upload:
        """Cancel an upload and delete its bytes (cancelling twice is harmless)."""
        return self._t.call(self._calls.cancel_upload(name))

    def retry_upload(self, name: str) -> upload_pb2.Upload:
        """Run a FAILED validation or promotion again."""
        return self._t.call(self._calls.retry_upload(name))

    def watch_upload(self, name: str, *, timeout: float | None = WATCH_TIMEOUT) -> Iterator[upload_pb2.Upload]:
        """The upload now, then at every state change until a final state; follows a broken stream."""
        for message in self._follow(self._calls.watch_upload(name, timeout=timeout)):
            yield message.upload

    def watch_version(self, dataset: str, version: int | str = "latest", *,
                      timeout: float | None = WATCH_TIMEOUT) -> Iterator[version_pb2.Version]:
        """The version now (without its files), then at every state change until READY or FAILED; follows a
        broken stream."""
        for message in self._follow(self._calls.watch_version(dataset, version, timeout=timeout)):
            yield message.version

    def _follow(self, watch: Watch) -> Iterator[Any]:
        budget = self._t.budget()
        for attempt in attempts(budget):
            with attempt, self._t.stream(watch.call()) as messages:
                for message in messages:
                    budget.progressed()
                    yield message

    # --- uploads: files and directories ----------------------------------------------------------------

    def upload_file(self, path: str | os.PathLike[str], dataset: str, dest: str | None = None, *,
                    wait: bool = False, progress: ProgressCallback | None = None, content_type: str = "",
                    commit_message: str = "", streams: int | None = None,
                    wait_timeout: float | None = WATCH_TIMEOUT) -> UploadResult:
        """Upload a file to `dataset` at `dest` (default: its name), resuming an interrupted earlier call.

        With `wait`, the upload commits a version by itself once valid, and the call returns when it is
        PROMOTED (or raises UploadFailed)."""
        job = self._upload_job(path, dataset, dest, content_type=content_type, auto_commit=wait,
                               commit_message=commit_message)
        return self._uploader(streams).run(
            job, progress=progress, wait=wait, wait_timeout=wait_timeout,
            watch=lambda name, left: self.watch_upload(name, timeout=left))

    def _uploader(self, streams: int | None) -> SyncUploader:
        chunk = self._chunk_size()
        return SyncUploader(self._t, self._calls, self._upload_streams(streams), chunk, crc32c_function())

    def upload_dir(self, directory: str | os.PathLike[str], dataset: str, *, prefix: str = "",
                   ignore: Iterable[str] = (), manifest: str | os.PathLike[str] | None = None,
                   message: str | None = None, wait: bool = False, progress: ProgressCallback | None = None,
                   use_gitignore: bool = True, wait_timeout: float | None = WATCH_TIMEOUT,
                   follow_symlinks: bool = False) -> DirectoryUploadResult:
        """Upload a directory's files (gitignore rules apply) and commit them as one version. A symbolic link
        that leads out of the directory is refused unless `follow_symlinks`."""
        batch = self._batch(directory, prefix=prefix, ignore=ignore, manifest=manifest, message=message,
                            use_gitignore=use_gitignore, progress=progress, follow_symlinks=follow_symlinks)

        def one(file: DirectoryFile, streams: int | None) -> tuple[UploadJob, UploadResult]:
            job = self._upload_job(file.path, dataset, file.dest, content_type=file.content_type)
            return job, self._uploader(streams).run(job, progress=batch.total.callback(file.dest), keep_state=True)

        batch.done = [one(file, None) for file in batch.big]
        with ThreadPoolExecutor(self._parallel(), thread_name_prefix="quarry-dir") as pool:
            batch.done += pool.map(lambda file: one(file, 1), batch.small)
        version = self._t.call(batch.commit(self._calls, dataset))
        batch.forget()
        if wait:
            version = self._wait_version(version, wait_timeout)
        return batch.result(version)

    def _wait_version(self, version: version_pb2.Version, timeout: float | None) -> version_pb2.Version:
        """Follow the version with WatchVersion until READY (returned with its files) or FAILED (raised)."""
        try:
            final = next((v for v in self.watch_version(version.name, timeout=timeout) if version_done(v)), None)
        except DeadlineExceeded:
            final = None
        if final is None:
            raise version_timeout(version.name)
        return check_version(self._t.call(self._calls.get_version(final.name)) if version_ready(final) else final)
