"""Storage (S3): the one place the upload coordinator and its reaper talk to the bucket.

- bucket.py: multipart uploads, objects and the presigned GET (`Storage`);
- presigning.py and resigning.py: presigned UploadPart URLs, many at a time;
- disposition.py: the Content-Disposition of a download;
- listing.py: the bucket's multipart uploads in progress, for the reaper.
"""

from .bucket import (
    CompletionRefused,
    Storage,
    StoredObject,
    StoredPart,
    UploadGone,
    error_code,
    normalize_etag,
    stored_object,
)
from .disposition import ascii_fallback, content_disposition
from .listing import BucketUploads, PendingMultipart
from .presigning import PartPresigner, Presigner
from .resigning import LazyPartUrls, PartUrlResigner

__all__ = [
    "BucketUploads",
    "CompletionRefused",
    "LazyPartUrls",
    "PartPresigner",
    "PartUrlResigner",
    "PendingMultipart",
    "Presigner",
    "Storage",
    "StoredObject",
    "StoredPart",
    "UploadGone",
    "ascii_fallback",
    "content_disposition",
    "error_code",
    "normalize_etag",
    "stored_object",
]
