"""File-system helpers shared by the local store and its part writer.

OSError is translated here, at the store's boundary, into Unavailable (STORE_UNAVAILABLE), as the S3 store
does: untranslated, an OSError raised inside a database transaction would reach the client as "database
unavailable".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from server.model.errors import Unavailable


@contextlib.contextmanager
def boundary(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise Unavailable(f"object store failed on {what}: {type(exc).__name__}: {exc.strerror or exc}",
                          reason="STORE_UNAVAILABLE") from exc


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
