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
`x-error-codes` and as examples), and `Retry-After` where time lifts the refusal.

Routes a browser navigates to (share links' `/s/<token>`, single sign-on's login and
callback) answer their own refusals with an HTML page rather than JSON: they list those
codes with `page_responses(...)` instead, and their redirects with `redirect_response(...)`:

    responses=merged(
        redirect_response("to the file"),
        page_responses("LINK_NOT_FOUND", "LINK_GUESSES_THROTTLED"),
    )

(openapi.py's docstring says how the document writes them.)"""

from __future__ import annotations

from typing import Any

from .errors import ERROR_CODE

# Where openapi.py finds a route's own codes in the document FastAPI generates.
CODES_KEY = "x-error-codes"
# ... and the codes a route answers with an HTML page (a marker openapi.py removes).
PAGE_CODES_KEY = "x-dropfile-page-codes"

Responses = dict[int | str, dict[str, Any]]


def _codes(key: str, codes: tuple[str, ...]) -> Responses:
    declared: Responses = {}
    for code in codes:
        entry = ERROR_CODE[code]  # KeyError: not a documented code
        response = declared.setdefault(entry.status, {"description": "", key: []})
        response[key].append(code)
    return declared


def error_responses(*codes: str) -> Responses:
    """`responses=` for a route whose work may answer these codes (beyond the ones every
    route of its kind may answer, which openapi.py adds)."""
    return _codes(CODES_KEY, codes)


def page_responses(*codes: str) -> Responses:
    """`responses=` for a route a browser navigates to, which answers these codes with an
    HTML page of their status (gateway/pages.py, routes/share_pages.py) rather than a JSON
    body. openapi.py adds the failures of the backends it calls (and INTERNAL) as pages
    too; the gateway's own refusals around it (headers, body, connections) stay JSON."""
    return _codes(PAGE_CODES_KEY, codes)


def redirect_response(description: str) -> Responses:
    """`responses=` for a route that answers 302 with `Location` (no body)."""
    return {
        302: {
            "description": f"Found: {description}",
            "headers": {
                "Location": {
                    "description": "Where the browser goes next",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1},
                }
            },
        }
    }


def merged(*declarations: Responses) -> Responses:
    """One `responses=` from several (their code lists of a same status joined)."""
    result: Responses = {}
    for declaration in declarations:
        for status, response in declaration.items():
            into = result.setdefault(status, {})
            for key, value in response.items():
                if key in (CODES_KEY, PAGE_CODES_KEY):
                    into[key] = [*into.get(key, []), *value]
                elif key == "description":
                    into[key] = into.get(key) or value
                else:
                    into[key] = value
    return result


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
