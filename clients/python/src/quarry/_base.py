"""What Client and AsyncClient share (httpx's BaseClient is the model): configuration, the calls they make
(built by `Calls`, sent by a transport), and every decision taken before or after I/O. The two clients
differ only in how they wait: `def` or `async def`, a thread pool or tasks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Generic, TypeVar

from quarry._admin import AdminCalls
from quarry._batch import Batch
from quarry._calls import Calls
from quarry._config import Config
from quarry._directory import load_manifest, select_files
from quarry._download import Download
from quarry._results import ProgressCallback
from quarry._resume import ResumeStore
from quarry._retry import RetryPolicy
from quarry._transport import AsyncTransport, SyncTransport
from quarry._uploads import MAX_CHUNK, UploadJob
from quarry.v1 import capabilities_service_pb2 as cpb

__all__ = ["BaseClient"]

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)
DEFAULT_STREAMS = 4


class BaseClient(Generic[TransportT]):
    """A client of one Quarry server, acting in one namespace, before the choice of blocking or asyncio."""

    _transport: type[TransportT]

    def __init__(self, address: str | None = None, *, namespace: str | None = None, token: str | None = None,
                 tls: bool | None = None, ca_file: str | os.PathLike[str] | None = None,
                 cert_file: str | os.PathLike[str] | None = None, key_file: str | os.PathLike[str] | None = None,
                 timeout: float = 30.0, retry: RetryPolicy | None = None, streams: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        """`address` is host:port, or grpcs://host:port for TLS (or pass tls=True; a `ca_file` implies TLS).
        `token` defaults to QUARRY_TOKEN, then the credentials file (see `quarry._config`). `streams` is how many
        streams one upload uses and how many ranges a download fetches at once (default: uploads use one stream
        on a server with a local store and 4 on S3; downloads 4)."""
        self.config = Config.resolve(address, namespace, cache_dir, token=token, tls=tls, ca_file=ca_file,
                                     cert_file=cert_file, key_file=key_file)
        self.streams = streams
        self._t: TransportT = self._transport(self.config, timeout, retry or RetryPolicy())
        self._calls = Calls(self.config.namespace)
        self._admin = AdminCalls(self.config.namespace)
        self._resume = ResumeStore(self.config.cache_dir)
        self._chunk: int | None = None
        self._local_store = False
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""
        return self.config.namespace

    @property
    def parent(self) -> str:
        """`namespaces/{namespace}`."""
        return f"namespaces/{self.namespace}"

    def _chunk_of(self, capabilities: cpb.GetCapabilitiesResponse) -> int:
        """The chunk size of uploads: ours, unless the server takes less (and what kind of store it has)."""
        self._local_store = capabilities.storage_kind == "file"
        self._chunk = min(MAX_CHUNK, int(capabilities.max_chunk_bytes) or MAX_CHUNK)
        return self._chunk

    def _upload_streams(self, streams: int | None = None) -> int:
        """The streams of one upload (after `_chunk_of`): the caller's, else one on a local store, where more
        gain nothing (the server writes at disk speed and receives every stream in one event loop; measured
        with `make bench`: 4 streams no faster than 1), else DEFAULT_STREAMS (S3 parts in flight at once)."""
        return streams or self.streams or (1 if self._local_store else DEFAULT_STREAMS)

    def _parallel(self, parallel: int | None = None) -> int:
        """How many ranges or files are fetched or sent at once."""
        return parallel or self.streams or DEFAULT_STREAMS

    def _upload_job(self, path: str | os.PathLike[str], dataset: str, dest: str | None, *, content_type: str = "",
                    auto_commit: bool = False, commit_message: str = "") -> UploadJob:
        """The job of one file (blocking: it stats the file and reads its resume state)."""
        return UploadJob.prepare(self._resume, self.namespace, Path(path), dataset, dest, content_type=content_type,
                                 auto_commit=auto_commit, commit_message=commit_message)

    def _download(self, dataset: str, path: str, out: str | os.PathLike[str], version: int | str,
                  progress: ProgressCallback | None) -> Download:
        """The state of a download of `path` in a version of `dataset` to `out`."""
        return Download(out, self._calls.version(dataset, version), path, progress, self._t.timeout)

    def _batch(self, directory: str | os.PathLike[str], *, prefix: str, ignore: Iterable[str],
               manifest: str | os.PathLike[str] | None, message: str | None, use_gitignore: bool,
               progress: ProgressCallback | None, follow_symlinks: bool = False) -> Batch:
        """The files of a directory upload, with the manifest applied (blocking: it walks the directory)."""
        loaded = load_manifest(manifest) if manifest else None
        if loaded is not None and message:
            loaded.message = message
        selection = select_files(directory, ignore=ignore, manifest=loaded, manifest_path=manifest, prefix=prefix,
                                 use_gitignore=use_gitignore, follow_symlinks=follow_symlinks)
        if loaded is None and message:
            selection.message = message
        return Batch(selection, progress)

