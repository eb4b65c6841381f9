"""Settings: the only reader of the environment.

Every setting is a `QUARRY_*` variable. `load_settings()` validates them all at start-up and raises
`ConfigError` naming the variable and the problem, which the entry points print as one line.
"""

from __future__ import annotations

import difflib
import os
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.model.errors import ConfigError
from server.model.locations import LocalLocation, S3Location, StorageLocation
from server.model.redaction import redact

PREFIX = "QUARRY_"
MiB = 1 << 20
GiB = 1 << 30

# Variables read by the client SDK and CLI, not by the server; the server must not call them unknown.
CLIENT_VARIABLES = frozenset({"QUARRY_ADDRESS", "QUARRY_NAMESPACE", "QUARRY_TIMEOUT", "QUARRY_CACHE_DIR",
                              "QUARRY_TOKEN", "QUARRY_CREDENTIALS", "QUARRY_CA_FILE", "QUARRY_CERT_FILE",
                              "QUARRY_KEY_FILE"})
# Settings whose value is never echoed in an error, not even redacted.
SECRET_SETTINGS = frozenset({"s3_secret_access_key"})


def parse_storage_url(url: str) -> StorageLocation:
    """Parse `s3://bucket[/prefix]?endpoint=http://host:9000&region=r` or `file:///path` (or `file://rel`)."""
    if url.startswith("file://"):
        raw = url[len("file://"):]
        if not raw:
            raise ValueError("file:// URL has no path")
        return LocalLocation(Path(raw).expanduser().resolve())
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError("scheme must be s3:// or file://")
    if not parts.netloc:
        raise ValueError("s3 URL names no bucket")
    query = parse_qs(parts.query)
    unknown = set(query) - {"endpoint", "region"}
    if unknown:
        raise ValueError(f"unknown s3 URL parameter(s): {', '.join(sorted(unknown))}")
    endpoint = query.get("endpoint", [None])[0]
    if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError("endpoint must be an http(s) URL")
    prefix = parts.path.strip("/")
    return S3Location(
        bucket=parts.netloc,
        prefix=f"{prefix}/" if prefix else "",
        endpoint=endpoint,
        region=query.get("region", ["us-east-1"])[0],
    )


