"""The connect flow through the local HTTP stack (gateway → real handlers → moto + Nylas emulator).

Every test runs once per Nylas flavour (`v3`, `beta`); see conftest.py.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote, urlsplit

import httpx

from tests.integration.conftest import Emulator
from tests.support.flow_client import Browser, query_of
from tests.support.stack_process import StackUrls

SECRET_PARAMS = {"code", "state", "grant_id", "access_token", "id_token", "email"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mailbox() -> str:
    return f"{unique('user')}@contoso.example"


def assert_return_redirect(stack: StackUrls, response: httpx.Response, **expected: str) -> None:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}" == stack.demo
    assert parts.path == "/return"
    query = query_of(location)
    assert not SECRET_PARAMS & set(query), location
    for name, value in expected.items():
        assert query.get(name) == [value], location


def assert_browser_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    if response.headers.get("content-type", "").startswith("text/html"):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_allow_stores_the_grant_under_the_saas_user(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    user, email = unique("u"), mailbox()
    result = browser.run(user, email=email)
    assert result.final is not None
    assert_return_redirect(stack, result.final, status="connected")
    assert_browser_headers(result.final)

    grant = api.get(f"/v1/grants/{user}")
    assert grant.status_code == 200, grant.text
    body = grant.json()
    assert body["user_id"] == user
    assert body["email"] == email
    assert body["provider"] == "microsoft"
    assert body["status"] == "valid"
    assert body["grant_id"]
    assert isinstance(body["scopes"], list)
    assert body["connected_at"]
    assert body["updated_at"]


def test_start_sets_a_browser_binding_cookie_and_redirects_to_nylas(
    stack: StackUrls, browser: Browser
) -> None:
    session = browser.create_session(unique("u"))
    assert session["connect_url"] == f"{stack.gateway}/connect/start?session={session['session_id']}"
    assert session["expires_at"].endswith("Z")
    response = browser.start(session["connect_url"])
    assert response.status_code == 302
    assert response.headers["location"].startswith(stack.emulator + "/")
    assert_browser_headers(response)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie or "samesite=lax" in cookie.lower()
    if stack.flavour == "v3":
        query = query_of(response.headers["location"])
        assert query["redirect_uri"] == [f"{stack.gateway}/connect/callback"]
        assert query["code_challenge_method"] in (["S256"], ["s256"])
        assert len(query["state"][0]) <= 256


def test_deny_ends_in_access_denied_and_writes_nothing(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    user = unique("u")
    result = browser.run(user, email=mailbox(), decision="deny")
    assert result.final is not None
    assert_return_redirect(stack, result.final, status="error", error="access_denied")
    assert api.get(f"/v1/grants/{user}").status_code == 404


def test_reconnecting_the_same_user_replaces_the_record(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    user, first, second = unique("u"), mailbox(), mailbox()
    browser.run(user, email=first)
    before = api.get(f"/v1/grants/{user}").json()
    again = browser.run(user, email=first)
    assert again.final is not None
    assert_return_redirect(stack, again.final, status="connected")
    same = api.get(f"/v1/grants/{user}").json()
    assert same["grant_id"] == before["grant_id"], "re-authentication keeps Nylas's grant id"
    browser.run(user, email=second)
    replaced = api.get(f"/v1/grants/{user}").json()
    assert replaced["email"] == second
    assert replaced["grant_id"] != before["grant_id"]
    # The first mailbox is free again for another user: the old owner guard was stale.
    other = unique("u")
    freed = browser.run(other, email=first)
    assert freed.final is not None
    assert_return_redirect(stack, freed.final, status="connected")


def test_a_mailbox_linked_to_another_user_is_refused(
    stack: StackUrls, browser: Browser, other_browser: Browser, api: httpx.Client
) -> None:
    owner, intruder, email = unique("u"), unique("u"), mailbox()
    browser.run(owner, email=email)
    original = api.get(f"/v1/grants/{owner}").json()
    result = other_browser.run(intruder, email=email)
    assert result.final is not None
    assert_return_redirect(stack, result.final, status="error", error="account_already_linked")
    assert api.get(f"/v1/grants/{intruder}").status_code == 404
    assert api.get(f"/v1/grants/{owner}").json() == original


def test_a_session_starts_once(stack: StackUrls, browser: Browser, emulator: Emulator) -> None:
    session = browser.create_session(unique("u"))
    assert browser.start(session["connect_url"]).status_code == 302
    before = emulator.total_calls()
    second = browser.start(session["connect_url"])
    assert_return_redirect(stack, second, status="error", error="session_used")
    assert emulator.total_calls() == before


def test_unknown_session_gets_a_page_never_a_redirect(stack: StackUrls, emulator: Emulator) -> None:
    before = emulator.total_calls()
    for query in ("", "?session=", "?session=nope", "?session=" + "A" * 43, "?session=a&session=b"):
        response = httpx.get(f"{stack.gateway}/connect/start{query}", timeout=10)
        assert response.status_code in (400, 404), (query, response.status_code)
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")
        assert_browser_headers(response)
    assert emulator.total_calls() == before


def test_the_callback_in_another_browser_is_refused(
    stack: StackUrls, browser: Browser, other_browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = unique("u")
    session = browser.create_session(user)
    started = browser.start(session["connect_url"])
    callback = browser.consent(started.headers["location"], email=mailbox(), decision="allow")
    before = emulator.total_calls()
    stolen = other_browser.http.get(callback)
    assert stolen.status_code in (302, 400, 403)
    if stolen.status_code == 302:
        assert_return_redirect(stack, stolen, status="error", error="browser_mismatch")
    else:
        assert "browser_mismatch" in stolen.text or "browser" in stolen.text.lower()
    assert emulator.total_calls() == before, "no upstream call for a callback from the wrong browser"
    assert api.get(f"/v1/grants/{user}").status_code == 404
    # The real browser can still finish its own flow.
    finished = browser.http.get(callback)
    assert_return_redirect(stack, finished, status="connected")


def test_a_replayed_callback_changes_nothing(
    stack: StackUrls, browser: Browser, other_browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = unique("u")
    result = browser.run(user, email=mailbox())
    assert result.callback_url is not None
    record = api.get(f"/v1/grants/{user}").json()
    before = emulator.total_calls()
    replay = browser.http.get(result.callback_url)
    assert replay.status_code == 302
    assert query_of(replay.headers["location"])["status"][0] in ("connected", "error")
    elsewhere = other_browser.http.get(result.callback_url)
    assert elsewhere.status_code in (302, 400, 403)
    if elsewhere.status_code == 302:
        assert query_of(elsewhere.headers["location"])["status"] == ["error"]
    assert emulator.total_calls() == before
    assert api.get(f"/v1/grants/{user}").json() == record


def test_disconnect_revokes_at_nylas_and_removes_the_record(
    browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user, email = unique("u"), mailbox()
    browser.run(user, email=email)
    grant_id = api.get(f"/v1/grants/{user}").json()["grant_id"]
    assert grant_id in str(emulator.state())
    response = api.delete(f"/v1/grants/{quote(user)}")
    assert response.status_code == 204
    assert api.get(f"/v1/grants/{user}").status_code == 404
    assert grant_id not in str(emulator.state())
    assert api.delete(f"/v1/grants/{user}").status_code == 404


def test_disconnect_while_nylas_is_down_keeps_the_record(
    stack: StackUrls, browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = unique("u")
    browser.run(user, email=mailbox())
    record = api.get(f"/v1/grants/{user}").json()
    path = "/v3/grants/{grant_id}" if stack.flavour == "v3" else "/connect/grants/{grant_id}"
    emulator.fault("DELETE", path, status=503, count=10)
    response = api.delete(f"/v1/grants/{user}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    emulator.clear_faults()
    assert api.get(f"/v1/grants/{user}").json() == record
    assert api.delete(f"/v1/grants/{user}").status_code == 204


def test_the_backend_api_needs_a_valid_key(stack: StackUrls) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic abc"}):
        for method, path in (("POST", "/v1/sessions"), ("GET", "/v1/grants/x"), ("DELETE", "/v1/grants/x")):
            response = httpx.request(
                method, stack.gateway + path, headers=headers, json={"user_id": "x"}, timeout=10
            )
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"


def test_bad_session_requests_are_refused_and_write_nothing(stack: StackUrls, api: httpx.Client) -> None:
    table = [t for t in stack.dynamodb().list_tables()["TableNames"] if "ession" in t]
    assert len(table) == 1
    count = stack.dynamodb().scan(TableName=table[0], Select="COUNT")["Count"]
    cases: list[tuple[object, str]] = [
        ({}, "invalid_request"),
        ({"user_id": ""}, "invalid_request"),
        ({"user_id": "x" * 257}, "invalid_request"),
        ({"user_id": 7}, "invalid_request"),
        ({"user_id": "u", "unknown": 1}, "invalid_request"),
        ({"user_id": "u", "login_hint": "not-an-email"}, "invalid_request"),
        ({"user_id": "u", "return_to": "https://evil.example/return"}, "return_to_not_allowed"),
        ({"user_id": "u", "return_to": f"{stack.demo}.evil.example/return"}, "return_to_not_allowed"),
        ({"user_id": "u", "return_to": "javascript:alert(1)"}, "return_to_not_allowed"),
        ({"user_id": "u", "return_to": "//evil.example/return"}, "return_to_not_allowed"),
        (["user_id"], "invalid_request"),
    ]
    for body, code in cases:
        response = api.post("/v1/sessions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    malformed = api.post("/v1/sessions", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert stack.dynamodb().scan(TableName=table[0], Select="COUNT")["Count"] == count
