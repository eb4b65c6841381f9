"""A local store's object as a seekable file: reads go straight to `os.pread`, with no cache in between.

pyarrow asks for whole column chunks or pages at a time, and the page cache already holds what was read,
so a cache of our own would only copy every byte once more (measured on a 300 MB file: 380-610 MB/s this way, as fast as
pyarrow opening the path itself; through the caching range reader 430-510).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from server.model.objects import RandomReader


class LocalFileReader(RandomReader):
    """Read-only, seekable bytes of one local file."""

    remote = False

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._size = os.fstat(self._fd).st_size
        except OSError:
            os.close(self._fd)
            raise
        self._position = 0
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        done = 0
        while done < len(target):
            count = os.preadv(self._fd, [target[done:]], self._position)
            if count == 0:
                break  # end of file
            done += count
            self._position += count
        self.bytes_fetched += done
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._size - self._position)
        pieces = []
        while size > 0:
            piece = os.pread(self._fd, size, self._position)  # one syscall, one copy, in the common case
            if not piece:
                break  # end of file
            pieces.append(piece)
            self._position += len(piece)
            self.bytes_fetched += len(piece)
            size -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
