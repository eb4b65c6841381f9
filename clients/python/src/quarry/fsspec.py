"""The `quarry://` file system for fsspec: pandas, polars, DuckDB and Dask read versions as files.

    import pandas as pd
    pd.read_parquet("quarry://team/sales@3/2024/q1.parquet", columns=["id", "amount"],
                    storage_options={"address": "grpcs://quarry.example.com:443", "token": token})

A path is `NAMESPACE/DATASET[@VERSION]/PATH` (no version: the current one, resolved once per lookup).
Read-only: `ls`, `info`, `open` (seekable, fetching by range: a Parquet reader gets only the footer and the
column chunks it asks for), `cat_file` with ranges, `find` and `glob`. A version's folders are the prefixes
of its paths. The server's address is the `address` option, else QUARRY_ADDRESS; the token the `token` option,
else what `quarry.Client` finds (QUARRY_TOKEN, the credentials file); `ca_file` trusts a private CA. Registered
under the protocol "quarry" through the `fsspec.specs` entry point, so installing the SDK with fsspec is enough.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from fsspec.spec import AbstractFileSystem

from quarry._client import Client
from quarry._exceptions import NotFound, UsageError
from quarry._names import dataset_name, parse_ref
from quarry._reads import FoundFile
from quarry.v1 import common_pb2

__all__ = ["QuarryFileSystem"]

LISTINGS_KEPT = 16


class QuarryFileSystem(AbstractFileSystem):
    """Read-only fsspec file system over the versions of a Quarry server."""

    protocol = "quarry"
    root_marker = ""

    def __init__(self, address: str | None = None, timeout: float = 30.0, token: str | None = None,
                 ca_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.address = address
        self.timeout = timeout
        self._token = token
        self.ca_file = ca_file
        self._clients: dict[str, Client] = {}
        self._listings: dict[tuple[str, str], list[FoundFile]] = {}
        self._lock = threading.Lock()

    # --- paths ----------------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return str(path).removeprefix("quarry://").strip("/")

    def _client(self, namespace: str) -> Client:
        with self._lock:
            if namespace not in self._clients:
                self._clients[namespace] = Client(self.address, namespace=namespace, token=self._token,
                                                  ca_file=self.ca_file, timeout=self.timeout)
            return self._clients[namespace]

    def _split(self, path: str) -> tuple[Client, str, str, str]:
        """(client of the namespace, dataset, version resource name, path inside the version)."""
        parts = self._strip_protocol(path).split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise FileNotFoundError(f"{path}: expected quarry://NAMESPACE/DATASET[@VERSION]/PATH")
        try:
            ref = parse_ref(parts[1])
            client = self._client(parts[0])
        except UsageError as exc:
            raise FileNotFoundError(f"{path}: {exc}") from None
        return client, ref.dataset, client._calls.version(ref.dataset, ref.version), parts[2] if len(parts) > 2 else ""

    # --- what is there --------------------------------------------------------------------------------

    def _files(self, path: str) -> tuple[Client, str, list[FoundFile]]:
        """Every file of the version `path` names (its listing kept while the version is numbered)."""
        client, _, version, _ = self._split(path)
        with self._lock:
            kept = self._listings.get((client.namespace, version))
        if kept is not None:
            return client, version, kept
        try:
            pinned, found = client._reader.listing(version, view="basic")
        except NotFound as exc:
            raise FileNotFoundError(f"{path}: {exc.message}") from None
        with self._lock:
            self._listings[(client.namespace, pinned)] = found
            while len(self._listings) > LISTINGS_KEPT:
                self._listings.pop(next(iter(self._listings)))
        return client, pinned, found

    def _file_info(self, root: str, found: FoundFile) -> dict[str, Any]:
        file = found.file
        return {"name": f"{root}/{file.path}", "size": file.size_bytes, "type": "file", "sha256": file.sha256,
                "format": common_pb2.FileFormat.Name(file.format).removeprefix("FILE_FORMAT_"),
                "rows": file.row_count, "version": found.version}

    @staticmethod
    def _dir_info(name: str) -> dict[str, Any]:
        return {"name": name, "size": 0, "type": "directory"}

    def _root(self, path: str) -> str:
        """`NAMESPACE/DATASET[@VERSION]` of a path, as written."""
        return "/".join(self._strip_protocol(path).split("/", 2)[:2])

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The entries right under `path`: datasets of a namespace, or files and folders of a version."""
        stripped = self._strip_protocol(path)
        if "/" not in stripped:
            if not stripped:
                raise FileNotFoundError("quarry://: name a namespace (quarry://NAMESPACE)")
            client = self._client(stripped)
            datasets = [self._dir_info(f"{stripped}/{d.name.rsplit('/', 1)[-1]}") for d in client.list_datasets()]
            return datasets if detail else [e["name"] for e in datasets]
        root = self._root(stripped)
        _, _, found = self._files(stripped)
        inside = stripped[len(root) + 1:]
        prefix = f"{inside}/" if inside else ""
        entries: dict[str, dict[str, Any]] = {}
        for item in found:
            if not item.path.startswith(prefix):
                continue
            rest = item.path[len(prefix):]
            if "/" in rest:
                name = f"{root}/{prefix}{rest.split('/', 1)[0]}"
                entries.setdefault(name, self._dir_info(name))
            else:
                entries[f"{root}/{item.path}"] = self._file_info(root, item)
        if not entries:
            if any(item.path == inside for item in found):
                return [self.info(stripped)] if detail else [stripped]
            raise FileNotFoundError(path)
        listed = sorted(entries.values(), key=lambda e: e["name"])
        return listed if detail else [e["name"] for e in listed]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A file's size, sha256, format, rows and version; or a folder (a dataset, or a prefix of paths)."""
        stripped = self._strip_protocol(path)
        client, dataset, version, inside = self._split(stripped)
        root = self._root(stripped)
        if not inside:
            try:
                client.get_dataset(dataset_name(client.namespace, dataset))
            except NotFound:
                raise FileNotFoundError(path) from None
            return self._dir_info(root)
        try:
            return self._file_info(root, client._reader.file(version, inside))
        except NotFound as exc:
            if exc.reason != "FILE_NOT_FOUND":
                raise FileNotFoundError(f"{path}: {exc.message}") from None
        if next(iter(client.list_version_files(dataset, version, prefix=f"{inside}/", page_size=1)), None):
            return self._dir_info(stripped)  # a prefix of some paths: a folder
        raise FileNotFoundError(path)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Every file under `path` (and its folders with `withdirs`), from one listing of the version."""
        stripped = self._strip_protocol(path)
        if "/" not in stripped:
            names = [e["name"] for e in self.ls(stripped)]
            found_all: dict[str, Any] = {}
            for name in names:
                found_all.update(self.find(name, maxdepth=None if maxdepth is None else maxdepth - 1,
                                           withdirs=withdirs, detail=True))
            return found_all if detail else sorted(found_all)
        root = self._root(stripped)
        _, _, found = self._files(stripped)
        inside = stripped[len(root) + 1:]
        result: dict[str, Any] = {}
        for item in found:
            if inside and item.path != inside and not item.path.startswith(inside + "/"):
                continue
            rest = item.path[len(inside) + 1:] if inside and item.path != inside else item.path
            depth = rest.count("/") + 1
            if maxdepth is not None and depth > maxdepth:
                continue
            result[f"{root}/{item.path}"] = self._file_info(root, item)
            if withdirs:
                folders = item.path.split("/")[:-1]
                for end in range(len(inside.split("/")) if inside else 0, len(folders)):
                    name = f"{root}/{'/'.join(folders[:end + 1])}"
                    result.setdefault(name, self._dir_info(name))
        return result if detail else sorted(result)

    def modified(self, path: str) -> datetime.datetime:
        """When the file's version became READY (a version never changes after that)."""
        client, dataset, version, inside = self._split(path)
        pinned = self.info(path).get("version") or version
        ready = client.get_version(dataset, pinned.rsplit("/", 1)[-1]).ready_time
        return ready.ToDatetime(tzinfo=datetime.UTC)

    # --- reading --------------------------------------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError(f"quarry:// is read-only (mode {mode!r})")
        client, _, version, inside = self._split(path)
        try:
            return client._reader.open(client._reader.file(version, inside))
        except NotFound as exc:
            raise FileNotFoundError(f"{path}: {exc.message}") from None

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The bytes of a file from `start` to `end` (negative: from the end), in one ranged read."""
        client, _, version, inside = self._split(path)
        try:
            found = client._reader.file(version, inside)
        except NotFound as exc:
            raise FileNotFoundError(f"{path}: {exc.message}") from None
        size = found.file.size_bytes
        begin = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
        stop = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        return client._reader.read(found, begin, stop - begin) if stop > begin else b""

    # --- a version is read-only -----------------------------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("quarry:// is read-only: upload with quarry.Client.upload_file")

    mkdir = makedirs = rmdir = rm = rm_file = _rm = cp_file = mv = put_file = pipe_file = touch = _read_only
