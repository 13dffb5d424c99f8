"""Small HTML pages for the routes a browser navigates to rather than calls (single
sign-on's login and callback): a refusal there is read by a person, not a script, so it is
a page with the same status code and message a JSON answer would carry, and a way back."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

# Nothing to run, nothing to load, and the callback's code and state never leave as a
# Referer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title} · Dropfile</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; padding: 3rem 1rem; }}
main {{ max-width: 32rem; margin: 0 auto; }}
h1 {{ font-size: 1.4rem; }}
.status {{ color: GrayText; font-size: 0.9rem; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
<p><a href="/">Back to Dropfile</a></p>
<p class="status">HTTP {status}</p>
</main>
</body>
</html>
"""


def message_page(
    status: int, title: str, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    body = _PAGE.format(title=escape(title), message=escape(message), status=status)
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
