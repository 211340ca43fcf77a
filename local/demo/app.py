"""A tiny "SaaS app": its own origin, a Connect button, the return page, a Disconnect button.

It talks to teams-connect only from its server side, with the backend API key, exactly as an
integrating SaaS backend would: `POST /v1/sessions` -> redirect the browser to `connect_url`;
on return `GET /v1/grants/{user_id}`; `DELETE /v1/grants/{user_id}` to disconnect; on
`admin_consent_required`, "Ask your administrator" creates an admin-consent link (`POST
/v1/admin-consents`) and shows it to forward; "Schedule a
Teams meeting" calls `POST /v1/users/{user_id}/meetings` (with an Idempotency-Key minted when the form
is shown, so a double submit books one meeting) and shows the join link.

It also receives teams-connect's lifecycle events (the local EventBridge stand-in delivers them to
`EventLog.add`, as a rule on `source: teams-connect` would): `GET /events` lists them as JSON
`{"events": [{"detail_type", "detail"}, …]}` oldest first, and `/events/live` shows them as they come.

`GET /popup` plays a page that embeds the flow with teams-connect's connect.js (its `<script>` with the
versioned URL and SRI hash): `#connect-popup` creates a `"display": "popup"` session for `#user_id`
through `POST /popup/session` and calls `TeamsConnect.open`; `#popup-result` shows `connected` or
`error:<code>`; `#connect-redirect` is the blocked-popup fallback. `/return/popup` is that session's
return_to (reached only when the popup lost its opener, or after the fallback).

The user id travels in the return URL's query only because this demo has no login of its own; a real
app takes it from its own session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

DEFAULT_USER_ID = "demo-user"
DEFAULT_MEETING_TITLE = "Teams meeting from the demo app"
TEAMS_LINK_PREFIX = "https://teams.microsoft.com/"

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem;
       color: #222; }
h1 { font-size: 1.4rem; }
form { margin: 1rem 0; }
label { display: block; margin-bottom: .3rem; }
input[type=text] { padding: .4rem; width: 16rem; }
button { padding: .45rem 1rem; border: 0; border-radius: 4px; background: #4b53bc; color: #fff;
         cursor: pointer; }
button.secondary { background: #8a1c1c; }
#result { padding: .8rem 1rem; border-radius: 4px; background: #f1f1f6; }
#result.ok { background: #e5f4e8; }
#result.error { background: #fbe9e9; }
small { color: #666; }
"""

