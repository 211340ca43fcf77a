"""The browser side of the popup embedding: the result page a popup flow ends on, and the status
route's answer (contract "Embedding: connect in a popup").

The result page hands the outcome to `window.opener` with the exact origin of the session's
`return_to` as target (never `*`), then closes. Without an opener (the SaaS page sends
`Cross-Origin-Opener-Policy`, or the flow ran in the page's own window) it continues to `return_to`
as a redirect flow does, with `display=popup` added so that connect.js on that page knows to hand over
and close. Its one script carries a per-response nonce (`script-src 'nonce-…'`); everything it shows
is escaped; the message holds the session id, `status` and the error code: never a grant id, an
email or a token.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Mapping, Sequence

from aws_lambda_powertools.shared.cookies import Cookie

from teams_connect.domain.session_status import FlowStatus, origin_of
from teams_connect.http.web import HTML_HEADERS, TITLES, Response, transport_headers
from teams_connect.rules.security import with_status

MESSAGE_TYPE = "teams-connect:result"
#: postMessage to the opener, close; no opener: continue to return_to. Data from the element's
#: attributes (escaped), so the script itself never changes: only its nonce does.
_SCRIPT = (
    "(function(){var d=document.getElementById('tc-result').dataset;"
    "if(window.opener){try{window.opener.postMessage(JSON.parse(d.message),d.origin)}catch(e){}"
    "window.close();return}window.location.replace(d.next)})();"
)


def _csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


def result_page(
    *,
    session_id: str,
    return_to: str,
    code: str | None,
    message: str,
    status: int = 200,
    cookies: Sequence[Cookie] = (),
) -> Response:
    """`code` None: connected; else the contract's error code."""
    outcome: dict[str, str] = {"type": MESSAGE_TYPE, "session": session_id}
    query: dict[str, str]
    if code is None:
        outcome["status"] = "connected"
        query = {"status": "connected", "display": "popup"}
    else:
        outcome.update(status="error", error=code)
        query = {"status": "error", "error": code, "display": "popup"}
    nonce = secrets.token_urlsafe(18)
    title = html.escape(TITLES.get(code or "connected", "Something went wrong"))
    attrs = {
        "data-message": json.dumps(outcome, separators=(",", ":")),
        "data-origin": origin_of(return_to),
        "data-next": with_status(return_to, query),
    }
    data = " ".join(f'{name}="{html.escape(value, quote=True)}"' for name, value in attrs.items())
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{title}</title></head><body><main id="tc-result" {data}><h1>{title}</h1>'
        f"<p>{html.escape(message)}</p><p><small>You can close this window.</small></p></main>"
        f'<script nonce="{nonce}">{_SCRIPT}</script></body></html>'
    )
    return Response(
        status_code=status,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={**HTML_HEADERS, "Content-Security-Policy": _csp(nonce), **transport_headers()},
        cookies=list(cookies),
    )


def status_response(found: FlowStatus, headers: Mapping[str, str]) -> Response:
    """The status route's answer: readable cross-origin by the session's return_to origin only."""
    answer = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Origin",
    }
    origin = headers.get("origin")
    if found.cors_origin is not None and origin == found.cors_origin:
        answer["Access-Control-Allow-Origin"] = origin
    return Response(
        status_code=200,
        content_type="application/json",
        body=json.dumps(found.to_json(), separators=(",", ":")),
        headers=answer,
    )
