"""Hostile input at the admin-consent routes (both flavours' stacks): `POST /v1/admin-consents`,
`GET /connect/admin-consent`, `GET /connect/admin-consent/callback`, `GET /v1/tenants/{tenant_id}`.

Forged and replayed callbacks, another browser, another tenant, expired and reused links, malformed
tenants, return_to outside the allow-list, oversized input, links of one flow at the other's routes.
Every case checks the answer, every Location (client hook), the stored items and the emulator's calls.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.fixtures import CheckedBrowser
from tests.adversarial.harness import Guard
from tests.adversarial.test_browser_routes import assert_html_page, set_session_field
from tests.support.stack_process import StackUrls

TOKEN = "POST /{tenant}/oauth2/v2.0/token"
DISCOVERY = "GET /{tenant}/v2.0/.well-known/openid-configuration"
FORGED_STATE = "A" * 43 + "." + "B" * 43


def org() -> str:
    return f"adv-{uuid.uuid4().hex[:10]}.example"


def tenant_of(stack: StackUrls, domain: str, policy: str = "admin_only") -> str:
    answer = httpx.post(
        f"{stack.emulator}/_emulator/tenants", json={"domain": domain, "user_consent": policy}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["tenant_id"])


def create(http: httpx.Client, stack: StackUrls, **body: Any) -> httpx.Response:
    payload = {"return_to": f"{stack.demo}/return", **body}
    return http.post("/v1/admin-consents", json=payload, headers=harness.api_headers(stack))


def link(http: httpx.Client, stack: StackUrls, **body: Any) -> dict[str, str]:
    answer = create(http, stack, **body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def started(browser: CheckedBrowser, consent_url: str) -> dict[str, str]:
    """Follow the link in this browser: returns Microsoft's query (state, client_id, …)."""
    answer = browser.http.get(consent_url)
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in harness.query_of(answer.headers["location"]).items()}


def callback(stack: StackUrls, **query: str) -> str:
    return f"{stack.gateway}/connect/admin-consent/callback?{urlencode(query)}"


def assert_return(response: httpx.Response, stack: StackUrls, **expected: str) -> None:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(f"{stack.demo}/return?"), location
    assert {k: v[0] for k, v in harness.query_of(location).items()} == expected
    assert response.headers["cache-control"] == "no-store"


def consent_status(stack: StackUrls, consent_id: str) -> str:
    item = harness.ddb(stack).get_item(
        TableName=harness.table_name(stack, "Sessions"),
        Key={"session_id": {"S": consent_id}},
        ConsistentRead=True,
    )["Item"]
    return str(item["status"]["S"])


def tenant_record(stack: StackUrls, tenant_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        harness.ddb(stack)
        .get_item(TableName=harness.table_name(stack, "Tenants"), Key={"tenant_id": {"S": tenant_id}})
        .get("Item")
    )
    return found


# --------------------------------------------------------------------------- POST /v1/admin-consents

BAD_RETURN_TO = [
    "https://evil.example/return",
    "javascript:alert(1)",
    "//evil.example/return",
    "http://127.0.0.1:1/return",
    "",
    42,
    None,
]


@pytest.mark.parametrize("return_to", BAD_RETURN_TO, ids=range(len(BAD_RETURN_TO)))
def test_a_return_to_outside_the_allow_list_is_refused(
    stack: StackUrls, http: httpx.Client, guard: Guard, return_to: object
) -> None:
    guard.arm()
    answer = http.post(
        "/v1/admin-consents", json={"return_to": return_to}, headers=harness.api_headers(stack)
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "return_to_not_allowed"
    guard.assert_untouched()
    harness.record("admin consent: return_to", "TM8")


BAD_TENANTS = [
    "common",
    "organizations",
    "consumers",
    "outlook.com",
    "9188040d-6c67-4c5b-b112-36a304b66dad",
    "not a domain",
    "contoso",
    "x" * 300 + ".com",
    "contoso.com\n",
    "../contoso.com",
    42,
    None,
    ["contoso.com"],
]


@pytest.mark.parametrize("tenant", BAD_TENANTS, ids=range(len(BAD_TENANTS)))
def test_a_malformed_tenant_is_refused_before_any_call(
    stack: StackUrls, http: httpx.Client, guard: Guard, tenant: object
) -> None:
    guard.arm()
    answer = create(http, stack, tenant=tenant)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    guard.assert_untouched()
    harness.record("admin consent: malformed tenant", "TM1")


def test_an_unknown_tenant_is_refused_and_nothing_is_stored(
    stack: StackUrls, http: httpx.Client, guard: Guard
) -> None:
    guard.arm()
    answer = create(http, stack, tenant=str(uuid.uuid4()))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    guard.assert_untouched(upstream={DISCOVERY: 1})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"tenant": "contoso.example"}, 400, "invalid_request"),  # return_to missing
        ({"return_to": "https://x", "extra": 1}, 400, "invalid_request"),
        ("a string", 400, "invalid_request"),
        ({"return_to": "https://app.example/" + "a" * 20000}, 413, "payload_too_large"),
    ],
)
def test_bad_bodies_create_nothing(
    stack: StackUrls, http: httpx.Client, guard: Guard, body: object, status: int, code: str
) -> None:
    guard.arm()
    answer = http.post("/v1/admin-consents", json=body, headers=harness.api_headers(stack))
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    guard.assert_untouched()
    harness.record("admin consent: body", "TM1")


