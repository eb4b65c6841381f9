"""Quarry client: the Python SDK and the `quarry` command line.

    import quarry

    with quarry.Client("127.0.0.1:50051", namespace="team", token="qk_…") as client:  # or QUARRY_TOKEN
        result = client.upload_file("sales.csv", "sales", wait=True)
        for version in client.list_versions("sales"):
            print(version.number, version.message)

Everything public is named here; the generated stubs of the contract are in `quarry.v1`, and methods
return its messages (`quarry.v1.dataset_pb2.Dataset`, `quarry.v1.upload_pb2.Upload`, ...).
"""

from quarry._admin import IssuedToken
from quarry._allocator import tune_allocator
from quarry._async_client import AsyncClient
from quarry._client import Client
from quarry._config import DEFAULT_ADDRESS, DEFAULT_NAMESPACE
from quarry._directory import Manifest, Selection, load_manifest, select_files
from quarry._exceptions import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    BaseMoved,
    Cancelled,
    ChecksumMismatch,
    ConnectError,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    IntegrityError,
    Internal,
    InvalidArgument,
    MissingDependency,
    NotFound,
    OutOfRange,
    PermissionDenied,
    QuarryError,
    ResourceExhausted,
    RpcError,
    TlsError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    UploadFailed,
    UsageError,
    WrongOffset,
    WrongState,
)
from quarry._names import DatasetRef, parse_ref
from quarry._remote_file import RemoteFile
from quarry._results import DirectoryUploadResult, DownloadResult, ProgressCallback, UploadResult
from quarry._retry import RetryPolicy
from quarry._version_download import VersionDownloadResult

__version__ = "0.1.0"

__all__ = [
    "tune_allocator",
    "DEFAULT_ADDRESS",
    "DEFAULT_NAMESPACE",
    "ERROR_DOMAIN",
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "BaseMoved",
    "Cancelled",
    "ChecksumMismatch",
    "Client",
    "ConnectError",
    "DataLoss",
    "DatasetRef",
    "DeadlineExceeded",
    "DirectoryUploadResult",
    "DownloadResult",
    "FailedPrecondition",
    "FieldViolation",
    "IntegrityError",
    "Internal",
    "InvalidArgument",
    "IssuedToken",
    "Manifest",
    "MissingDependency",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ProgressCallback",
    "QuarryError",
    "ResourceExhausted",
    "RetryPolicy",
    "RemoteFile",
    "RpcError",
    "Selection",
    "TlsError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UploadFailed",
    "UploadResult",
    "UsageError",
    "VersionDownloadResult",
    "WrongOffset",
    "WrongState",
    "__version__",
    "load_manifest",
    "parse_ref",
    "select_files",
]
