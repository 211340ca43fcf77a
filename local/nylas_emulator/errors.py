"""Error shapes of the three Nylas surfaces, as exceptions a handler raises and renderers that answer them.

- v3 API (``/v3/...``): ``{"request_id", "error": {"type", "message", "provider_error"?}}``.
- OAuth (``/v3/connect/token``, ``/revoke``): ``{"error", "error_code", "error_description", "error_uri"}``.
- beta (``/connect/...``): the v2 shape ``{"message", "type"}`` (what the v2-era SDKs parse).
- browser pages (consent): a small HTML page.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

ERROR_URI = "https://developer.nylas.com/docs/api/errors/"

# OAuth error codes used by the emulator at /v3/connect/token. Nylas documents only 45004 (the Nylas CLI
# tests); the others are the emulator's choice, listed in the README.
OAUTH_INVALID_REQUEST = 45000
OAUTH_INVALID_CLIENT = 45001
OAUTH_INVALID_SECRET = 45002
OAUTH_CODE_INVALID = 45003
OAUTH_VERIFIER_FAILED = 45004
OAUTH_REDIRECT_MISMATCH = 45005
OAUTH_UNSUPPORTED_GRANT_TYPE = 45006
OAUTH_REFRESH_INVALID = 45007
OAUTH_TOKEN_INVALID = 45008

# Default v3 error type per status, for faults and generic errors (the OpenAPI examples' spelling).
V3_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_error",
    502: "provider_error",
    503: "service_unavailable",
    504: "provider_error",
}

JSON = dict[str, Any]


def request_id_of(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else ""


class EmulatorError(Exception):
    """Base class: each subclass knows how to render itself."""

    status: int

    def render(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError


class NylasError(EmulatorError):
    """A v3 API error."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        provider_error: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.provider_error = provider_error
        self.headers = headers or {}

    def render(self, request: Request) -> Response:
        return v3_error_response(
            request,
            self.status,
            self.type,
            self.message,
            provider_error=self.provider_error,
            headers=self.headers,
        )


class OAuthError(EmulatorError):
    """An error of the OAuth endpoints (token, revoke)."""

    def __init__(self, error: str, error_code: int, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.error_code = error_code
        self.description = description

    def render(self, request: Request) -> Response:
        return JSONResponse(
            {
                "error": self.error,
                "error_code": self.error_code,
                "error_description": self.description,
                "error_uri": ERROR_URI,
            },
            status_code=self.status,
        )


class BetaError(EmulatorError):
    """A beta (v2-era) error: ``{"message", "type"}``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or {}

    def render(self, request: Request) -> Response:
        return JSONResponse(
            {"message": self.message, "type": self.type}, status_code=self.status, headers=self.headers
        )


class PageError(EmulatorError):
    """An error shown to a browser as an HTML page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def render(self, request: Request) -> Response:
        return html_page(
            "Nylas emulator: request refused",
            f"<p>{html.escape(self.message)}</p>"
            f"<p><small>request id {html.escape(request_id_of(request))}</small></p>",
            status=self.status,
        )


def v3_error_body(request_id: str, status: int, type_: str | None = None, message: str | None = None) -> JSON:
    return {
        "request_id": request_id,
        "error": {
            "type": type_ or V3_TYPE_BY_STATUS.get(status, "api_error"),
            "message": message or f"HTTP {status}",
        },
    }


def v3_error_response(
    request: Request,
    status: int,
    type_: str,
    message: str,
    *,
    provider_error: JSON | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = v3_error_body(request_id_of(request), status, type_, message)
    if provider_error is not None:
        body["error"]["provider_error"] = provider_error
    return JSONResponse(body, status_code=status, headers=headers)


PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#222}"
    ".banner{background:#fff3cd;border:1px solid #e0c36c;padding:.6rem .8rem;border-radius:6px}"
    "dt{font-weight:600}dd{margin:0 0 .5rem 0;word-break:break-all}"
    "input[type=email]{width:100%;padding:.4rem;font-size:1rem}"
    "button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.6rem}"
)


def html_page(title: str, body_html: str, status: int = 200) -> HTMLResponse:
    """A complete page; ``title`` is escaped here, ``body_html`` must already be escaped by the caller."""
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<p class="banner"><strong>Nylas emulator</strong> &mdash; a local test double. '
        "This is not Nylas and not Microsoft; nothing here signs you in anywhere.</p>"
        f"<h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