def test_the_backend_routes_need_the_api_key(stack: StackUrls, http: httpx.Client, guard: Guard) -> None:
    guard.arm()
    for headers in ({}, {"authorization": "Bearer wrong-key-wrong-key-wrong"}, {"authorization": "Basic x"}):
        answer = http.post("/v1/admin-consents", json={"return_to": f"{stack.demo}/return"}, headers=headers)
        assert answer.status_code == 401
        assert http.get(f"/v1/tenants/{uuid.uuid4()}", headers=headers).status_code == 401
    guard.assert_untouched()


@pytest.mark.parametrize("tenant_id", ["not-a-guid", "common", "%00", "a" * 300])
def test_tenant_lookup_refuses_what_is_not_a_tenant_id(
    stack: StackUrls, http: httpx.Client, tenant_id: str
) -> None:
    answer = http.get(f"/v1/tenants/{tenant_id}", headers=harness.api_headers(stack))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    unknown = http.get(f"/v1/tenants/{uuid.uuid4()}", headers=harness.api_headers(stack))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


# --------------------------------------------------------------------------- GET /connect/admin-consent

START_QUERIES = {
    "missing": "",
    "empty": "consent=",
    "short": "consent=abc",
    "unknown": "consent=" + "C" * 43,
    "repeated": "consent=" + "C" * 43 + "&consent=" + "D" * 43,
    "newline": "consent=" + "C" * 42 + "%0A",
    "oversized": "consent=" + "C" * 5000,
}


@pytest.mark.parametrize("query", START_QUERIES.values(), ids=START_QUERIES.keys())
def test_no_flow_without_a_minted_link(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard, query: str
) -> None:
    guard.arm()
    answer = browser.http.get(f"{stack.gateway}/connect/admin-consent?{query}")
    assert_html_page(answer, 400, "session_invalid")
    assert "set-cookie" not in answer.headers
    guard.assert_untouched()
    harness.record("admin consent start: no link", "TM1")