_SECURITY_HEADERS = {
    # form-action also governs the redirect after POST /connect, which goes to teams-connect's origin.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class EventLog:
    """The lifecycle events this app received, oldest first (thread-safe)."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append({"detail_type": event.get("detail_type"), "detail": event.get("detail")})

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._events]


class _StackClockDatetime(datetime):
    """`datetime` whose `now()` is the stack's clock (`time.time`, moved by local/clock.py)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _StackClockDatetime:
        return cls.fromtimestamp(time.time(), tz)


class WebhookInbox:
    """The app webhooks this app received (`POST /webhooks`), each verified with the official
    `standardwebhooks` package and kept verbatim; the last `KEEP` are listed at `GET /webhooks`.
    `fail_next(n, status)` (`POST /webhooks/fail`) refuses the next n deliveries, so a person (or a
    test) watches teams-connect retry them."""

    KEEP = 200

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or ""  # whsec_…; given by the stack
        self._deliveries: list[dict[str, Any]] = []
        self._refuse: list[tuple[int, int | None]] = []  # (status, Retry-After seconds) per delivery
        self._lock = threading.Lock()

    def fail_next(self, count: int, status: int, retry_after: int | None = None) -> None:
        with self._lock:
            self._refuse = [(status, retry_after)] * count

    def receive(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """Record one delivery; returns the status (and headers) to answer with."""
        import standardwebhooks.webhooks
        from standardwebhooks import Webhook, WebhookVerificationError
        from standardwebhooks.webhooks import EmptyWebhookSecretError

        # The package judges `webhook-timestamp` (±5 min) by `datetime.now()`; a real receiver's clock
        # agrees with the sender's, and here the sender's is the stack's (local/clock.py), which a test
        # may move forward: the demo judges by that same clock, else every delivery after a jump would
        # be refused (400) and dead-lettered.
        standardwebhooks.webhooks.datetime = _StackClockDatetime  # type: ignore[misc,attr-defined]

        text = body.decode("utf-8", errors="replace")
        wanted = {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}
        wanted["content-type"] = headers.get("content-type", "")
        try:
            Webhook(self.secret).verify(text, wanted)
            verified = True
        except (WebhookVerificationError, EmptyWebhookSecretError, ValueError):
            verified = False
        with self._lock:
            status, retry_after = self._refuse.pop(0) if self._refuse else (200 if verified else 400, None)
            self._deliveries.append({"headers": wanted, "body": text, "verified": verified, "status": status})
            del self._deliveries[: -self.KEEP]
        return status, ({"Retry-After": str(retry_after)} if retry_after is not None else {})

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(d) for d in self._deliveries]


def _webhooks_list(deliveries: list[dict[str, Any]]) -> str:
    items = []
    for d in deliveries:
        try:
            body = json.loads(d["body"])
        except ValueError:
            body = {}
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        items.append(
            f'<li class="webhook">{escape(str(body.get("type")))} ({escape(str(data.get("user_id")))}) '
            f"id {escape(str(d['headers'].get('webhook-id')))}: answered {escape(str(d['status']))}, "
            f"{'verified' if d['verified'] else 'NOT verified'}</li>"
        )
    return (
        f'<h2>App webhooks (<span id="webhook-count">{len(deliveries)}</span>)</h2>'
        f'<ul id="webhooks">{"".join(items)}</ul>'
    )


# The live page's script: polls GET /events and redraws the list (served from this origin: CSP 'self').
_EVENTS_JS = """
async function refresh() {
  try {
    const answer = await fetch('/events', {cache: 'no-store'});
    const data = await answer.json();
    const list = document.getElementById('events');
    list.replaceChildren(...data.events.map((e) => {
      const item = document.createElement('li');
      item.className = 'event';
      item.textContent = e.detail_type + ': ' + e.detail.status + ' (' + e.detail.user_id + ', '
        + e.detail.occurred_at + ')';
      return item;
    }));
    document.getElementById('count').textContent = String(data.events.length);
    const hooks = await (await fetch('/webhooks', {cache: 'no-store'})).json();
    document.getElementById('webhooks').replaceChildren(...hooks.deliveries.map((d) => {
      const item = document.createElement('li');
      let body = {};
      try { body = JSON.parse(d.body); } catch (err) { /* shown as undefined */ }
      item.className = 'webhook';
      item.textContent = body.type + ' (' + (body.data || {}).user_id + ') id ' + d.headers['webhook-id']
        + ': answered ' + d.status + ', ' + (d.verified ? 'verified' : 'NOT verified');
      return item;
    }));
    document.getElementById('webhook-count').textContent = String(hooks.deliveries.length);
  } catch (err) { /* the next poll tries again */ }
}
refresh();
setInterval(refresh, 500);
"""


def _events_list(events: list[dict[str, Any]]) -> str:
    items = "".join(
        f'<li class="event">{escape(str(e["detail_type"]))}: {escape(str((e["detail"] or {}).get("status")))}'
        f" ({escape(str((e['detail'] or {}).get('user_id')))}, "
        f"{escape(str((e['detail'] or {}).get('occurred_at')))})</li>"
        for e in events
    )
    return f'<h2>Lifecycle events (<span id="count">{len(events)}</span>)</h2><ul id="events">{items}</ul>'


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}"
        "<p><small>Demo SaaS app for the local teams-connect stack.</small></p></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def _connect_form(user_id: str) -> str:
    return (
        '<form method="post" action="/connect">'
        '<label for="user-id">User id in your app</label>'
        f'<input type="text" id="user-id" name="user_id" value="{escape(user_id)}" required maxlength="256"> '
        '<button type="submit" id="connect">Connect Microsoft Teams</button>'
        "</form>"
    )


def _disconnect_form(user_id: str) -> str:
    return (
        '<form method="post" action="/disconnect">'
        f'<input type="hidden" name="user_id" value="{escape(user_id)}">'
        '<button type="submit" id="disconnect" class="secondary">Disconnect</button>'
        "</form>"
    )


def _schedule_form(user_id: str) -> str:
    return (
        '<form method="post" action="/meetings">'
        f'<input type="hidden" name="user_id" value="{escape(user_id)}">'
        f'<input type="hidden" name="idempotency_key" value="{uuid.uuid4()}">'
        '<label for="meeting-title">Meeting title</label>'
        f'<input type="text" id="meeting-title" name="title" value="{escape(DEFAULT_MEETING_TITLE)}" '
        'required maxlength="200"> '
        '<button type="submit" id="schedule">Schedule a Teams meeting</button>'
        "<br><small>30 minutes, starting in one hour.</small>"
        "</form>"
    )


