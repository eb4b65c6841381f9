"""The client's configuration: the only place the SDK reads the environment.

    QUARRY_ADDRESS     host:port of the server (default 127.0.0.1:50051)
    QUARRY_NAMESPACE   namespace every call acts in (default "default", the server's default)
    QUARRY_CACHE_DIR   where resumable upload state is kept (default: the per-user cache directory)
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from quarry._exceptions import UsageError

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "Config", "cache_dir"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Config:
    """Where the server is, which namespace to act in, and where to keep resume state."""

    address: str
    namespace: str
    cache_dir: Path

    @classmethod
    def resolve(cls, address: str | None = None, namespace: str | None = None,
                cache: str | os.PathLike[str] | None = None) -> Config:
        """Explicit values first, then QUARRY_* variables, then defaults; checked here, before any call."""
        address = address or os.environ.get("QUARRY_ADDRESS") or DEFAULT_ADDRESS
        namespace = namespace or os.environ.get("QUARRY_NAMESPACE") or DEFAULT_NAMESPACE
        if not _NAMESPACE.match(namespace):
            raise UsageError(f"invalid namespace {namespace!r} (QUARRY_NAMESPACE / --namespace): use 1-63 "
                             "lower-case letters, digits and '-_.'")
        if ":" not in address.rsplit("]", 1)[-1] and not address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
            raise UsageError(f"invalid address {address!r} (QUARRY_ADDRESS / --address): expected host:port")
        return cls(address, namespace, Path(cache) if cache else cache_dir())


def cache_dir() -> Path:
    """QUARRY_CACHE_DIR, else the platform's per-user cache directory plus "quarry"."""
    explicit = os.environ.get("QUARRY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "quarry" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "quarry"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "quarry"
