"""Popup embedding in-process: connect.js's route, the session status use case and route, the popup
result page, and the `display` / `reconnect` session options (both flavours)."""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import respx

from teams_connect.adapters.store.tenants import TenantStore
from teams_connect.domain.flow import CallbackOutcome, StartOutcome
from teams_connect.domain.session_status import SessionStatus
from teams_connect.errors import InvalidRequest, NotConnected, NotFound
from teams_connect.http import assets
from teams_connect.rules.security import origin_of

from .conftest import API_KEY, RETURN_TO, ROOT, SESSIONS, Aws, FakeContext, Harness, http_event, load_handler
from .test_flow_v3 import GRANT_ID, TOKEN_URL, token_response

SCRIPT_PATH = ROOT / "functions" / "connect_script" / "connect.js"
POPUP_RETURN = "https://app.example.com/integrations/teams/done"


def call(module: Any, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = module.lambda_handler(event, FakeContext())
    return result


# --------------------------------------------------------------------------- connect.js


def test_the_script_is_versioned_by_its_hash_and_pinned_by_sri() -> None:
    asset = assets.StaticScript.load(SCRIPT_PATH)
    assert asset.body == SCRIPT_PATH.read_bytes()
    assert re.fullmatch(r"[0-9a-f]{16}", asset.version)
    assert asset.integrity.startswith("sha384-")
    assert gzip.decompress(asset.gzipped) == asset.body
    assert len(asset.gzipped) <= 4096


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.8", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_only_when_accepted(accept: str, gzipped: bool) -> None:
    asset = assets.StaticScript.load(SCRIPT_PATH)
    status, headers, body, b64 = assets.script_result(
        asset, raw_query="", headers={"accept-encoding": accept}
    )
    assert status == 200
    assert b64 is gzipped
    assert ("Content-Encoding" in headers) is gzipped
    assert (gzip.decompress(body) if gzipped else body) == asset.body


def test_plain_versioned_foreign_and_revalidated_requests() -> None:
    asset = assets.StaticScript.load(SCRIPT_PATH)
    _, plain, _, _ = assets.script_result(asset, raw_query="", headers={})
    assert plain["Cache-Control"] == "public, max-age=300"
    assert plain["ETag"] == f'"{asset.version}"'
    assert plain["X-Content-Type-Options"] == "nosniff"
    assert plain["Content-Type"] == "text/javascript; charset=utf-8"
    _, pinned, _, _ = assets.script_result(asset, raw_query=f"v={asset.version}", headers={})
    assert pinned["Cache-Control"] == "public, max-age=31536000, immutable"
    with pytest.raises(NotFound):
        assets.script_result(asset, raw_query="v=0000000000000000", headers={})
    with pytest.raises(InvalidRequest):
        assets.script_result(asset, raw_query="v=1&v=2", headers={})
    for tag in (f'"{asset.version}"', f'W/"{asset.version}"', f'"x", "{asset.version}-gzip"', "*"):
        status, _, body, _ = assets.script_result(asset, raw_query="", headers={"if-none-match": tag})
        assert (status, body) == (304, b""), tag
    status, _, _, _ = assets.script_result(asset, raw_query="", headers={"if-none-match": '"other"'})
    assert status == 200


def test_the_script_handler_answers_as_api_gateway_expects(handler_env: Aws) -> None:
    module = load_handler("connect_script")
    plain = call(module, http_event("GET", "/connect/v1/connect.js"))
    assert plain["statusCode"] == 200
    assert plain["isBase64Encoded"] is False
    assert plain["body"] == SCRIPT_PATH.read_text(encoding="utf-8")
    zipped = call(module, http_event("GET", "/connect/v1/connect.js", headers={"accept-encoding": "gzip"}))
    assert zipped["isBase64Encoded"] is True
    assert gzip.decompress(base64.b64decode(zipped["body"])) == SCRIPT_PATH.read_bytes()
    assert zipped["headers"]["Content-Encoding"] == "gzip"
    foreign = call(module, http_event("GET", "/connect/v1/connect.js", raw_query="v=0123456789abcdef"))
    assert foreign["statusCode"] == 404
    assert json.loads(foreign["body"])["error"]["code"] == "not_found"
    assert call(module, http_event("POST", "/connect/v1/connect.js"))["statusCode"] == 404
    duplicated = call(module, http_event("GET", "/connect/v1/connect.js", raw_query="v=1&v=2"))
    assert duplicated["statusCode"] == 400
    assert duplicated["headers"]["Cache-Control"] == "no-store"
    assert json.loads(duplicated["body"])["error"]["code"] == "invalid_request"


def test_an_unexpected_error_of_the_script_route_is_a_500_that_quotes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(assets.StaticScript):
        __slots__ = ()

        @property  # type: ignore[override]
        def etag(self) -> str:
            raise RuntimeError("secret-looking detail")

    route = assets.script_route("/s.js", Broken(b"x"))
    with caplog.at_level("ERROR"):
        answer = route(http_event("GET", "/s.js"), None)
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"]["code"] == "server_error"
    assert "secret-looking" not in answer["body"]
    assert "RuntimeError" in caplog.text
    assert "secret-looking" not in caplog.text


# --------------------------------------------------------------------------- origins


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://App.Example.com/x?y#z", "https://app.example.com"),
        ("https://app.example.com:443/x", "https://app.example.com"),
        ("https://app.example.com:8443/x", "https://app.example.com:8443"),
        ("http://127.0.0.1:8000/return", "http://127.0.0.1:8000"),
        ("http://localhost:80/", "http://localhost"),
        ("http://[::1]:3000/r", "http://[::1]:3000"),
    ],
)
def test_origin_of_is_the_browsers_serialisation(url: str, origin: str) -> None:
    assert origin_of(url) == origin


