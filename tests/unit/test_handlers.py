"""The five handlers invoked directly with API Gateway HTTP API 2.0 events."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from .conftest import (
    API_KEY,
    GRANTS,
    NYLAS_API_KEY,
    RETURN_TO,
    ROOT,
    SESSIONS,
    V3_BASE,
    Aws,
    FakeContext,
    http_event,
    load_handler,
    log_text,
)

AUTH = {"authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json"}
GRANT_ID = "8a5a1d6e-2f3b-4c1a-9d1e-0f8e7c6b5a49"
HTML_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def call(module: Any, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = module.lambda_handler(event, FakeContext())
    return response


def create(handler: Any, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, str) else json.dumps(body)
    return call(
        handler, http_event("POST", "/v1/sessions", headers={**AUTH, **JSON, **(headers or {})}, body=raw)
    )


def error_code(resp: dict[str, Any]) -> str:
    return str(json.loads(resp["body"])["error"]["code"])


def test_create_session_201_and_api_errors(handler_env: Aws) -> None:
    h = load_handler("create_session")
    resp = create(h, {"user_id": "user-1", "return_to": RETURN_TO})
    assert resp["statusCode"] == 201
    body = json.loads(resp["body"])
    assert set(body) == {"session_id", "connect_url", "expires_at"}
    assert body["expires_at"].endswith("Z")
    assert resp["headers"]["Content-Type"] == "application/json"

    assert call(h, http_event("POST", "/v1/sessions", headers=JSON, body="{}"))["statusCode"] == 401
    wrong = create(h, {"user_id": "u"}, {"authorization": "Bearer nope-nope-nope-nope"})
    assert (wrong["statusCode"], error_code(wrong)) == (401, "unauthorized")
    cases = [
        ({"user_id": "u", "nope": 1}, 400, "invalid_request"),
        ("{not json", 400, "invalid_request"),
        ('{"user_id": "a", "user_id": "b"}', 400, "invalid_request"),
        ("[1]", 400, "invalid_request"),
        ({"user_id": "u", "return_to": "https://evil.example/"}, 400, "return_to_not_allowed"),
        ({"user_id": "u", "pad": "x" * 17000}, 413, "payload_too_large"),
    ]
    for body_in, status, code in cases:
        resp = create(h, body_in)
        assert (resp["statusCode"], error_code(resp)) == (status, code), body_in
    form = create(h, {"user_id": "u"}, {"content-type": "application/x-www-form-urlencoded"})
    assert (form["statusCode"], error_code(form)) == (400, "invalid_request")
    b64 = http_event(
        "POST", "/v1/sessions", headers={**AUTH, **JSON}, body=base64.b64encode(b'{"user_id":"u"}').decode()
    )
    b64["isBase64Encoded"] = True
    assert call(h, b64)["statusCode"] == 201


def _start(handler_env: Aws, query: str) -> dict[str, Any]:
    return call(load_handler("connect_start"), http_event("GET", "/connect/start", raw_query=query))


def full_flow(
    handler_env: Aws, caplog: pytest.LogCaptureFixture | None = None
) -> tuple[dict[str, Any], str, str]:
    created = json.loads(
        create(load_handler("create_session"), {"user_id": "user-1", "return_to": RETURN_TO})["body"]
    )
    start = load_handler("connect_start")
    resp = call(start, http_event("GET", "/connect/start", raw_query=f"session={created['session_id']}"))
    assert resp["statusCode"] == 302
    location = resp["headers"]["Location"]
    assert location.startswith(f"{V3_BASE}/v3/connect/auth?")
    assert resp["headers"]["Cache-Control"] == "no-store"
    assert resp["headers"]["Referrer-Policy"] == "no-referrer"
    [cookie] = resp["cookies"]
    name_value, *attrs = [p.strip() for p in cookie.split(";")]
    assert name_value.startswith("__Host-tc_")
    max_age = [a for a in attrs if a.startswith("Max-Age=")]
    assert max_age in (
        ["Max-Age=900"],
        ["Max-Age=899"],
    )  # the flow TTL; the wall clock may tick between the calls
    assert set(attrs) - set(max_age) == {"Path=/", "HttpOnly", "Secure", "SameSite=Lax"}
    state = parse_qs(urlsplit(location).query)["state"][0]
    return resp, state, name_value


TENANT_ID = "0b1f3c9e-7a2d-4c55-9f0e-2b8a6d4e1c77"


def test_start_then_callback_through_the_handlers(
    handler_env: Aws, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _, state, cookie = full_flow(handler_env)
    callback = load_handler("connect_callback")
    with respx.mock() as router:
        router.post(f"{V3_BASE}/v3/connect/token").mock(
            return_value=httpx.Response(
                200,
                json={
                    "grant_id": GRANT_ID,
                    "email": "ada@contoso.example",
                    "provider": "microsoft",
                    "scope": "a b",
                },
            )
        )
        # The grant's Microsoft tenant, from its mailbox's domain (best effort; docs/admin-consent.md).
        discovery = router.get(
            "https://login.microsoftonline.com/contoso.example/v2.0/.well-known/openid-configuration"
        ).mock(
            return_value=httpx.Response(
                200, json={"issuer": f"https://login.microsoftonline.com/{TENANT_ID}/v2.0"}
            )
        )
        resp = call(
            callback,
            http_event(
                "GET", "/connect/callback", raw_query=f"code=the-code&state={state}", cookies=[cookie]
            ),
        )
    assert resp["statusCode"] == 302
    assert resp["headers"]["Location"] == RETURN_TO + "&status=connected"
    assert resp["headers"]["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert resp["cookies"] == [f"{cookie.split('=')[0]}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"]
    grant = call(load_handler("get_grant"), http_event("GET", "/v1/grants/user-1", headers=AUTH))
    assert grant["statusCode"] == 200
    assert json.loads(grant["body"])["grant_id"] == GRANT_ID
    assert json.loads(grant["body"])["tenant_id"] == TENANT_ID
    assert discovery.call_count == 1
    logs = log_text(caplog)
    for secret in (state, "the-code", cookie.split("=")[1], API_KEY, NYLAS_API_KEY):
        assert secret not in logs
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    names = [m["Name"] for e in emitted for m in e["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["ConnectStarted", "ConnectSucceeded"]


def test_callback_duplicate_params_and_bad_state_get_an_html_page(handler_env: Aws) -> None:
    _, state, cookie = full_flow(handler_env)
    callback = load_handler("connect_callback")
    for query in [f"state={state}&state={state}&code=x", "state=<script>&code=x", "", "code=x"]:
        resp = call(callback, http_event("GET", "/connect/callback", raw_query=query, cookies=[cookie]))
        assert resp["statusCode"] == 400
        assert "Location" not in resp["headers"]
        for key, value in HTML_HEADERS.items():
            assert resp["headers"][key] == value
        assert resp["headers"]["Content-Type"] == "text/html; charset=utf-8"
        assert "<script>" not in resp["body"]
        assert "session_invalid" in resp["body"]


def test_callback_browser_mismatch_redirects_with_the_error(
    handler_env: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    _, state, _cookie = full_flow(handler_env)
    resp = call(
        load_handler("connect_callback"),
        http_event("GET", "/connect/callback", raw_query=f"code=x&state={state}"),
    )
    assert resp["statusCode"] == 302
    assert resp["headers"]["Location"] == RETURN_TO + "&status=error&error=browser_mismatch"
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    failed = [e for e in emitted if "ConnectFailed" in e]
    assert failed
    assert failed[0]["ErrorCode"] == "browser_mismatch"


def test_start_errors(handler_env: Aws) -> None:
    resp = _start(handler_env, "session=nope")
    assert resp["statusCode"] == 400
    assert resp["headers"]["X-Frame-Options"] == "DENY"
    resp = _start(handler_env, "session=a&session=b")
    assert resp["statusCode"] == 400
    created = json.loads(
        create(load_handler("create_session"), {"user_id": "u", "return_to": RETURN_TO})["body"]
    )
    start = load_handler("connect_start")
    event = http_event("GET", "/connect/start", raw_query=f"session={created['session_id']}")
    assert call(start, event)["statusCode"] == 302
    again = call(start, event)
    assert again["statusCode"] == 302
    assert again["headers"]["Location"] == RETURN_TO + "&status=error&error=session_used"
    assert not again.get("cookies")


def test_get_and_delete_grant(handler_env: Aws) -> None:
    get = load_handler("get_grant")
    missing = call(get, http_event("GET", "/v1/grants/nobody", headers=AUTH))
    assert (missing["statusCode"], error_code(missing)) == (404, "not_found")
    assert call(get, http_event("GET", "/v1/grants/nobody"))["statusCode"] == 401
    handler_env.client.put_item(
        TableName="tc-grants",
        Item={
            "pk": {"S": "USER#team/ä 1"},
            "user_id": {"S": "team/ä 1"},
            "grant_id": {"S": GRANT_ID},
            "email": {"S": "a@b.example"},
            "provider": {"S": "microsoft"},
            "status": {"S": "valid"},
            "scopes": {"L": []},
            "connected_at": {"N": "1800000000"},
            "updated_at": {"N": "1800000000"},
            "flow_started_at": {"N": "1800000000"},
        },
    )
    found = call(get, http_event("GET", "/v1/grants/team%2F%C3%A4%201", headers=AUTH))
    assert found["statusCode"] == 200
    assert json.loads(found["body"])["user_id"] == "team/ä 1"
    delete = load_handler("delete_grant")
    with respx.mock() as router:
        route = router.delete(f"{V3_BASE}/v3/grants/{GRANT_ID}").mock(return_value=httpx.Response(503))
        down = call(delete, http_event("DELETE", "/v1/grants/team%2F%C3%A4%201", headers=AUTH))
        assert (down["statusCode"], error_code(down)) == (503, "upstream_unavailable")
        assert call(get, http_event("GET", "/v1/grants/team%2F%C3%A4%201", headers=AUTH))["statusCode"] == 200
        route.mock(return_value=httpx.Response(200, json={"request_id": "r"}))
        gone = call(delete, http_event("DELETE", "/v1/grants/team%2F%C3%A4%201", headers=AUTH))
    assert gone["statusCode"] == 204
    assert call(get, http_event("GET", "/v1/grants/team%2F%C3%A4%201", headers=AUTH))["statusCode"] == 404
    unknown = call(delete, http_event("DELETE", "/v1/grants/nobody", headers=AUTH))
    assert unknown["statusCode"] == 404


def test_duplicated_query_parameters_on_the_api_are_400(handler_env: Aws) -> None:
    resp = call(
        load_handler("get_grant"), http_event("GET", "/v1/grants/u", raw_query="a=1&a=2", headers=AUTH)
    )
    assert resp["statusCode"] == 400
    assert error_code(resp) == "invalid_request"


def test_unknown_route_is_a_json_404(handler_env: Aws) -> None:
    resp = call(load_handler("get_grant"), http_event("GET", "/v1/other", headers=AUTH))
    assert (resp["statusCode"], error_code(resp)) == (404, "not_found")


def test_log_event_stays_off_even_if_the_environment_asks(
    handler_env: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    h = load_handler("create_session")
    create(h, {"user_id": "user-1"})
    assert API_KEY not in log_text(caplog)


def test_browser_pages_send_hsts_over_https_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from teams_connect.http import web

    monkeypatch.setenv("PUBLIC_BASE_URL", "https://connect.example.com")
    for resp in (web.html_page(400, "session_invalid", "x"), web.redirect("https://app.example.com/")):
        assert resp.headers["Strict-Transport-Security"] == web.HSTS
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://127.0.0.1:3000")
    for resp in (web.html_page(400, "session_invalid", "x"), web.redirect("http://127.0.0.1:8000/")):
        assert "Strict-Transport-Security" not in resp.headers


def test_the_revoke_sweeper_revokes_due_entries_and_keeps_failed_ones(handler_env: Aws) -> None:
    import time

    from teams_connect.adapters.store.grants import GrantStore

    grants = GrantStore(GRANTS, SESSIONS, handler_env.client)
    now = int(time.time())
    grants.outbox.enqueue("g-due", due=now - 10, now=now - 10)
    grants.outbox.enqueue("g-down", due=now - 10, now=now - 10)
    grants.outbox.enqueue("g-later", due=now + 3600, now=now)
    sweeper = load_handler("revoke_sweeper")
    event = json.loads((ROOT / "events" / "revoke_sweeper" / "scheduled.json").read_text())
    with respx.mock() as router:
        ok = router.delete(f"{V3_BASE}/v3/grants/g-due").mock(return_value=httpx.Response(200, json={}))
        down = router.delete(f"{V3_BASE}/v3/grants/g-down").mock(return_value=httpx.Response(400, json={}))
        result = sweeper.lambda_handler(event, FakeContext())
        assert ok.call_count == 1
        assert down.call_count == 1
    assert result == {"revoked": 1, "kept": 0, "failed": 1}
    # g-down is retried in a minute, g-later is due in an hour
    assert [d.grant_id for d in grants.outbox.due(now + 10**6)] == ["g-down", "g-later"]
