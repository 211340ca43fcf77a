"""Hostile input at the popup embedding, both flavours: the session status route, connect.js, the popup
result page, and the new session fields (`display`, `reconnect`) of `POST /v1/sessions`.

TM1 (the status route's capability is the 256-bit session id: unknown and malformed ids are 404),
TM8 (the result page posts only to the return_to's exact origin, CORS only for it), TM11/TM12 (the
result page's one script runs under a per-response nonce, nothing reflected unescaped, no framing),
TM13/TM3 (reconnect with another mailbox: the held grant untouched, the other one revoked), TM14
(nothing but status and error code leaves the status route; no grant id, email or token in the
result page), TM16 (bad session options write nothing).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.fixtures import CheckedBrowser
from tests.adversarial.harness import Emulator, Guard
from tests.support.stack_process import StackUrls

STATUS = "/connect/v1/sessions/{}/status"
SCRIPT = "/connect/v1/connect.js"
SCRIPT_RE = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)


def status_url(stack: StackUrls, session_id: str) -> str:
    return stack.gateway + STATUS.format(session_id)


def create(stack: StackUrls, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway}/v1/sessions", json=body, headers=harness.api_headers(stack), timeout=15
    )


def popup_body(user_id: str, stack: StackUrls, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "return_to": f"{stack.demo}/return/popup", "display": "popup", **extra}


def connected_user(browser: CheckedBrowser) -> tuple[str, str, dict[str, Any]]:
    user_id, email = harness.unique("u"), harness.mailbox()
    result = browser.run(user_id, email=email)
    assert result.final is not None
    assert result.final.status_code == 302, result.final.text
    grant = httpx.get(
        f"{browser.stack.gateway}/v1/grants/{user_id}", headers=harness.api_headers(browser.stack), timeout=15
    ).json()
    return user_id, email, grant


# --------------------------------------------------------------------------- status route


MALFORMED_IDS = [
    "A" * 42,
    "A" * 44,
    "A" * 42 + "=",
    "A" * 42 + "%2F",
    "A" * 42 + "+",
    "..",
    "%2e%2e",
    "A" * 42 + "%00",
    "é" * 43,
    "<script>",
    "A" * 43 + ";x",
    " " + "A" * 42,
]


@pytest.mark.parametrize("session_id", MALFORMED_IDS)
def test_malformed_session_ids_are_404_and_touch_nothing(
    stack: StackUrls, guard: Guard, http: httpx.Client, session_id: str
) -> None:
    guard.arm()
    response = http.get(STATUS.format(quote(session_id, safe="%")))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    # `..` is resolved by the client: no route matches and API Gateway itself answers its 404.
    assert body == {"message": "Not Found"} or body["error"]["code"] == "not_found", body
    assert "access-control-allow-origin" not in response.headers
    guard.assert_untouched()
    harness.record("popup status: malformed session id", "TM1", "TM7")


def test_an_unknown_well_formed_id_is_404_like_a_malformed_one(
    stack: StackUrls, guard: Guard, http: httpx.Client
) -> None:
    guard.arm()
    unknown = http.get(STATUS.format(harness.fake_token()), headers={"origin": stack.demo})
    malformed = http.get(STATUS.format("x"), headers={"origin": stack.demo})
    assert unknown.status_code == malformed.status_code == 404
    assert unknown.json()["error"]["code"] == malformed.json()["error"]["code"] == "not_found"
    guard.assert_untouched()
    harness.record("popup status: unknown session id", "TM1")


@pytest.mark.parametrize("query", ["v=1&v=2", "%zz", "a=%ff", "a=%E2%82"])
def test_a_malformed_query_is_400(stack: StackUrls, http: httpx.Client, query: str) -> None:
    session = create(stack, popup_body(harness.unique("u"), stack)).json()
    response = http.get(STATUS.format(session["session_id"]) + "?" + query)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    harness.record("popup status: malformed query", "TM11")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_not_routes(stack: StackUrls, http: httpx.Client, method: str) -> None:
    session = create(stack, popup_body(harness.unique("u"), stack)).json()
    response = http.request(method, STATUS.format(session["session_id"]))
    assert response.status_code in (404, 405), response.text
    harness.record("popup status: other methods", "TM1")


def test_the_status_route_answers_status_and_code_only_and_cors_only_for_return_to(
    stack: StackUrls, browser: CheckedBrowser, http: httpx.Client
) -> None:
    user_id, email = harness.unique("u"), harness.mailbox()
    session = browser.create_session(user_id, display="popup", return_to=f"{stack.demo}/return/popup")
    sid = session["session_id"]
    pending = http.get(STATUS.format(sid), headers={"origin": stack.demo})
    assert pending.status_code == 200
    assert pending.json() == {"status": "pending"}
    assert pending.headers["access-control-allow-origin"] == stack.demo
    assert "origin" in pending.headers["vary"].lower()
    assert pending.headers["cache-control"] == "no-store"
    assert "access-control-allow-credentials" not in pending.headers

    for origin in (
        "https://evil.example",
        "null",
        stack.gateway,
        stack.demo + ".evil.example",
        stack.emulator,
    ):
        other = http.get(STATUS.format(sid), headers={"origin": origin})
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers, origin
    harness.record("popup status: foreign origins", "TM8", n=5)

    started = browser.start(session["connect_url"])
    callback = browser.consent(started.headers["location"], email=email, decision="allow")
    final = browser.http.get(callback)
    assert final.status_code == 200  # the popup result page
    done = http.get(STATUS.format(sid), headers={"origin": stack.demo})
    assert done.json() == {"status": "connected"}
    grant = httpx.get(
        f"{stack.gateway}/v1/grants/{user_id}", headers=harness.api_headers(stack), timeout=15
    ).json()
    for secret in (grant["grant_id"], email, user_id, "state", "code"):
        assert secret not in done.text
    harness.record("popup status: leaks nothing", "TM14")


def test_a_denied_popup_flow_reads_error_with_its_code(stack: StackUrls, browser: CheckedBrowser) -> None:
    result = browser.run(
        harness.unique("u"),
        email=harness.mailbox(),
        decision="deny",
        display="popup",
        return_to=f"{stack.demo}/return/popup",
    )
    answer = httpx.get(status_url(stack, result.session_id), timeout=15)
    assert answer.json() == {"status": "error", "error": "access_denied"}


# --------------------------------------------------------------------------- the popup result page


def assert_result_page(stack: StackUrls, response: httpx.Response, message: dict[str, str]) -> None:
    assert response.status_code == 200 or response.status_code >= 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]{20,})'", csp)
    assert nonce, csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "*" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    scripts = SCRIPT_RE.findall(response.text)
    assert len(scripts) == 1, scripts
    assert f'nonce="{nonce.group(1)}"' in scripts[0][0]
    assert "'*'" not in scripts[0][1]
    assert '"*"' not in scripts[0][1]
    main = re.search(r'<main id="tc-result" ([^>]*)>', response.text)
    assert main
    attrs = {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', main.group(1))}
    assert attrs["data-origin"] == stack.demo
    assert json.loads(attrs["data-message"]) == message
    nxt = urlsplit(attrs["data-next"])
    assert f"{nxt.scheme}://{nxt.netloc}" == stack.demo
    assert nxt.path == "/return/popup"
    assert not harness.SECRET_QUERY_PARAMS & set(harness.query_of(attrs["data-next"]))


def test_the_popup_result_page_posts_only_to_the_return_to_origin(
    stack: StackUrls, browser: CheckedBrowser
) -> None:
    email = harness.mailbox()
    first = browser.run(
        harness.unique("u"), email=email, display="popup", return_to=f"{stack.demo}/return/popup"
    )
    assert first.final is not None
    expected = {"type": "teams-connect:result", "session": first.session_id, "status": "connected"}
    assert_result_page(stack, first.final, expected)
    assert email not in first.final.text
    second = browser.run(
        harness.unique("u"), email=harness.mailbox(), display="popup", return_to=f"{stack.demo}/return/popup"
    )
    assert second.final is not None
    nonces = {
        re.search(r"nonce-([^']+)", r.headers["content-security-policy"]).group(1)  # type: ignore[union-attr]
        for r in (first.final, second.final)
    }
    assert len(nonces) == 2, "a nonce is never reused"
    harness.record("popup result page: CSP, target origin", "TM8", "TM11", "TM12", "TM14", n=2)


def test_a_used_popup_link_ends_on_the_result_page_not_a_redirect(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser
) -> None:
    session = browser.create_session(
        harness.unique("u"), display="popup", return_to=f"{stack.demo}/return/popup"
    )
    assert browser.start(session["connect_url"]).status_code == 302
    again = other_browser.start(session["connect_url"])
    expected = {
        "type": "teams-connect:result",
        "session": session["session_id"],
        "status": "error",
        "error": "session_used",
    }
    assert_result_page(stack, again, expected)
    harness.record("popup result page: used link", "TM6", "TM12")


def test_hostile_return_to_query_is_escaped_on_the_result_page(
    stack: StackUrls, browser: CheckedBrowser
) -> None:
    hostile = f"{stack.demo}/return/popup?x=%22%3E%3Cscript%3Ealert(1)%3C/script%3E&y='"
    result = browser.run(harness.unique("u"), email=harness.mailbox(), display="popup", return_to=hostile)
    assert result.final is not None
    assert "<script>alert" not in result.final.text
    assert len(SCRIPT_RE.findall(result.final.text)) == 1
    harness.record("popup result page: hostile return_to", "TM11")


# --------------------------------------------------------------------------- connect.js


def test_connect_js_is_served_as_javascript_cacheable_and_versioned(
    stack: StackUrls, http: httpx.Client
) -> None:
    plain = http.get(SCRIPT, headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["cache-control"] == "public, max-age=300"
    assert plain.headers["access-control-allow-origin"] == "*"
    assert "set-cookie" not in plain.headers
    version = plain.headers["etag"].strip('"')
    assert version == hashlib.sha256(plain.content).hexdigest()[:16]
    assert len(gzip.compress(plain.content, 9)) <= 4096
    assert b"TeamsConnect" in plain.content

    pinned = http.get(SCRIPT, params={"v": version}, headers={"accept-encoding": "identity"})
    assert pinned.content == plain.content
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    unchanged = http.get(
        SCRIPT, headers={"if-none-match": plain.headers["etag"], "accept-encoding": "identity"}
    )
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    compressed = http.get(SCRIPT, headers={"accept-encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.content == plain.content  # httpx decodes it
    for foreign in ("0" * 16, "x", "", version.upper()):
        other = http.get(SCRIPT, params={"v": foreign})
        assert other.status_code == 404, foreign
        assert "immutable" not in other.headers.get("cache-control", "")
    duplicated = http.get(f"{SCRIPT}?v={version}&v={version}")
    assert duplicated.status_code == 400
    harness.record("connect.js: versions and headers", "TM11", n=6)


# --------------------------------------------------------------------------- session fields


BAD_OPTIONS: list[dict[str, Any]] = [
    {"display": "POPUP"},
    {"display": ""},
    {"display": None},
    {"display": 1},
    {"display": ["popup"]},
    {"display": "popup\n"},
    {"display": "iframe"},
    {"reconnect": "true"},
    {"reconnect": 1},
    {"reconnect": None},
    {"reconnect": {}},
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=lambda o: json.dumps(o))
def test_bad_session_options_are_400_and_write_nothing(
    stack: StackUrls, guard: Guard, options: dict[str, Any]
) -> None:
    guard.arm()
    body = {"user_id": harness.unique("u"), "return_to": f"{stack.demo}/return", **options}
    response = create(stack, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    guard.assert_untouched()
    harness.record("session options: bad display/reconnect", "TM16")


def test_a_popup_session_needs_a_return_to(stack: StackUrls, guard: Guard) -> None:
    guard.arm()
    response = create(stack, {"user_id": harness.unique("u"), "display": "popup"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    guard.assert_untouched()
    harness.record("session options: popup without return_to", "TM8")


def test_reconnect_for_a_user_without_a_grant_is_404_and_writes_nothing(
    stack: StackUrls, guard: Guard
) -> None:
    user_id = harness.unique("u")
    guard.arm(users=(user_id,))
    response = create(stack, {"user_id": user_id, "return_to": f"{stack.demo}/return", "reconnect": True})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_connected"
    guard.assert_untouched()
    harness.record("session options: reconnect without a grant", "TM1")


def test_reconnect_refuses_a_conflicting_expected_email(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    user_id, _, _ = connected_user(browser)
    guard.arm(users=(user_id,))
    body = {
        "user_id": user_id,
        "return_to": f"{stack.demo}/return",
        "reconnect": True,
        "expected_email": harness.mailbox(),
    }
    response = create(stack, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    guard.assert_untouched()
    harness.record("session options: reconnect with another expected_email", "TM3")


@pytest.mark.parametrize("display", ["redirect", "popup"])
def test_reconnect_with_another_mailbox_keeps_the_held_grant_and_revokes_the_other(
    stack: StackUrls, browser: CheckedBrowser, emulator: Emulator, display: str
) -> None:
    user_id, email, held = connected_user(browser)
    other = harness.mailbox()
    result = browser.run(
        user_id, email=other, reconnect=True, display=display, return_to=f"{stack.demo}/return/popup"
    )
    assert result.final is not None
    if display == "redirect":
        assert result.final.status_code == 302
        assert harness.query_of(result.final.headers["location"])["error"] == ["email_mismatch"]
    else:
        assert '"error":"email_mismatch"' in html.unescape(result.final.text)
    after = httpx.get(
        f"{stack.gateway}/v1/grants/{user_id}", headers=harness.api_headers(stack), timeout=15
    ).json()
    assert after == held, "the held grant must be untouched"
    deadline = time.monotonic() + 10
    emails: set[str] = set()
    while time.monotonic() < deadline:
        emails = {str(g.get("email", "")).lower() for g in emulator.state()["state"]["grants"]}
        if other.lower() not in emails:
            break
        time.sleep(0.2)
    assert other.lower() not in emails, "the other mailbox's grant must be revoked"
    assert email.lower() in emails, "the held grant must still exist at Nylas"
    answer = httpx.get(status_url(stack, result.session_id), timeout=15).json()
    assert answer == {"status": "error", "error": "email_mismatch"}
    harness.record("reconnect: another mailbox", "TM3", "TM13")


def test_reconnect_with_the_same_mailbox_keeps_the_grant_id(
    stack: StackUrls, browser: CheckedBrowser
) -> None:
    user_id, email, held = connected_user(browser)
    result = browser.run(user_id, email=email, reconnect=True)
    assert result.final is not None
    assert result.final.status_code == 302
    assert harness.query_of(result.final.headers["location"])["status"] == ["connected"]
    after = httpx.get(
        f"{stack.gateway}/v1/grants/{user_id}", headers=harness.api_headers(stack), timeout=15
    ).json()
    assert (after["grant_id"], after["status"]) == (held["grant_id"], "valid")
