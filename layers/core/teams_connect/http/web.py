"""HTTP answers: JSON (backend API), 302 redirects and small HTML pages (browser), cookies,
and the security headers of contract.md. Nothing here reflects request data unescaped."""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from teams_connect.errors import (
    API_HEADERS,
    ConnectError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ServerError,
    error_headers,
    to_http,
)
from teams_connect.observability import logger
from teams_connect.rules import strict_json
from teams_connect.rules.security import origin_of, with_status

MAX_BODY_BYTES = 16 * 1024
CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
BROWSER_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
HTML_HEADERS = {
    **BROWSER_HEADERS,
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
#: Sent on browser responses when the service is served over https (PUBLIC_BASE_URL): one year, the
#: service's own host and its subdomains; not preloaded (a decision for the domain's owner).
HSTS = "max-age=31536000; includeSubDomains"
_TITLES = {
    "connected": "Connected",
    "access_denied": "Connection cancelled",
    "session_invalid": "Link not valid",
    "session_expired": "Link expired",
    "session_used": "Link already used",
    "browser_mismatch": "Different browser",
    "grant_invalid": "Connection not confirmed",
    "account_already_linked": "Account already connected",
    "account_not_supported": "Work or school account needed",
    "upstream_unavailable": "Temporarily unavailable",
    "server_error": "Something went wrong",
    "email_mismatch": "Different Microsoft account",
}


def _transport_headers() -> dict[str, str]:
    """Strict-Transport-Security when the public base URL is https (never on the http loopback)."""
    if os.environ.get("PUBLIC_BASE_URL", "").strip().lower().startswith("https://"):
        return {"Strict-Transport-Security": HSTS}
    return {}


@dataclass
class Response:
    """One HTTP answer, as a Lambda result for the HTTP API (payload 2.0): `to_result()`.
    (The field names are Powertools' `event_handler.Response`, whose import cost the handlers avoid.)"""

    status_code: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[Cookie] = field(default_factory=list)
    content_type: str | None = None
    #: `body` is base64 of bytes (a gzip-encoded static asset): API Gateway decodes it.
    base64_encoded: bool = False

    @classmethod
    def raw(cls, status: int, headers: Mapping[str, str], body: bytes, *, base64_encoded: bool) -> Response:
        """An answer with exact headers and a bytes body (UTF-8 text, or base64 when encoded)."""
        text = base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8")
        return cls(status_code=status, body=text, headers=dict(headers), base64_encoded=base64_encoded)

    def to_result(self) -> dict[str, Any]:
        headers = dict(self.headers)
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return {
            "statusCode": self.status_code,
            "body": self.body,
            "isBase64Encoded": self.base64_encoded,
            "headers": headers,
            "cookies": [str(cookie) for cookie in self.cookies],
        }


# --- backend API ---------------------------------------------------------------------------------
def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":")),
        headers={**API_HEADERS, **(headers or {})},
    )


def no_content() -> Response:
    return Response(status_code=204, body="", headers=dict(API_HEADERS))


def api_error(error: BaseException) -> Response:
    if not isinstance(error, ConnectError):
        logger.exception("unhandled error")
    status, body = to_http(error)
    return json_response(status, body, error_headers(error))


def parse_json_body(request: Any) -> Any:
    """Strict JSON: `Content-Type: application/json`, ≤ 16 KiB, UTF-8, no duplicate keys, no NaN.
    `request`: an `apigw.Request` (lower-cased `headers`, `body`, `is_base64_encoded`)."""
    content_type = (request.headers or {}).get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise InvalidRequest("Content-Type must be application/json.")
    raw = request.body or ""
    if request.is_base64_encoded:
        if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
            raise PayloadTooLarge()
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The body is not valid base64.") from None
    else:
        data = raw.encode("utf-8", "surrogatepass")  # a lone surrogate then fails to decode: 400
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    try:
        return strict_json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: deeply nested arrays/objects (`[[[[…`), a JSON bomb within 16 KiB.
        raise InvalidRequest("The body is not valid JSON.") from None


def api_not_found() -> Response:
    """Any other method or path sent to a backend-API function."""
    return json_response(*to_http(NotFound("No such route.")))


# --- browser ----------------------------------------------------------------------------------------
def binding_cookie(name: str, value: str, *, max_age: int, secure: bool) -> Cookie:
    """`__Host-` cookie (Secure, Path=/, no Domain) or, on http loopback, a plain local cookie."""
    return Cookie(
        name=name,
        value=value,
        path="/",
        secure=secure,
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


def redirect(location: str, cookies: Sequence[Cookie] = ()) -> Response:
    return Response(
        status_code=302,
        body="",
        headers={**BROWSER_HEADERS, **_transport_headers(), "Location": location},
        cookies=list(cookies),
    )


def html_page(status: int, code: str, message: str, cookies: Sequence[Cookie] = ()) -> Response:
    title = html.escape(_TITLES.get(code, "Something went wrong"))
    text = html.escape(message)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p>"
        f"<p><small>{html.escape(code)}</small></p></main></body></html>"
    )
    return Response(
        status_code=status,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={**HTML_HEADERS, **_transport_headers()},
        cookies=list(cookies),
    )