def test_a_link_works_once(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    made = link(http, stack)
    started(browser, made["consent_url"])
    guard.arm(sessions=(made["consent_id"],))
    again = other_browser.http.get(made["consent_url"])
    assert_return(again, stack, status="error", error="session_used")
    assert "set-cookie" not in again.headers
    guard.assert_untouched()
    harness.record("admin consent start: reused", "TM6")


def test_an_expired_link_is_refused(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, guard: Guard
) -> None:
    made = link(http, stack)
    set_session_field(stack, made["consent_id"], "expires_at", 1)
    guard.arm(sessions=(made["consent_id"],))
    answer = browser.http.get(made["consent_url"])
    assert_return(answer, stack, status="error", error="session_expired")
    guard.assert_untouched()


def test_links_of_one_flow_do_not_work_at_the_others_routes(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, guard: Guard
) -> None:
    made = link(http, stack)
    session = browser.create_session(harness.unique("u"))
    guard.arm(sessions=(made["consent_id"], session["session_id"]))
    # A consent link at the connect flow's start, a connect link at the admin-consent start.
    at_connect = browser.http.get(f"{stack.gateway}/connect/start?session={made['consent_id']}")
    assert at_connect.status_code in (302, 409), at_connect.text
    assert "set-cookie" not in at_connect.headers
    at_consent = browser.http.get(f"{stack.gateway}/connect/admin-consent?consent={session['session_id']}")
    assert_html_page(at_consent, 400, "session_invalid")
    guard.assert_untouched()
    harness.record("admin consent: cross-flow link", "TM1")


# --------------------------------------------------------------------------- the callback


def test_a_forged_callback_is_refused(stack: StackUrls, browser: CheckedBrowser, guard: Guard) -> None:
    guard.arm()
    for query in (
        {"admin_consent": "True", "tenant": str(uuid.uuid4()), "state": FORGED_STATE},
        {"admin_consent": "True", "tenant": str(uuid.uuid4())},
        {"state": "x"},
        {"error": "access_denied", "state": FORGED_STATE},
    ):
        answer = browser.http.get(callback(stack, **query))
        assert_html_page(answer, 400, "session_invalid")
    oversized = browser.http.get(callback(stack, state=FORGED_STATE, junk="j" * 5000))
    assert_html_page(oversized, 400, "session_invalid")
    guard.assert_untouched()
    harness.record("admin consent callback: forged", "TM2", n=5)


def test_another_browser_cannot_answer(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    domain = org()
    tenant_id = tenant_of(stack, domain)
    made = link(http, stack, tenant=domain)
    ms = started(browser, made["consent_url"])
    guard.arm(sessions=(made["consent_id"],))
    answer = other_browser.http.get(
        callback(stack, admin_consent="True", tenant=tenant_id, state=ms["state"])
    )
    assert_return(answer, stack, status="error", error="browser_mismatch")
    guard.assert_untouched()
    assert consent_status(stack, made["consent_id"]) == "consent_started", "left to its own browser"
    assert tenant_record(stack, tenant_id) is None
    harness.record("admin consent callback: other browser", "TM3")


def test_another_tenant_than_the_links_is_refused(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, guard: Guard
) -> None:
    mine, theirs = org(), org()
    tenant_of(stack, mine)
    other_id = tenant_of(stack, theirs)
    made = link(http, stack, tenant=mine)
    ms = started(browser, made["consent_url"])
    guard.arm()
    answer = browser.http.get(callback(stack, admin_consent="True", tenant=other_id, state=ms["state"]))
    assert_return(answer, stack, status="error", error="tenant_mismatch")
    assert guard.upstream_calls() == {}, "no token request for a refused tenant"
    assert consent_status(stack, made["consent_id"]) == "failed"
    assert tenant_record(stack, other_id) is None
    harness.record("admin consent callback: tenant mismatch", "TM5")


@pytest.mark.parametrize("tenant", ["", "common", "not-a-guid", "../x", "0" * 36])
def test_a_malformed_tenant_id_is_not_believed(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, guard: Guard, tenant: str
) -> None:
    made = link(http, stack)
    ms = started(browser, made["consent_url"])
    guard.arm()
    answer = browser.http.get(callback(stack, admin_consent="True", tenant=tenant, state=ms["state"]))
    assert_return(answer, stack, status="error", error="consent_unverified")
    assert guard.upstream_calls() == {}
    assert guard.changed() == {}
    harness.record("admin consent callback: malformed tenant", "TM5")


def test_a_claimed_consent_microsoft_does_not_confirm_is_refused(
    stack: StackUrls, http: httpx.Client, browser: CheckedBrowser, guard: Guard
) -> None:
    domain = org()
    tenant_id = tenant_of(stack, domain)  # its administrator never consented
    made = link(http, stack)
    ms = started(browser, made["consent_url"])
    guard.arm()
    answer = browser.http.get(callback(stack, admin_consent="True", tenant=tenant_id, state=ms["state"]))
    assert_return(answer, stack, status="error", error="consent_unverified")
    assert guard.upstream_calls() == {TOKEN: 1}
    assert guard.changed() == {}
    assert tenant_record(stack, tenant_id) is None
    harness.record("admin consent callback: unconfirmed", "TM4")


def test_a_connect_flows_state_does_not_complete_an_admin_consent(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    begun = browser.begin()  # a connect flow up to Nylas's callback, in this browser (its cookie set)
    state = harness.query_of(begun.callback_url)["state"][0]
    guard.arm(sessions=(begun.session_id,))
    answer = browser.http.get(callback(stack, admin_consent="True", tenant=str(uuid.uuid4()), state=state))
    assert_html_page(answer, 400, "session_invalid")
    guard.assert_untouched()
    harness.record("admin consent callback: connect state", "TM10")


def test_the_page_escapes_and_frames_nothing(stack: StackUrls, browser: CheckedBrowser) -> None:
    answer = browser.http.get(callback(stack, state="<script>alert(1)</script>"))
    assert_html_page(answer, 400, "session_invalid")
    assert urlsplit(str(answer.url)).path == "/connect/admin-consent/callback"
