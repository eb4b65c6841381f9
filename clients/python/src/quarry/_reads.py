"""Reading versions by range, shared by Client and AsyncClient: file lookups, listings and ranged reads.

`RangeRead` is one range of one file as ReadFile calls fetch it, without I/O: the call for what is still
missing (a stream broken halfway resumes where it stopped), each message checked against the file's
sha256 (the bytes of one file never mix with another's), the bytes gathered. `Reader` is blocking: it
sends calls through the two functions a client gives it (a unary call, and a ranged read with retries), so
the table readers, the pyarrow and fsspec file systems, and `open()` run the same code over either client.

A file is named by a version and a path. The version is resolved once per lookup ("latest" or a number
becomes the canonical, uid-based name: `FoundFile.version`), and everything read afterwards comes from
exactly that version. Versions are immutable, so what was learned about a resolved one is kept (a bounded
cache).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from quarry import _requests
from quarry._calls import Stream, Unary, stream_timeout
from quarry._exceptions import IntegrityError, NotFound
from quarry._remote_file import RemoteFile
from quarry.v1 import common_pb2, version_pb2
from quarry.v1 import dataset_service_pb2 as dpb

__all__ = ["FoundFile", "RangeRead", "Reader", "TABULAR"]

T = TypeVar("T")

TABULAR = frozenset({common_pb2.FILE_FORMAT_CSV, common_pb2.FILE_FORMAT_JSONL, common_pb2.FILE_FORMAT_PARQUET})
LISTING_PAGE = 1000
KNOWN_FILES = 4096


@dataclass(frozen=True)
class FoundFile:
    """A file of a version (with its columns and report), and that version's canonical name (by uid)."""

    version: str
    file: version_pb2.VersionFile
    rendition: bool = False  # `file` describes the file's Parquet rendition, which reads fetch instead

    def rendered(self) -> FoundFile:
        """The file as its Parquet rendition reads (a CSV or JSON Lines file of a normalize_to_parquet dataset),
        or itself when it has none."""
        if not self.file.HasField("rendition"):
            return self
        as_parquet = version_pb2.VersionFile()
        as_parquet.CopyFrom(self.file)
        as_parquet.format = self.file.rendition.format
        as_parquet.size_bytes = self.file.rendition.size_bytes
        as_parquet.sha256 = self.file.rendition.sha256
        as_parquet.ClearField("rendition")
        return FoundFile(self.version, as_parquet, rendition=True)

    @property
    def path(self) -> str:
        """The file's path in the version."""
        return self.file.path


@dataclass
class RangeRead:
    """`length` bytes of a file from `offset`, gathered from ReadFile messages across retries."""

    version: str
    path: str
    offset: int
    length: int
    sha256: str
    timeout: float
    rendition: bool = False
    pieces: list[bytes] = field(default_factory=list)
    received: int = 0

    @classmethod
    def of(cls, found: FoundFile, offset: int, length: int, timeout: float) -> RangeRead:
        """A range of a file found in a version (its sha256 checked on every message)."""
        return cls(found.version, found.path, offset, length, found.file.sha256, timeout, found.rendition)

    @property
    def done(self) -> bool:
        """Whether every byte of the range is here (a stream may break after its last message: nothing to ask)."""
        return self.received >= self.length

    def call(self) -> Stream:
        """The ReadFile stream of what is still missing (never called when `done`: a limit of 0 reads to the
        end of the file)."""
        left = self.length - self.received
        request = dpb.ReadFileRequest(version=self.version, path=self.path, offset=self.offset + self.received,
                                      limit=left, rendition=self.rendition)
        return Stream("datasets", "ReadFile", request, stream_timeout(left, self.timeout))

    def accept(self, message: dpb.ReadFileResponse) -> None:
        """Keep one message's bytes; IntegrityError if they are not the next ones of the same file."""
        if self.sha256 and message.sha256 != self.sha256:
            raise IntegrityError(f"{self.version}:{self.path} changed while it was read (sha256 {message.sha256}, "
                                 f"expected {self.sha256})")
        if message.offset != self.offset + self.received:
            raise IntegrityError(f"ReadFile sent bytes at offset {message.offset}; expected "
                                 f"{self.offset + self.received}")
        data = message.data  # each read of a bytes field is a fresh copy of it: read it once
        if self.received + len(data) > self.length:
            raise IntegrityError(f"ReadFile sent {self.received + len(data)} bytes of a range of {self.length}")
        self.pieces.append(data)
        self.received += len(data)

    def data(self) -> bytes:
        """The bytes read (the caller checks their length)."""
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


