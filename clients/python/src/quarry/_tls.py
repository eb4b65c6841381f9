"""TLS for the channel, and telling a security mismatch from a server that is down.

grpc reports both "the server is restarting" and "we speak plaintext to a TLS server" (or trust the wrong
CA, or lack the client certificate it requires) as UNAVAILABLE. The first is worth retrying for a minute;
the others fail the same way forever. So when a connection fails, `diagnose` makes one TLS handshake of its
own with the standard library (a few seconds at most, once per client) and, when that handshake shows a
mismatch, turns the error into a `TlsError` that says what to change. A server that is simply down stays a
`ConnectError`, retried as before.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import grpc

from quarry._config import Config
from quarry._exceptions import ConnectError, RpcError, TlsError

__all__ = ["Diagnosis", "channel_credentials"]

PROBE_SECONDS = 3.0


def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    """The TLS credentials of the channel (None: plaintext)."""
    if not config.tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=config.ca_file.read_bytes() if config.ca_file else None,
        private_key=config.key_file.read_bytes() if config.key_file else None,
        certificate_chain=config.cert_file.read_bytes() if config.cert_file else None)


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return None
    return host.strip("[]"), int(port)


@dataclass
class Diagnosis:
    """Finds out, once, why connections to the server fail when that is a TLS mismatch."""

    config: Config
    _found: TlsError | None = None
    _done: bool = False

    def __call__(self, error: RpcError) -> RpcError:
        """`error`, or a TlsError saying what is wrong when the server's security does not match ours."""
        if not isinstance(error, ConnectError) or isinstance(error, TlsError):
            return error
        if not self._done:
            self._done = True
            self._found = self._probe(error)
        return self._found or error

    def _probe(self, error: ConnectError) -> TlsError | None:
        target = _host_port(self.config.address)
        if target is None:
            return None
        host, port = target
        try:
            raw = socket.create_connection((host, port), timeout=PROBE_SECONDS)
        except OSError:
            return None  # nothing listens: the server is down, which is worth retrying
        with raw:
            if not self.config.tls:
                return self._plaintext_to(raw, host, error)
            return self._tls_to(raw, host, error)

    def _plaintext_to(self, raw: socket.socket, host: str, error: ConnectError) -> TlsError | None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with context.wrap_socket(raw, server_hostname=host):
                pass
        except (ssl.SSLError, OSError):
            return None  # it does not speak TLS either: something else is wrong
        return TlsError(error.code, f"the server at {self.config.address} speaks TLS: connect to "
                                    f"grpcs://{self.config.address} (or pass tls=True / --ca-file)")

    def _tls_to(self, raw: socket.socket, host: str, error: ConnectError) -> TlsError | None:
        context = ssl.create_default_context(cafile=str(self.config.ca_file) if self.config.ca_file else None)
        context.check_hostname = False  # grpc checks the name; the probe asks only who signed the certificate
        if self.config.cert_file and self.config.key_file:
            context.load_cert_chain(self.config.cert_file, self.config.key_file)
        target = f"grpcs://{self.config.address}"
        try:
            with context.wrap_socket(raw, server_hostname=host) as secure:
                secure.settimeout(0.5)
                try:
                    # With TLS 1.3 a server refuses a client certificate (or its absence) after the handshake:
                    # it hangs up at once, where a server content with us waits for the HTTP/2 preface.
                    if secure.recv(1) == b"":
                        return self._refused_certificate(error)
                except TimeoutError:
                    return None
        except ssl.SSLCertVerificationError as exc:
            return TlsError(error.code, f"the certificate of {target} is not trusted ({exc.verify_message}): pass "
                                        "the CA that signed it with --ca-file / ca_file= / QUARRY_CA_FILE")
        except ssl.SSLError as exc:
            if exc.reason == "WRONG_VERSION_NUMBER":
                return TlsError(error.code, f"the server at {self.config.address} does not speak TLS: connect to "
                                            f"{self.config.address} without grpcs://")
            if "CERTIFICATE" in (exc.reason or ""):
                return self._refused_certificate(error)
            return TlsError(error.code, f"the TLS handshake with {target} failed: {exc.reason or exc}")
        except OSError:
            return None
        return None

    def _refused_certificate(self, error: ConnectError) -> TlsError:
        target = f"grpcs://{self.config.address}"
        if self.config.cert_file is None:
            return TlsError(error.code, f"{target} requires a client certificate: pass --cert-file and --key-file "
                                        "(cert_file=, key_file=; QUARRY_CERT_FILE, QUARRY_KEY_FILE)")
        return TlsError(error.code, f"{target} refused the client certificate {self.config.cert_file} (expired, or "
                                    "signed by a CA it does not trust)")