# --------------------------------------------------------------------------- session options


def body(**extra: Any) -> dict[str, Any]:
    return {"user_id": "user-1", "return_to": RETURN_TO, **extra}


def test_display_is_stored_and_defaults_to_redirect(v3: Harness) -> None:
    default = v3.flow.create_session(body())
    popup = v3.flow.create_session(body(display="popup"))
    assert v3.flow.sessions.get(default.session_id).display == "redirect"  # type: ignore[union-attr]
    assert v3.flow.sessions.get(popup.session_id).display == "popup"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "extra",
    [
        {"display": "Popup"},
        {"display": ""},
        {"display": None},
        {"display": True},
        {"reconnect": "yes"},
        {"reconnect": 0},
        {"reconnect": None},
    ],
)
def test_bad_options_are_invalid_and_write_nothing(v3: Harness, extra: dict[str, Any]) -> None:
    before = len(v3.client.calls)
    with pytest.raises(InvalidRequest):
        v3.flow.create_session(body(**extra))
    assert v3.client.calls[before:] == []


def test_a_popup_session_needs_a_return_to(v3: Harness) -> None:
    with pytest.raises(InvalidRequest):
        v3.flow.create_session({"user_id": "user-1", "display": "popup"})


def test_reconnect_without_a_grant_is_not_connected_and_writes_nothing(v3: Harness) -> None:
    with pytest.raises(NotConnected):
        v3.flow.create_session(body(reconnect=True))
    assert "put_item" not in v3.client.calls


def begin(
    h: Harness, user_id: str = "user-1", return_to: str = RETURN_TO, **extra: Any
) -> tuple[str, str, StartOutcome]:
    """(session id, state, start outcome) of a session created with `extra` and started."""
    created = h.flow.create_session({"user_id": user_id, "return_to": return_to, **extra})
    outcome = h.flow.start(created.session_id)
    state = parse_qs(urlsplit(outcome.location).query)["state"][0]
    return created.session_id, state, outcome


def connect_v3(
    h: Harness, user_id: str = "user-1", email: str = "ada@contoso.example", **extra: Any
) -> tuple[str, CallbackOutcome]:
    sid, state, outcome = begin(h, user_id, **extra)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(TOKEN_URL).mock(return_value=token_response(GRANT_ID, email))
        return sid, h.flow.complete(
            {"code": "c0de", "state": state}, [f"{outcome.cookie.name}={outcome.cookie.value}"]
        )


def test_reconnect_pins_the_flow_to_the_held_mailbox(v3: Harness) -> None:
    connect_v3(v3)
    created = v3.flow.create_session(body(reconnect=True))
    record = v3.flow.sessions.get(created.session_id)
    assert record is not None
    assert record.expected_email == "ada@contoso.example"
    assert record.reconnect is True
    assert record.login_hint is None  # beta would refuse another mailbox as grant_invalid
    same = v3.flow.create_session(body(reconnect=True, expected_email="ADA@contoso.example"))
    assert v3.flow.sessions.get(same.session_id).expected_email == "ada@contoso.example"  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest):
        v3.flow.create_session(body(reconnect=True, expected_email="eve@contoso.example"))


# --------------------------------------------------------------------------- result page and status


