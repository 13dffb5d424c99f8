"""Dropfile's Python SDK (`DropfileClient`) and the `dropfile` command line built on it.

The import name is `dropfile_client`: `dropfile` is the generated protobuf package."""

from ._version import __version__
from .client import DEFAULT_PARALLEL, DropfileClient, FileInfo, ServerStatus
from .download import TargetExists
from .errors import (
    ApiError,
    ConfirmationTimeout,
    DropfileError,
    NotSignedIn,
    ServerUnreachable,
    StorageError,
    UploadFailed,
    UploadInterrupted,
)
from .retry import RetryPolicy

__all__ = [
    "__version__",
    "DropfileClient",
    "FileInfo",
    "ServerStatus",
    "RetryPolicy",
    "DEFAULT_PARALLEL",
    "DropfileError",
    "ApiError",
    "NotSignedIn",
    "ServerUnreachable",
    "StorageError",
    "UploadFailed",
    "UploadInterrupted",
    "ConfirmationTimeout",
    "TargetExists",
]
