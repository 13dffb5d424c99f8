"""The API document's error answers, declared once for every route.

A route lists the codes its own work may answer (gateway/errors.py's ERROR_CODES; a typo
fails at import):

    @router.post("/files/{file_id}/thing", operation_id="doThing",
                 responses=error_responses("NOT_FOUND", "UPLOAD_ABORTED"))

and openapi.py adds what every route of its kind may answer: 400 INVALID_REQUEST when it
takes a body or parameters (408 and 413 too, with a body), the 401 codes and the
session-check 503s when it acts for the signed-in user, and 431, 500, 503 and 504 for all.
It then writes each status once, with its body schema (ErrorReply, or FileErrorReply under
/api/files, as errors.error_body answers), the codes it may carry (in its description, in
`x-error-codes` and as examples), and `Retry-After` where time lifts the refusal."""

from __future__ import annotations

from typing import Any

from .errors import ERROR_CODE

# Where openapi.py finds a route's own codes in the document FastAPI generates.
CODES_KEY = "x-error-codes"


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose work may answer these codes (beyond the ones every
    route of its kind may answer, which openapi.py adds)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry = ERROR_CODE[code]  # KeyError: not a documented code
        response = declared.setdefault(entry.status, {"description": "", CODES_KEY: []})
        response[CODES_KEY].append(code)
    return declared


# The operations that act on one file by its id (the `file_id` path parameter).
FILE_OPERATIONS = {
    "GetFile": ("getFile", "the file, with its whole-file SHA-256"),
    "GetUploadState": ("getUploadState", "where the upload stands: the parts storage holds"),
    "GetPartUrls": ("getPartUrls", "presigned PUT URLs for its parts"),
    "RecordPart": ("recordPart", "record a part storage accepted"),
    "RecordParts": ("recordParts", "record several parts at once"),
    "CompleteUpload": ("completeUploadV2", "complete the upload"),
}


def file_links(file_id: str) -> dict[str, dict[str, Any]]:
    """OpenAPI links from an answer that names a file (`file_id`: a runtime expression, e.g.
    `$response.body#/fileId`) to the operations that take its id."""
    return {
        name: {
            "operationId": operation_id,
            "parameters": {"file_id": file_id},
            "description": f"{description[0].upper()}{description[1:]}.",
        }
        for name, (operation_id, description) in FILE_OPERATIONS.items()
    }