def data_of(page: str) -> dict[str, str]:
    main = re.search(r'<main id="tc-result" ([^>]*)>', page)
    assert main
    return {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', main.group(1))}


def test_a_popup_flow_ends_on_the_result_page_and_reads_connected(v3: Harness) -> None:
    sid, outcome = connect_v3(v3, return_to=POPUP_RETURN, display="popup")
    assert outcome.error is None
    assert outcome.popup_session == sid
    from teams_connect.http import web

    page = web.connected(outcome.return_to, popup_session=outcome.popup_session)
    result = page.to_result()
    assert result["statusCode"] == 200
    csp = result["headers"]["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce
    assert "frame-ancestors 'none'" in csp
    assert f'<script nonce="{nonce.group(1)}">' in result["body"]
    data = data_of(result["body"])
    assert data["data-origin"] == "https://app.example.com"
    assert json.loads(data["data-message"]) == {
        "type": "teams-connect:result",
        "session": sid,
        "status": "connected",
    }
    assert data["data-next"] == POPUP_RETURN + "?status=connected&display=popup"
    assert "ada@contoso.example" not in result["body"]
    assert GRANT_ID not in result["body"]
    status = SessionStatus(v3.flow.sessions, clock=v3.clock).read(sid)
    assert status.to_json() == {"status": "connected"}
    assert status.cors_origin == "https://app.example.com"


def test_reconnect_with_another_mailbox_is_email_mismatch_and_keeps_the_held_grant(v3: Harness) -> None:
    connect_v3(v3)
    held = v3.flow.grants.get("user-1")
    other_grant = "f" * 36
    sid, state, outcome = begin(v3, "user-1", POPUP_RETURN, reconnect=True, display="popup")
    with respx.mock(assert_all_called=False) as mock:
        mock.post(TOKEN_URL).mock(return_value=token_response(other_grant, "eve@contoso.example"))
        revoke = mock.delete(url__regex=rf".*/v3/grants/{other_grant}$").respond(200, json={})
        ended = v3.flow.complete(
            {"code": "c0de", "state": state}, [f"{outcome.cookie.name}={outcome.cookie.value}"]
        )
    assert ended.error is not None
    assert ended.error.code == "email_mismatch"
    assert ended.error.popup_session == sid
    assert revoke.called
    assert v3.flow.grants.get("user-1") == held
    status = SessionStatus(v3.flow.sessions, clock=v3.clock).read(sid)
    assert status.to_json() == {"status": "error", "error": "email_mismatch"}


def test_status_pending_then_expired(v3: Harness) -> None:
    reader = SessionStatus(v3.flow.sessions, clock=v3.clock)
    created = v3.flow.create_session(body(display="popup"))
    assert reader.read(created.session_id).to_json() == {"status": "pending"}
    v3.clock.now += v3.settings.session_ttl_seconds
    assert reader.read(created.session_id).to_json() == {"status": "error", "error": "session_expired"}
    sid, _, _ = begin(v3, "user-2", display="popup")
    assert reader.read(sid).to_json() == {"status": "pending"}
    v3.clock.now += v3.settings.flow_ttl_seconds
    assert reader.read(sid).to_json() == {"status": "error", "error": "session_expired"}


@pytest.mark.parametrize("session_id", ["", "x", "A" * 42, "A" * 44, "A" * 42 + "/", "A" * 43 + "\n"])
def test_status_of_malformed_or_unknown_ids_is_not_found(v3: Harness, session_id: str) -> None:
    reader = SessionStatus(v3.flow.sessions, clock=v3.clock)
    before = len(v3.client.calls)
    with pytest.raises(NotFound):
        reader.read(session_id)
    assert v3.client.calls[before:] == []
    with pytest.raises(NotFound):
        reader.read("B" * 43)


def test_an_admin_consent_link_is_not_a_session_to_the_status_route(v3: Harness) -> None:
    """Admin-consent links live in the sessions table with ids of the same shape: the status route
    answers them as it answers an id that never existed."""
    consent_id = "C" * 43
    TenantStore("tenants-unused", SESSIONS, v3.client).create(
        consent_id=consent_id, now=int(v3.clock()), ttl_seconds=600, return_to=RETURN_TO, tenant_id=None
    )
    assert v3.flow.sessions.get(consent_id) is not None  # the item is there ...
    with pytest.raises(NotFound):  # ... and still not a session
        SessionStatus(v3.flow.sessions, clock=v3.clock).read(consent_id)


def test_the_status_handler_answers_cors_only_for_the_return_to_origin(handler_env: Aws) -> None:
    create = load_handler("create_session")
    created = json.loads(
        call(
            create,
            http_event(
                "POST",
                "/v1/sessions",
                headers={"authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
                body=json.dumps({"user_id": "u1", "return_to": RETURN_TO, "display": "popup"}),
            ),
        )["body"]
    )
    module = load_handler("session_status")
    path = f"/connect/v1/sessions/{created['session_id']}/status"
    mine = call(module, http_event("GET", path, headers={"origin": "https://app.example.com"}))
    assert mine["statusCode"] == 200
    assert json.loads(mine["body"]) == {"status": "pending"}
    assert mine["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert mine["headers"]["Cache-Control"] == "no-store"
    assert mine["headers"]["Vary"] == "Origin"
    other = call(module, http_event("GET", path, headers={"origin": "https://evil.example"}))
    assert "Access-Control-Allow-Origin" not in other["headers"]
    missing = call(module, http_event("GET", "/connect/v1/sessions/" + "C" * 43 + "/status"))
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"]["code"] == "not_found"