def _admin_consent_form(user_id: str) -> str:
    """Shown on `admin_consent_required`: the user cannot fix it alone; their IT administrator can."""
    return (
        '<p id="admin-consent-help">Your organisation requires an administrator to approve this app '
        "before you can connect your Microsoft account.</p>"
        '<form method="post" action="/admin-consent">'
        f'<input type="hidden" name="user_id" value="{escape(user_id)}">'
        '<button type="submit" id="admin-consent">Ask your administrator</button>'
        "</form>"
    )


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


# --- popup embedding (contract "Embedding"): /popup loads teams-connect's connect.js -----------------
# The page's own script (served from this origin). `TeamsConnect.open` gets a FUNCTION that asks this
# app's backend for a "display": "popup" session: connect.js calls it inside the click, opens the
# window at once and navigates it when the connect_url arrives. A blocked popup shows the fallback.
_POPUP_JS = """
const result = document.getElementById('popup-result');
const fallback = document.getElementById('connect-redirect');
let connectUrl = null;
function createSession() {
  const body = {user_id: document.getElementById('user_id').value,
                reconnect: document.getElementById('reconnect').checked};
  return fetch('/popup/session', {method: 'POST', headers: {'content-type': 'application/json'},
                                  body: JSON.stringify(body)})
    .then((answer) => answer.json().then((data) => {
      if (!answer.ok) throw new Error(data.error || 'http_' + answer.status);
      connectUrl = data.connect_url;
      return connectUrl;
    }));
}
document.getElementById('connect-popup').addEventListener('click', () => {
  result.textContent = 'pending';
  fallback.hidden = true;
  connectUrl = null;
  TeamsConnect.open(createSession).then((outcome) => {
    result.textContent = outcome.status === 'connected' ? 'connected' : 'error:' + outcome.error;
    if (outcome.error === 'popup_blocked') fallback.hidden = false;
  }, (error) => { result.textContent = 'failed:' + error.message; });
});
fallback.addEventListener('click', () => TeamsConnect.redirect(connectUrl || createSession));
"""