def _missing(version: str, path: str) -> NotFound:
    # The server answers a read of a missing path with this same status and reason.
    return NotFound(grpc.StatusCode.NOT_FOUND, f"path {path!r} is not in version {version}", reason="FILE_NOT_FOUND",
                    metadata={"path": path})


def lookup_call(version: str, path: str) -> Unary[FoundFile]:
    """ListVersionFiles of the paths starting with `path`, one in full: the file itself sorts first."""
    request = dpb.ListVersionFilesRequest(parent=version, path_prefix=path, page_size=1,
                                          view=dpb.VERSION_VIEW_FULL)

    def read(response: dpb.ListVersionFilesResponse) -> FoundFile:
        if not response.files or response.files[0].path != path:
            raise _missing(response.version or version, path)
        return FoundFile(response.version, response.files[0])

    return Unary("datasets", "ListVersionFiles", request, read)


class Reader:
    """Blocking reads of versions through one client's calls."""

    def __init__(self, call: Callable[[Unary[Any]], Any], fetch: Callable[[RangeRead], bytes],
                 timeout: float) -> None:
        """`call` sends a unary call (retried); `fetch` reads a range (retried, resuming)."""
        self._call = call
        self._fetch = fetch
        self.timeout = timeout
        self._known: collections.OrderedDict[tuple[str, str], FoundFile] = collections.OrderedDict()
        self._lock = threading.Lock()

    def file(self, version: str, path: str) -> FoundFile:
        """The file at `path` in a version (by resource name); NotFound if it has none."""
        with self._lock:
            known = self._known.get((version, path))
        if known is not None:
            return known
        found: FoundFile = self._call(lookup_call(version, path))
        self.remember([found])
        return found

    def remember(self, found: Iterable[FoundFile]) -> None:
        """Keep what was learned about files of numbered versions (immutable), the latest few thousand."""
        with self._lock:
            for item in found:
                self._known[(item.version, item.path)] = item
                self._known.move_to_end((item.version, item.path))
            while len(self._known) > KNOWN_FILES:
                self._known.popitem(last=False)

    def listing(self, version: str, *, prefix: str = "", formats: Iterable[str | int] = (),
                view: _requests.View = "full") -> tuple[str, list[FoundFile]]:
        """The version's canonical name (by uid) and every file under `prefix` of `formats` (all pages)."""
        request = dpb.ListVersionFilesRequest(parent=version, path_prefix=prefix, view=_requests.view(view),
                                              formats=_requests.file_formats(formats), page_size=LISTING_PAGE)
        found: list[FoundFile] = []
        pinned = version
        for response in self._pages(request):
            pinned = response.version
            found += [FoundFile(pinned, file) for file in response.files]
        if view == "full":
            self.remember(found)
        return pinned, found

    def _pages(self, request: dpb.ListVersionFilesRequest) -> Iterator[dpb.ListVersionFilesResponse]:
        while True:
            response: dpb.ListVersionFilesResponse = self._call(Unary("datasets", "ListVersionFiles", request))
            yield response
            if not response.next_page_token:
                return
            request = dpb.ListVersionFilesRequest(parent=request.parent, path_prefix=request.path_prefix,
                                                  formats=request.formats, view=request.view,
                                                  page_size=request.page_size, page_token=response.next_page_token)

    def read(self, found: FoundFile, offset: int, length: int) -> bytes:
        """`length` bytes of a file from `offset` (fewer at its end)."""
        length = max(0, min(length, found.file.size_bytes - offset))
        if length == 0:
            return b""
        return self._fetch(RangeRead.of(found, offset, length, self.timeout))

    def open(self, found: FoundFile, **options: int) -> RemoteFile:
        """The file as a seekable, buffered binary file."""
        return RemoteFile(lambda offset, length: self.read(found, offset, length), found.file.size_bytes,
                          name=found.path, sha256=found.file.sha256, version=found.version, **options)