def browser_error(error: BaseException, cookies: Sequence[Cookie] = ()) -> Response:
    """To the stored return_to with `status=error&error=<code>`, else a small HTML page."""
    if not isinstance(error, ConnectError):
        logger.exception("unhandled error")
        error = ServerError()
    if error.return_to and error.popup_session:
        return popup_result(
            session_id=error.popup_session,
            return_to=error.return_to,
            code=error.code,
            message=error.message,
            status=error.status,
            cookies=cookies,
        )
    if error.return_to:
        return redirect(with_status(error.return_to, {"status": "error", "error": error.code}), cookies)
    return html_page(error.status, error.code, error.message, cookies)


def connected(
    return_to: str | None, cookies: Sequence[Cookie] = (), *, popup_session: str | None = None
) -> Response:
    if return_to and popup_session:
        message = "Your Microsoft account is connected. You can close this window."
        return popup_result(
            session_id=popup_session, return_to=return_to, code=None, message=message, cookies=cookies
        )
    if return_to:
        return redirect(with_status(return_to, {"status": "connected"}), cookies)
    return html_page(
        200, "connected", "Your Microsoft account is connected. You can close this window.", cookies
    )


# --- popup embedding ----------------------------------------------------------------------------------
POPUP_MESSAGE_TYPE = "teams-connect:result"
#: To the opener with the exact origin of return_to as target, then close; without an opener (COOP cut
#: it, or the flow ran in the page's own window) on to return_to. The data comes from the element's
#: escaped attributes, so the script never changes: only its nonce does.
_POPUP_SCRIPT = (
    "(function(){var d=document.getElementById('tc-result').dataset;"
    "if(window.opener){try{window.opener.postMessage(JSON.parse(d.message),d.origin)}catch(e){}"
    "window.close();return}window.location.replace(d.next)})();"
)


def popup_result(
    *,
    session_id: str,
    return_to: str,
    code: str | None,
    message: str,
    status: int = 200,
    cookies: Sequence[Cookie] = (),
) -> Response:
    """The page a popup flow ends on (`code` None: connected, else the contract's error code). It
    hands `{type, session, status, error?}` to `window.opener` with the return_to's exact origin as
    target (never `*`) and closes; with no opener it continues to return_to as a redirect flow does,
    plus `display=popup` (connect.js on that page then hands over and closes). One script, allowed
    by a per-response nonce; everything shown is escaped; never a grant id, an email or a token."""
    outcome: dict[str, str] = {"type": POPUP_MESSAGE_TYPE, "session": session_id}
    if code is None:
        outcome["status"] = "connected"
        query = {"status": "connected", "display": "popup"}
    else:
        outcome.update(status="error", error=code)
        query = {"status": "error", "error": code, "display": "popup"}
    nonce = secrets.token_urlsafe(18)
    title = html.escape(_TITLES.get(code or "connected", "Something went wrong"))
    attributes = {
        "data-message": json.dumps(outcome, separators=(",", ":")),
        "data-origin": origin_of(return_to),
        "data-next": with_status(return_to, query),
    }
    data = " ".join(f'{name}="{html.escape(value, quote=True)}"' for name, value in attributes.items())
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{title}</title></head><body><main id="tc-result" {data}><h1>{title}</h1>'
        f"<p>{html.escape(message)}</p><p><small>{html.escape(code or 'connected')}</small></p></main>"
        f'<script nonce="{nonce}">{_POPUP_SCRIPT}</script></body></html>'
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    return Response(
        status_code=status,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={**HTML_HEADERS, "Content-Security-Policy": csp, **_transport_headers()},
        cookies=list(cookies),
    )


def admin_consented(return_to: str | None, tenant_id: str, cookies: Sequence[Cookie] = ()) -> Response:
    """The end of a successful admin consent: `status=admin_consented&tenant=<tenant id>`."""
    if return_to:
        return redirect(with_status(return_to, {"status": "admin_consented", "tenant": tenant_id}), cookies)
    return html_page(
        200, "admin_consented", "Your organisation approved the app. You can close this window.", cookies
    )


def browser_not_found() -> Response:
    """Any other method or path sent to a browser function."""
    return html_page(404, "not_found", "This page does not exist.")


# --- misc ----------------------------------------------------------------------------------------------
def deadline_from(context: Any, *, margin: float = 1.0, cap: float = 25.0) -> float:
    """A `time.monotonic()` deadline below the Lambda timeout and API Gateway's 30 s."""
    get_remaining: Callable[[], int] | None = getattr(context, "get_remaining_time_in_millis", None)
    budget = cap
    if callable(get_remaining):
        try:
            budget = min(cap, get_remaining() / 1000 - margin)
        except (TypeError, ValueError):
            budget = cap
    return time.monotonic() + max(budget, 0.5)


def path_param(raw: str) -> str:
    """A path parameter as matched in `rawPath`, percent-decoded exactly once (strict UTF-8)."""
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The path is not valid UTF-8.") from None