class Settings(BaseSettings):
    """Every `QUARRY_*` setting of the server, the worker and the embedded stack."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, frozen=True)

    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/quarry", description="Postgres DSN")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (redis:// or unix://)")
    storage_url: str = Field("file://.quarry/objects", description="s3://bucket?endpoint=… or file:///path")
    s3_access_key_id: str | None = Field(None, description="S3 access key; default: the AWS credential chain")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key")
    s3_parts_in_flight: int = Field(4, gt=0, le=256, description="S3 part uploads in flight across the server")
    grpc_address: str = Field("127.0.0.1:50051", description="host:port the gRPC server listens on")
    flight_address: str = Field("", description="host:port of the Arrow Flight endpoint; empty: off")
    flight_split_bytes: int = Field(64 * MiB, ge=MiB, description="Parquet bytes per Flight endpoint of a big file")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus port of the server; 0 disables")
    metrics_host: str = Field("127.0.0.1", min_length=1, description="interface the /metrics endpoints listen on")
    worker_metrics_port: int = Field(9465, ge=0, le=65535, description="Prometheus port of the worker; 0 disables")
    data_dir: Path = Field(Path(".quarry"), description="data directory of `quarry dev`")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["json", "text"] = Field("json", description="json (one object per line) or text")
    startup_timeout_seconds: float = Field(10, gt=0, description="how long to wait for dependencies")
    shutdown_grace_seconds: float = Field(10, gt=0, description="time in-flight calls get at stop")
    health_interval_seconds: float = Field(2, gt=0, description="how often dependencies are probed")
    health_failures: int = Field(3, gt=0, description="failed probes in a row before a dependency is down")
    min_free_bytes: int = Field(1 << 30, ge=0, description="free space a local store keeps to be SERVING")
    default_namespace: str = Field("default", description="namespace of callers that name none")
    stream_window_bytes: int = Field(2 * MiB, ge=64 * 1024, le=64 * MiB,
                                     description="bytes gRPC accepts on a stream before the handler reads them")
    max_chunk_bytes: int = Field(8 * MiB, ge=64 * 1024, le=64 * MiB, description="largest upload chunk")
    max_buffer_bytes: int = Field(256 * MiB, ge=32 * MiB, description="bytes the server holds for streams, at most")
    buffer_wait_seconds: float = Field(10, ge=0, description="how long a stream waits for buffer space")
    stream_idle_seconds: float = Field(30, gt=0, description="an upload stream that sends nothing this long ends")
    min_part_bytes: int = Field(5 * MiB, ge=5 * MiB, description="smallest part size (S3's minimum is 5 MiB)")
    max_part_bytes: int = Field(128 * MiB, ge=5 * MiB, le=5 * GiB, description="largest part size")
    max_upload_bytes: int = Field(1 << 40, gt=0, description="largest file one upload may hold")
    max_open_uploads: int = Field(1000, gt=0, description="most OPEN uploads per namespace")
    upload_expiry_seconds: float = Field(86400, gt=0, description="lifetime of an unfinished upload")
    max_page_size: int = Field(1000, gt=0, description="largest page of a List call")
    max_preview_rows: int = Field(10_000, gt=0, description="largest preview")
    worker_concurrency: int = Field(4, gt=0, description="jobs one worker runs at once")
    job_timeout_seconds: float = Field(7200, gt=0, description="longest a job may run")
    job_max_tries: int = Field(5, gt=0, description="tries of a job that fails transiently")
    job_heartbeat_seconds: float = Field(30, gt=0, description="how soon another worker takes over a dead one's job")
    stuck_after_seconds: float = Field(20, gt=0, description="when unchanged work has its job queued again")
    sweep_interval_seconds: float = Field(60, gt=0, description="how often the sweep runs")
    gc_grace_seconds: float = Field(3600, gt=0, description="age before unreferenced objects are removed")
    auth_mode: Literal["tokens", "none"] = Field("tokens", description="tokens, or none for a trusted network")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: serve TLS")
    tls_key_file: Path | None = Field(None, description="PEM private key of the certificate")
    tls_client_ca_file: Path | None = Field(None, description="PEM CA bundle: require client certificates (mTLS)")
    audit_retention_days: float = Field(365, gt=0, description="age at which the sweep deletes audit events")
    max_url_ttl_seconds: float = Field(3600, gt=0, le=7 * 86400, description="longest a download URL lives")
    deleted_retention_days: float = Field(7, gt=0, description="how long a deleted dataset can be undeleted")
    register_roots: str = Field("", description="comma-separated directories RegisterFiles may read local files under")
    inline_max_bytes: int = Field(256 * 1024, ge=0, le=4 * MiB - 64 * 1024,
                                  description="largest file WriteFile keeps inline in Postgres; 0: off")

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file")
    @classmethod
    def _readable_pem(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        try:
            head = path.read_bytes()[:1 << 16]
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in head:
            raise ValueError(f"{path} is not a PEM file")
        return path

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            variable = "QUARRY_TLS_KEY_FILE" if self.tls_key_file is None else "QUARRY_TLS_CERT_FILE"
            raise ConfigError(variable, "QUARRY_TLS_CERT_FILE and QUARRY_TLS_KEY_FILE go together: set both or "
                                        "neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ConfigError("QUARRY_TLS_CLIENT_CA_FILE", "client certificates need TLS: set QUARRY_TLS_CERT_FILE "
                                                           "and QUARRY_TLS_KEY_FILE too")
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            # Loaded once here, so a bad pair is one line naming the variable, not a wall of TLS library errors.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
            except ssl.SSLError as exc:
                raise ConfigError("QUARRY_TLS_KEY_FILE", f"{self.tls_key_file} is not the key of the certificate in "
                                                         f"{self.tls_cert_file}, or either is unusable "
                                                         f"({exc.reason or exc})") from None
            if self.tls_client_ca_file is not None:
                try:
                    context.load_verify_locations(self.tls_client_ca_file)
                except ssl.SSLError as exc:
                    raise ConfigError("QUARRY_TLS_CLIENT_CA_FILE", f"{self.tls_client_ca_file} holds no usable CA "
                                                                   f"certificate ({exc.reason or exc})") from None
        return self

    @field_validator("storage_url")
    @classmethod
    def _storage_url_parses(cls, value: str) -> str:
        parse_storage_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("min_part_bytes", "max_part_bytes")
    @classmethod
    def _part_bytes_whole_mib(cls, value: int) -> int:
        # Parts start at multiples of the part size; the local store writes them with O_DIRECT, which needs
        # aligned offsets.
        if value % MiB:
            raise ValueError("must be a whole number of MiB")
        return value

    @field_validator("max_part_bytes")
    @classmethod
    def _max_part_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        smallest = info.data.get("min_part_bytes")
        if smallest is not None and value < smallest:
            raise ValueError(f"must be at least QUARRY_MIN_PART_BYTES ({smallest})")
        return value

    @field_validator("grpc_address", "flight_address")
    @classmethod
    def _address_has_port(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name == "flight_address":
            return value  # no Flight endpoint
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return value

    @field_validator("register_roots")
    @classmethod
    def _register_roots_exist(cls, value: str) -> str:
        for root in (r.strip() for r in value.split(",") if r.strip()):
            path = Path(root)
            if not path.is_absolute():
                raise ValueError(f"{root!r} is not an absolute path")
            if not path.is_dir():
                raise ValueError(f"{root} is not a directory")
        return value

    @property
    def register_root_paths(self) -> tuple[Path, ...]:
        """The directories RegisterFiles may read local files under."""
        return tuple(Path(r.strip()) for r in self.register_roots.split(",") if r.strip())

    @property
    def tls(self) -> bool:
        """Whether the gRPC server speaks TLS."""
        return self.tls_cert_file is not None

    @property
    def storage(self) -> StorageLocation:
        """The parsed storage location."""
        return parse_storage_url(self.storage_url)

    @field_validator("max_buffer_bytes")
    @classmethod
    def _budget_holds_a_stream(cls, value: int, info: ValidationInfo) -> int:
        # Three quarters of it (the rest holds the windows of waiting streams) must hold one upload stream and its
        # part writer, or no upload could ever start.
        window, chunk = info.data.get("stream_window_bytes"), info.data.get("max_chunk_bytes")
        if window is not None and chunk is not None:
            needed = window + 2 * chunk + 16 * MiB
            if value - value // 4 < needed:
                raise ValueError(f"must hold at least one upload stream in three quarters of it: {needed * 4 // 3} "
                                 "bytes (QUARRY_STREAM_WINDOW_BYTES + 2 x QUARRY_MAX_CHUNK_BYTES + 16 MiB of part "
                                 "buffers, and a quarter for streams waiting)")
        return value

    @property
    def max_message_bytes(self) -> int:
        """Largest gRPC message accepted: one chunk plus room for the envelope."""
        return self.max_chunk_bytes + 64 * 1024


def _check_unknown_variables(environ: dict[str, str]) -> None:
    known = {PREFIX + name.upper() for name in Settings.model_fields} | CLIENT_VARIABLES
    for variable in sorted(environ):
        if variable.upper().startswith(PREFIX) and variable.upper() not in known:
            close = difflib.get_close_matches(variable.upper(), sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(variable, f"unknown setting{hint}")


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings from the environment (overrides win); raise ConfigError naming the
    first bad variable."""
    _check_unknown_variables(dict(os.environ))
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        message = redact(str(error["msg"]).removeprefix("Value error, "))
        if field in SECRET_SETTINGS:
            raise ConfigError(PREFIX + field.upper(), message) from None
        raise ConfigError(PREFIX + field.upper(), f"{message} (got {redact(repr(error.get('input')))})") from None