class ConnectScript:
    """teams-connect's connect.js as this page embeds it: the versioned (immutable) URL and its
    Subresource Integrity hash, learnt from the API once (the API's ETag is the version)."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self._tag: tuple[str, str] | None = None

    async def tag(self) -> tuple[str, str]:
        if self._tag is None:
            async with httpx.AsyncClient(timeout=10.0) as http:
                answer = await http.get(
                    f"{self.api_url}/connect/v1/connect.js", headers={"accept-encoding": "identity"}
                )
            answer.raise_for_status()
            version = answer.headers["etag"].strip('"')
            digest = base64.b64encode(hashlib.sha384(answer.content).digest()).decode("ascii")
            self._tag = (f"{self.api_url}/connect/v1/connect.js?v={version}", f"sha384-{digest}")
        return self._tag

    async def element(self) -> str:
        src, integrity = await self.tag()
        return (
            f'<script src="{escape(src)}" integrity="{escape(integrity)}" crossorigin="anonymous"></script>'
        )


def _popup_csp(api_origin: str, *, own_script: bool) -> str:
    """The CSP an embedding page needs (docs/api.md, "Embed it in your app"): connect.js from the API's
    origin, and fetch to it (connect.js reads the session's status route)."""
    scripts = f"'self' {api_origin}" if own_script else api_origin
    connects = f"'self' {api_origin}" if own_script else api_origin
    return (
        f"default-src 'none'; script-src {scripts}; connect-src {connects}; style-src 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def create_app(
    api_url: str,
    api_key: str,
    public_url: str = "http://127.0.0.1:8000",
    events: EventLog | None = None,
    webhooks: WebhookInbox | None = None,
) -> Starlette:
    """The demo app; `api_url` is teams-connect's base URL, `public_url` this app's own origin,
    `events` where the lifecycle events arrive (the stack's local EventBridge adds to it)."""
    api_url = api_url.rstrip("/")
    log = events if events is not None else EventLog()
    inbox = webhooks if webhooks is not None else WebhookInbox()
    public_url = public_url.rstrip("/")
    auth = {"authorization": f"Bearer {api_key}"}

    def grant_url(user_id: str) -> str:
        return f"{api_url}/v1/grants/{quote(user_id, safe='')}"

    async def index(request: Request) -> Response:
        user_id = request.query_params.get("user_id", DEFAULT_USER_ID)
        live = '<p><a href="/events/live">Watch the lifecycle events live</a></p>'
        return _page(
            "Connect your calendar",
            _connect_form(user_id) + live + _events_list(log.all()) + _webhooks_list(inbox.all()),
        )

    async def connect(request: Request) -> Response:
        form = await request.form()
        user_id = str(form.get("user_id") or "").strip()
        if not user_id:
            return _page(
                "Connect your calendar", '<p id="result" class="error">A user id is needed.</p>', 400
            )
        return_to = f"{public_url}/return?{urlencode({'user_id': user_id})}"
        async with httpx.AsyncClient(timeout=15.0) as http:
            try:
                created = await http.post(
                    f"{api_url}/v1/sessions", json={"user_id": user_id, "return_to": return_to}, headers=auth
                )
            except httpx.HTTPError as exc:
                reason = escape(type(exc).__name__)
                body = f'<p id="result" class="error">teams-connect is unreachable: {reason}</p>'
                return _page("Connect your calendar", body + _connect_form(user_id), 502)
        if created.status_code != 201:
            code = _error_code(created)
            body = (
                '<p id="result" class="error">Could not start: '
                f'<span id="error-code">{escape(code)}</span></p>' + _connect_form(user_id)
            )
            return _page("Connect your calendar", body, 502)
        return RedirectResponse(str(created.json()["connect_url"]), status_code=303)

    async def returned(request: Request) -> Response:
        params = request.query_params
        user_id = params.get("user_id", "")
        status = params.get("status", "")
        if status == "connected" and user_id:
            async with httpx.AsyncClient(timeout=15.0) as http:
                grant = await http.get(grant_url(user_id), headers=auth)
            if grant.status_code == 200:
                data = grant.json()
                body = (
                    '<p id="result" class="ok">Connected: '
                    f'<span id="mailbox">{escape(str(data.get("email", "")))}</span>, status '
                    f'<span id="status">{escape(str(data.get("status", "")))}</span></p>'
                    f"<p><small>user id {escape(user_id)}, provider {escape(str(data.get('provider', '')))}"
                    "</small></p>"
                    + _schedule_form(user_id)
                    + _disconnect_form(user_id)
                    + '<p><a href="/events/live">Lifecycle events</a></p>'
                )
                return _page("Microsoft Teams connected", body)
            code = _error_code(grant)
            body = (
                '<p id="result" class="error">Connection failed: '
                f'<span id="error-code">{escape(code)}</span></p>' + _connect_form(user_id or DEFAULT_USER_ID)
            )
            return _page("Connection failed", body)
        if status == "admin_consented":
            # The administrator approved the app for their organisation: the user can connect now.
            body = (
                '<p id="result" class="ok">Your organisation approved the app (tenant '
                f'<span id="tenant">{escape(params.get("tenant", ""))}</span>). You can connect now.</p>'
                + _connect_form(user_id or DEFAULT_USER_ID)
            )
            return _page("Administrator approved", body)
        code = params.get("error", "") or "unknown"
        body = (
            '<p id="result" class="error">Connection failed: '
            f'<span id="error-code">{escape(code)}</span></p>'
            + (_admin_consent_form(user_id or DEFAULT_USER_ID) if code == "admin_consent_required" else "")
            + _connect_form(user_id or DEFAULT_USER_ID)
        )
        return _page("Connection failed", body)

    async def admin_consent(request: Request) -> Response:
        """`POST /v1/admin-consents`: a one-time link for the user's IT administrator, shown to copy."""
        form = await request.form()
        user_id = str(form.get("user_id") or "").strip() or DEFAULT_USER_ID
        return_to = f"{public_url}/return?{urlencode({'user_id': user_id})}"
        async with httpx.AsyncClient(timeout=15.0) as http:
            try:
                created = await http.post(
                    f"{api_url}/v1/admin-consents", json={"return_to": return_to}, headers=auth
                )
            except httpx.HTTPError as exc:
                created = httpx.Response(502, json={"error": {"code": type(exc).__name__}})
        if created.status_code != 201:
            body = (
                '<p id="result" class="error">Could not create the link: '
                f'<span id="error-code">{escape(_error_code(created))}</span></p>'
                + _admin_consent_form(user_id)
            )
            return _page("Ask your administrator", body, 502)
        data = created.json()
        url = str(data["consent_url"])
        body = (
            "<p>Send this link to your IT administrator. It works once, for one organisation, until "
            f'<span id="admin-consent-expires">{escape(str(data.get("expires_at", "")))}</span>.</p>'
            f'<p><a id="admin-consent-url" href="{escape(url)}" rel="noopener noreferrer">'
            f"{escape(url)}</a></p>"
            "<p><small>After the administrator approved, connect again.</small></p>" + _connect_form(user_id)
        )
        return _page("Ask your administrator", body)

    async def schedule(request: Request) -> Response:
        form = await request.form()
        user_id = str(form.get("user_id") or "")
        title = str(form.get("title") or "").strip() or DEFAULT_MEETING_TITLE
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        meeting = {
            "title": title,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
        }
        headers = {**auth, "idempotency-key": str(form.get("idempotency_key") or uuid.uuid4())}
        async with httpx.AsyncClient(timeout=15.0) as http:
            try:
                created = await http.post(
                    f"{api_url}/v1/users/{quote(user_id, safe='')}/meetings", json=meeting, headers=headers
                )
            except httpx.HTTPError as exc:
                created = httpx.Response(502, json={"error": {"code": type(exc).__name__}})
        join_url = created.json().get("join_url") if created.status_code == 201 else None
        if isinstance(join_url, str) and join_url.startswith(TEAMS_LINK_PREFIX):
            body = (
                '<p id="result" class="ok">Meeting scheduled: '
                f'<span id="meeting-title-result">{escape(str(created.json().get("title", "")))}</span></p>'
                f'<p><a id="join-url" href="{escape(join_url)}" rel="noopener noreferrer">'
                "Join the Microsoft Teams meeting</a></p>"
                f"<p><small>{escape(meeting['start'])} to {escape(meeting['end'])}</small></p>"
                + _schedule_form(user_id)
                + _disconnect_form(user_id)
            )
            return _page("Teams meeting scheduled", body)
        code = _error_code(created)
        body = (
            '<p id="result" class="error">Could not schedule the meeting: '
            f'<span id="error-code">{escape(code)}</span></p>'
            + _schedule_form(user_id)
            + _connect_form(user_id)
        )
        return _page("Meeting not scheduled", body, 200 if created.status_code < 500 else 502)

    async def disconnect(request: Request) -> Response:
        form = await request.form()
        user_id = str(form.get("user_id") or "")
        async with httpx.AsyncClient(timeout=15.0) as http:
            deleted = await http.delete(grant_url(user_id), headers=auth)
        if deleted.status_code == 204:
            body = '<p id="result" class="ok">Disconnected.</p>' + _connect_form(user_id)
            return _page("Microsoft Teams disconnected", body)
        code = _error_code(deleted)
        body = (
            '<p id="result" class="error">Disconnect failed: '
            f'<span id="error-code">{escape(code)}</span></p>' + _disconnect_form(user_id)
        )
        return _page("Disconnect failed", body, 502 if deleted.status_code >= 500 else 200)

    async def list_events(request: Request) -> Response:
        return JSONResponse({"events": log.all()}, headers={"Cache-Control": "no-store"})

    async def live_events(request: Request) -> Response:
        page = _page(
            "Lifecycle events",
            _events_list(log.all()) + _webhooks_list(inbox.all()) + '<script src="/events/live.js"></script>'
            '<p><a href="/">Back to the demo</a></p>',
        )
        page.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        return page

    async def live_script(request: Request) -> Response:
        return Response(
            _EVENTS_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    script = ConnectScript(api_url)
    api_origin = "{0.scheme}://{0.netloc}".format(urlsplit(api_url))

    async def popup(request: Request) -> Response:
        """`?coop=same-origin` serves the page with Cross-Origin-Opener-Policy (the browser tests use
        it: the popup then loses its opener and the result comes through the server)."""
        user_id = request.query_params.get("user_id", DEFAULT_USER_ID)
        try:
            tag = await script.element()
        except (httpx.HTTPError, KeyError) as exc:
            reason = escape(type(exc).__name__)
            body = f'<p id="result" class="error">teams-connect is unreachable: {reason}</p>'
            return _page("Connect in a popup", body, 502)
        body = (
            '<label for="user_id">User id in your app</label>'
            f'<input type="text" id="user_id" value="{escape(user_id)}" maxlength="256"> '
            '<label><input type="checkbox" id="reconnect"> Reconnect (the same mailbox only)</label>'
            '<p><button type="button" id="connect-popup">Connect Microsoft Teams</button> '
            '<button type="button" id="connect-redirect" hidden>Continue in this window</button></p>'
            '<p>Result: <output id="popup-result"></output></p>'
            f'{tag}<script src="/popup.js"></script>'
        )
        page = _page("Connect in a popup", body)
        page.headers["Content-Security-Policy"] = _popup_csp(api_origin, own_script=True)
        if request.query_params.get("coop") == "same-origin":
            page.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        return page

    async def popup_script(request: Request) -> Response:
        return Response(
            _POPUP_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def popup_session(request: Request) -> Response:
        try:
            data = await request.json()
            user_id = str(data["user_id"]).strip()
            reconnect = data.get("reconnect") is True
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return_to = f"{public_url}/return/popup?{urlencode({'user_id': user_id})}"
        session: dict[str, str | bool] = {"user_id": user_id, "return_to": return_to, "display": "popup"}
        if reconnect:
            session["reconnect"] = True
        async with httpx.AsyncClient(timeout=15.0) as http:
            try:
                created = await http.post(f"{api_url}/v1/sessions", json=session, headers=auth)
            except httpx.HTTPError as exc:
                return JSONResponse({"error": type(exc).__name__}, status_code=502)
        if created.status_code != 201:
            return JSONResponse({"error": _error_code(created)}, status_code=created.status_code)
        connect_url = created.json()["connect_url"]
        return JSONResponse({"connect_url": connect_url}, headers={"Cache-Control": "no-store"})

    async def popup_returned(request: Request) -> Response:
        """The popup session's return_to. Reached only when the popup lost its opener (COOP) or the
        flow ran in this window (the blocked-popup fallback): connect.js hands over and closes."""
        params = request.query_params
        status = params.get("status", "")
        shown = "connected" if status == "connected" else f"error:{params.get('error', '') or 'unknown'}"
        try:
            tag = await script.element()
        except (httpx.HTTPError, KeyError):
            tag = ""
        body = (
            f'<p>Result: <output id="landing-result">{escape(shown)}</output></p>'
            "<p><small>You can close this window.</small></p>"
            f'{tag}<p><a href="/popup?{escape(urlencode({"user_id": params.get("user_id", "")}))}">'
            "Back to the popup demo</a></p>"
        )
        page = _page("Connect in a popup", body)
        page.headers["Content-Security-Policy"] = _popup_csp(api_origin, own_script=False)
        return page

    async def receive_webhook(request: Request) -> Response:
        status, headers = inbox.receive(dict(request.headers), await request.body())
        return Response(status_code=status, headers=headers)

    async def list_webhooks(request: Request) -> Response:
        return JSONResponse({"deliveries": inbox.all()}, headers={"Cache-Control": "no-store"})

    async def fail_webhooks(request: Request) -> Response:
        try:
            order = await request.json()
            count, status = int(order["count"]), int(order.get("status", 503))
            retry_after = order.get("retry_after")
            if not (0 <= count <= 1000 and 400 <= status <= 599) or not (
                retry_after is None or (isinstance(retry_after, int) and 0 <= retry_after <= 86400)
            ):
                raise ValueError("out of range")
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"message": 'expected {"count": 0-1000, "status": 400-599, "retry_after"?: seconds}'}, 400
            )
        inbox.fail_next(count, status, retry_after)
        return JSONResponse({"count": count, "status": status, "retry_after": retry_after})

    return Starlette(
        routes=[
            Route("/webhooks", receive_webhook, methods=["POST"]),
            Route("/webhooks", list_webhooks, methods=["GET"]),
            Route("/webhooks/fail", fail_webhooks, methods=["POST"]),
            Route("/events", list_events, methods=["GET"]),
            Route("/events/live", live_events, methods=["GET"]),
            Route("/events/live.js", live_script, methods=["GET"]),
            Route("/", index, methods=["GET"]),
            Route("/connect", connect, methods=["POST"]),
            Route("/return", returned, methods=["GET"]),
            Route("/meetings", schedule, methods=["POST"]),
            Route("/disconnect", disconnect, methods=["POST"]),
            Route("/popup", popup, methods=["GET"]),
            Route("/popup.js", popup_script, methods=["GET"]),
            Route("/popup/session", popup_session, methods=["POST"]),
            Route("/return/popup", popup_returned, methods=["GET"]),
            Route("/admin-consent", admin_consent, methods=["POST"]),
        ]
    )
