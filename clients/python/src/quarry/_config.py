"""The client's configuration: the only place the SDK reads the environment.

    QUARRY_ADDRESS      the server: host:port, or grpcs://host:port for TLS (default 127.0.0.1:50051)
    QUARRY_NAMESPACE    namespace every call acts in (default: the credentials file's, else "default")
    QUARRY_TOKEN        the token to send (default: the credentials file's; see quarry._credentials)
    QUARRY_CREDENTIALS  the credentials file (default ~/.config/quarry/credentials)
    QUARRY_CA_FILE      PEM CA bundle to trust for TLS (default: the system's)
    QUARRY_CERT_FILE    PEM client certificate, for servers that require one (mutual TLS)
    QUARRY_KEY_FILE     PEM private key of that certificate
    QUARRY_CACHE_DIR    where resumable upload state is kept (default: the per-user cache directory)

Explicit arguments win over variables, variables over the credentials file, that over defaults.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from quarry._credentials import check_token, credentials_path, read_credentials
from quarry._exceptions import UsageError

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "Config", "cache_dir"]

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_NAMESPACE = "default"
_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Config:
    """Where the server is and how to reach it, who we are, which namespace to act in, where resume state is."""

    address: str  # host:port, without a scheme
    namespace: str
    cache_dir: Path
    token: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def target(self) -> str:
        """The address as a user writes it: grpcs://host:port over TLS."""
        return f"grpcs://{self.address}" if self.tls else self.address

    @classmethod
    def resolve(cls, address: str | None = None, namespace: str | None = None,
                cache: str | os.PathLike[str] | None = None, *, token: str | None = None, tls: bool | None = None,
                ca_file: str | os.PathLike[str] | None = None, cert_file: str | os.PathLike[str] | None = None,
                key_file: str | os.PathLike[str] | None = None) -> Config:
        """Explicit values first, then QUARRY_* variables, then the credentials file, then defaults; checked
        here, before any call."""
        given = address or os.environ.get("QUARRY_ADDRESS")
        secret = (check_token(token, "token=/--token") if token
                  else check_token(os.environ["QUARRY_TOKEN"], "QUARRY_TOKEN") if os.environ.get("QUARRY_TOKEN")
                  else None)
        stored = read_credentials(credentials_path()) if secret is None else None
        target = given or (stored.address if stored else None) or DEFAULT_ADDRESS
        bare, scheme_tls = _split_scheme(target)
        if secret is None and stored is not None and (stored.address is None or
                                                      _split_scheme(stored.address)[0] == bare):
            secret = stored.token
        from_file = stored is not None and secret == stored.token
        namespace = (namespace or os.environ.get("QUARRY_NAMESPACE") or (stored.namespace if from_file and stored
                                                                         else None) or DEFAULT_NAMESPACE)
        if not _NAMESPACE.match(namespace):
            raise UsageError(f"invalid namespace {namespace!r} (QUARRY_NAMESPACE / --namespace): use 1-63 "
                             "lower-case letters, digits and '-_.'")
        if ":" not in bare.rsplit("]", 1)[-1] and not bare.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
            raise UsageError(f"invalid address {target!r} (QUARRY_ADDRESS / --address): expected host:port or "
                             "grpcs://host:port")
        ca = _pem(ca_file or os.environ.get("QUARRY_CA_FILE"), "--ca-file / QUARRY_CA_FILE")
        cert = _pem(cert_file or os.environ.get("QUARRY_CERT_FILE"), "--cert-file / QUARRY_CERT_FILE")
        key = _pem(key_file or os.environ.get("QUARRY_KEY_FILE"), "--key-file / QUARRY_KEY_FILE")
        if (cert is None) != (key is None):
            raise UsageError("a client certificate needs its key: give both --cert-file and --key-file "
                             "(QUARRY_CERT_FILE, QUARRY_KEY_FILE), or neither")
        secure = _tls(scheme_tls, tls, wants=ca is not None or cert is not None, target=target)
        return cls(bare, namespace, Path(cache) if cache else cache_dir(), secret, secure, ca, cert, key)


def _split_scheme(target: str) -> tuple[str, bool | None]:
    """host:port and whether the scheme asks for TLS (None: no scheme)."""
    for scheme, secure in (("grpcs://", True), ("grpc://", False)):
        if target.startswith(scheme):
            return target[len(scheme):], secure
    return target, None


def _tls(scheme: bool | None, explicit: bool | None, *, wants: bool, target: str) -> bool:
    """Whether to speak TLS: the scheme's word, else tls=, else yes when a CA or a certificate was given."""
    if scheme is not None and explicit is not None and scheme != explicit:
        raise UsageError(f"{target!r} and tls={explicit} disagree: use grpcs:// for TLS, host:port or grpc:// "
                         "for plaintext")
    if scheme is False and wants:
        raise UsageError(f"{target!r} is plaintext, yet a CA or client certificate was given: use grpcs://")
    chosen = scheme if scheme is not None else explicit
    return wants if chosen is None else chosen


def _pem(value: str | os.PathLike[str] | None, option: str) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    try:
        head = path.read_bytes()[:1 << 16]
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({option}): {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise UsageError(f"{path} ({option}) is not a PEM file")
    return path


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
