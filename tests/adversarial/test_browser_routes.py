"""Hostile browsers at `GET /connect/start` and `GET /connect/callback`, both flavours.

TM1 (no flow without a minted session), TM2/TM3 (state + per-flow binding cookie), TM4 (code
injection), TM5 (grant-id / email injection), TM6 (replay), TM7 (no upstream call before the state
and cookie check), TM9 (Host / X-Forwarded-*), TM10 (mix-up), TM11/TM12 (XSS, CSP, framing),
TM13 (cross-user grant), TM16 (double submit). Every case checks the status, every Location
(client hook), the stored items and the emulator's call counters.
"""

from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.fixtures import CheckedBrowser
from tests.adversarial.harness import Guard, Started
from tests.support.stack_process import StackUrls

SCRIPT = "<script>alert(1)</script>"
FORGED_STATE = "A" * 43 + "." + "B" * 43


def assert_html_page(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in response.text.lower()
    assert f"<small>{html.escape(code)}</small>" in response.text


def assert_return(stack: StackUrls, response: httpx.Response, **expected: str) -> None:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(f"{stack.demo}/return?"), location
    query = harness.query_of(location)
    assert {k: v[0] for k, v in query.items()} == expected, location
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


def session_key(session_id: str) -> dict[str, dict[str, str]]:
    return {"session_id": {"S": session_id}}


def set_session_field(stack: StackUrls, session_id: str, name: str, value: int) -> None:
    stack.dynamodb().update_item(
        TableName=harness.table_name(stack, "Sessions"),
        Key=session_key(session_id),
        UpdateExpression="SET #n = :v",
        ExpressionAttributeNames={"#n": name},
        ExpressionAttributeValues={":v": {"N": str(value)}},
    )


def grant_of(stack: StackUrls, user_id: str) -> dict[str, object] | None:
    item = stack.dynamodb().get_item(
        TableName=harness.table_name(stack, "Grants"), Key={"pk": {"S": f"USER#{user_id}"}}
    )
    found: dict[str, object] | None = item.get("Item")
    return found


# --------------------------------------------------------------------------- no flow at all

START_QUERIES = {
    "missing": "",
    "empty": "session=",
    "forged-well-formed": "session=" + "A" * 43,
    "too-short": "session=" + "A" * 42,
    "too-long": "session=" + "A" * 44,
    "trailing-newline": "session=" + "A" * 43 + "%0A",
    "bad-alphabet": "session=" + "A" * 42 + "%2B",
    "duplicated": "session=" + "A" * 43 + "&session=" + "B" * 43,
    "script": "session=" + quote(SCRIPT),
    "invalid-utf8": "session=%ff%fe",
    "bare-percent": "session=%",
    "huge": "session=" + "A" * 5000,
    "many-fields": "&".join(f"k{i}=v" for i in range(40)),
    "user-id-instead": "user_id=victim",
    "user-id-and-return": "user_id=victim&return_to=https%3A%2F%2Fevil.example",
    "state-instead": "state=" + FORGED_STATE,
}


@pytest.mark.parametrize("case", sorted(START_QUERIES))
def test_start_without_a_minted_session_is_a_page_never_a_redirect(
    stack: StackUrls, http: httpx.Client, guard: Guard, case: str
) -> None:
    guard.arm()
    response = http.get("/connect/start?" + START_QUERIES[case])
    assert_html_page(response, 400, "session_invalid")
    assert "set-cookie" not in response.headers
    guard.assert_untouched()
    harness.record("start_without_session", "TM1", "TM7", "TM11", "TM12")


CALLBACK_QUERIES = {
    "missing-everything": "",
    "missing-state-v3": "code=abc",
    "missing-state-beta": "success=true&provider=microsoft&email=a%40contoso.example&grant_id=g1",
    "forged-state-v3": f"code=abc&state={FORGED_STATE}",
    "forged-state-beta": f"success=true&provider=microsoft&grant_id=g1&state={FORGED_STATE}",
    "success-true-without-flow": "success=true",
    "state-too-long": "code=abc&state=" + "A" * 300,
    "state-trailing-newline": f"code=abc&state={FORGED_STATE}%0A",
    "state-duplicated": f"code=abc&state={FORGED_STATE}&state={FORGED_STATE}",
    "code-duplicated": f"code=a&code=b&state={FORGED_STATE}",
    "state-script": "code=abc&state=" + quote(SCRIPT),
    "error-description-script": f"error=access_denied&error_description={quote(SCRIPT)}&state={FORGED_STATE}",
    "error-script": f"error={quote(SCRIPT)}&state={FORGED_STATE}",
    "email-script": "success=true&grant_id=g&email=" + quote(SCRIPT + "@x.example"),
    "session-script": "session=" + quote(SCRIPT),
    "invalid-utf8": f"code=%ff&state={FORGED_STATE}",
    "huge-query": f"state={FORGED_STATE}&code=" + "a" * 6000,
    "many-fields": "&".join(f"k{i}=v" for i in range(40)),
    "crlf-in-code": f"code=a%0d%0aSet-Cookie%3a%20x%3d1&state={FORGED_STATE}",
}


@pytest.mark.parametrize("case", sorted(CALLBACK_QUERIES))
def test_callback_without_a_flow_is_a_page_never_a_redirect(
    stack: StackUrls, http: httpx.Client, guard: Guard, case: str
) -> None:
    guard.arm()
    response = http.get("/connect/callback?" + CALLBACK_QUERIES[case])
    assert response.status_code in (400, 502), response.text
    assert_html_page(
        response, response.status_code, "session_invalid" if response.status_code == 400 else "grant_invalid"
    )
    guard.assert_untouched()
    harness.record("callback_without_flow", "TM2", "TM6", "TM7", "TM11", "TM12")


def test_unknown_routes_are_a_page_that_reflects_nothing(
    stack: StackUrls, http: httpx.Client, guard: Guard
) -> None:
    guard.arm()
    response = http.get("/connect/" + quote(SCRIPT, safe=""))
    assert response.status_code in (403, 404)
    assert "<script" not in response.text.lower()
    guard.assert_untouched()
    harness.record("callback_without_flow", "TM11")


# --------------------------------------------------------------------------- start replays and expiry


def test_an_expired_session_does_not_start(stack: StackUrls, browser: CheckedBrowser, guard: Guard) -> None:
    session = browser.create_session(harness.unique("u"))
    set_session_field(stack, session["session_id"], "expires_at", int(time.time()) - 5)
    guard.arm(sessions=(session["session_id"],))
    response = browser.start(session["connect_url"])
    assert_return(stack, response, status="error", error="session_expired")
    assert "set-cookie" not in response.headers
    guard.assert_untouched()
    harness.record("session_expired", "TM1", "TM6")


def test_a_started_session_does_not_start_again_in_another_browser(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    session = browser.create_session(harness.unique("u"))
    assert browser.start(session["connect_url"]).status_code == 302
    guard.arm(sessions=(session["session_id"],))
    response = other_browser.start(session["connect_url"])
    assert_return(stack, response, status="error", error="session_used")
    assert "set-cookie" not in response.headers
    guard.assert_untouched()
    harness.record("session_replayed", "TM1", "TM3", "TM6")


# --------------------------------------------------------------------------- binding cookie (TM2/TM3)


def _cookie_header(name: str, value: str) -> dict[str, str]:
    return {"cookie": f"{name}={value}"}


COOKIE_ATTACKS = {
    "missing": lambda f, other: {},
    "tampered-value": lambda f, other: _cookie_header(f.cookie_name, harness.fake_token()),
    "malformed-value": lambda f, other: _cookie_header(f.cookie_name, SCRIPT.replace(" ", "")),
    "empty-value": lambda f, other: _cookie_header(f.cookie_name, ""),
    "other-flows-nonce": lambda f, other: _cookie_header(f.cookie_name, other.cookie_value),
    "other-flows-cookie": lambda f, other: _cookie_header(other.cookie_name, other.cookie_value),
    "duplicated": lambda f, other: {
        "cookie": f"{f.cookie_name}={f.cookie_value}; {f.cookie_name}={harness.fake_token()}"
    },
    "wrong-name-right-value": lambda f, other: _cookie_header(f.cookie_name + "x", f.cookie_value),
}


@pytest.mark.parametrize("case", sorted(COOKIE_ATTACKS))
def test_a_callback_without_the_flows_cookie_is_refused_and_leaves_the_flow_intact(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard, case: str
) -> None:
    """Login CSRF / session swapping: the state is right, the browser is not."""
    flow = browser.begin()
    other = other_browser.begin()
    headers = COOKIE_ATTACKS[case](flow, other)
    guard.arm(sessions=(flow.session_id, other.session_id), users=(flow.user_id, other.user_id))
    with harness.client(stack) as attacker:  # a browser without the flow's cookie
        response = attacker.get(flow.callback_url, headers=headers)
    assert_return(stack, response, status="error", error="browser_mismatch")
    guard.assert_untouched()
    # The real browser can still finish its flow.
    finished = browser.http.get(flow.callback_url)
    assert_return(stack, finished, status="connected")
    harness.record("binding_cookie", "TM2", "TM3", "TM7")


def test_a_flow_started_in_one_browser_cannot_be_finished_in_another(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    flow = browser.begin()
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = other_browser.http.get(flow.callback_url)
    assert_return(stack, response, status="error", error="browser_mismatch")
    guard.assert_untouched()
    assert grant_of(stack, flow.user_id) is None
    harness.record("binding_cookie", "TM3")


# --------------------------------------------------------------------------- state (TM2/TM6)


def _tamper_state(flow: Started) -> str:
    sid, _, rnd = flow.state.partition(".")
    flipped = ("A" if rnd[0] != "A" else "B") + rnd[1:]
    return flow.callback_url.replace(flow.state, f"{sid}.{flipped}")


STATE_ATTACKS = {
    "random-part-tampered": _tamper_state,
    "session-part-of-another": lambda flow: flow.callback_url.replace(
        flow.state, harness.fake_token() + "." + flow.state.split(".")[1]
    ),
    "state-removed": lambda flow: flow.callback_url.replace("state=" + flow.state, ""),
    "state-duplicated": lambda flow: flow.callback_url + "&state=" + flow.state,
    "state-plus-newline": lambda flow: flow.callback_url.replace(flow.state, flow.state + "%0A"),
    "session-id-as-state": lambda flow: flow.callback_url.replace(flow.state, flow.session_id),
}


@pytest.mark.parametrize("case", sorted(STATE_ATTACKS))
def test_a_wrong_state_with_the_right_cookie_is_a_page_and_consumes_nothing(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard, case: str
) -> None:
    flow = browser.begin()
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(STATE_ATTACKS[case](flow))
    assert_html_page(response, 400, "session_invalid")
    guard.assert_untouched()
    harness.record("state", "TM2", "TM7")


def test_an_expired_flow_is_refused_at_the_callback_without_an_upstream_call(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    flow = browser.begin()
    set_session_field(stack, flow.session_id, "flow_expires_at", int(time.time()) - 1)
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(flow.callback_url)
    assert_return(stack, response, status="error", error="session_expired")
    guard.assert_untouched()
    harness.record("session_expired", "TM6", "TM7")


def test_a_replayed_callback_makes_no_upstream_call_and_no_write(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    flow = browser.begin()
    done = browser.http.get(flow.callback_url)
    assert_return(stack, done, status="connected")
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    # The same browser (its cookie was cleared), another browser, and one holding the old cookie.
    same = browser.http.get(flow.callback_url)
    assert_return(stack, same, status="error", error="browser_mismatch")
    other = other_browser.http.get(flow.callback_url)
    assert_return(stack, other, status="error", error="browser_mismatch")
    with harness.client(stack) as stolen:
        replay = stolen.get(flow.callback_url, headers=_cookie_header(flow.cookie_name, flow.cookie_value))
    assert_return(stack, replay, status="connected")  # idempotent: nothing new happens
    guard.assert_untouched()
    harness.record("replay", "TM6", "TM7", n=3)


def test_double_submitted_callbacks_make_one_upstream_call_and_one_write(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    flow = browser.begin()
    headers = _cookie_header(flow.cookie_name, flow.cookie_value)
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))

    def hit(_: int) -> httpx.Response:
        with harness.client(stack) as c:
            return c.get(flow.callback_url, headers=headers)

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(hit, range(4)))
    outcomes = sorted(
        harness.query_of(r.headers["location"]).get("error", ["connected"])[0] for r in responses
    )
    assert "connected" in outcomes
    assert set(outcomes) <= {"connected", "session_used"}, outcomes
    expected = (
        {"POST /v3/connect/token": 1} if stack.flavour == "v3" else {"GET /connect/grants/{grant_id}": 1}
    )
    assert guard.upstream_calls() == expected
    grants_table = harness.table_name(stack, "Grants")
    assert guard.changed() == {grants_table: 3}  # one USER#, one GRANT# and one MAILBOX# item, nothing else
    assert grant_of(stack, flow.user_id) is not None
    harness.record("double_submit", "TM16", n=4)


# --------------------------------------------------------------------------- mix-up (TM10) and injection


def test_callback_parameters_of_the_other_flavour_are_refused_before_any_io(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    flow = browser.begin()
    if stack.flavour == "v3":
        query = {"success": "true", "provider": "microsoft", "email": flow.email, "grant_id": "g-1"}
    else:
        query = {"code": harness.fake_token()}
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(
        f"{stack.gateway}/connect/callback?{urlencode({**query, 'state': flow.state})}"
    )
    # Neither flavour's callback shape: not a callback at all, refused before any I/O with a 4xx.
    assert_html_page(response, 400, "session_invalid")
    guard.assert_untouched()
    harness.record("provider_mix_up", "TM10", "TM7")


@pytest.mark.parametrize("provider", ["google", "Microsoft", "microsoft,google", "", "imap"])
def test_beta_callback_with_another_provider_ends_the_flow_without_an_upstream_call(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard, provider: str
) -> None:
    flow = browser.begin()
    query = harness.query_of(flow.callback_url)
    query["provider"] = [provider]
    if stack.flavour == "v3":  # v3 ignores `provider`: the code is exchanged; the grant says microsoft
        query = {"state": [flow.state], "provider": [provider], "code": [harness.fake_token()]}
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(f"{stack.gateway}/connect/callback?{urlencode(query, doseq=True)}")
    if stack.flavour == "beta":
        # Not a 5xx page (issue 9): the flow ends with grant_invalid at its return_to; Nylas is not
        # asked about anything and nothing is stored (the session is consumed and failed).
        assert_return(stack, response, status="error", error="grant_invalid")
        assert guard.upstream_calls() == {}
        assert guard.changed() == {}
        assert grant_of(stack, flow.user_id) is None
    else:  # a forged code: exactly one exchange, refused by Nylas, nothing stored for the user
        assert_return(stack, response, status="error", error="grant_invalid")
        assert guard.upstream_calls() == {"POST /v3/connect/token": 1}
        assert grant_of(stack, flow.user_id) is None
    harness.record("provider_mix_up", "TM10")


def test_a_stolen_code_injected_into_another_flow_is_refused(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    """v3: the victim's code in the attacker's flow fails PKCE. beta: the victim's grant id in the
    attacker's flow carries the victim's flow's state and is the victim's (TM5/TM13)."""
    victim = browser.begin()
    if stack.flavour == "beta":  # the victim's grant must exist and belong to them first
        assert_return(stack, browser.http.get(victim.callback_url), status="connected")
    victim_grant = grant_of(stack, victim.user_id)
    attacker = other_browser.begin()
    stolen = harness.query_of(victim.callback_url)
    query = {k: v[0] for k, v in harness.query_of(attacker.callback_url).items()}
    if stack.flavour == "v3":
        query["code"] = stolen["code"][0]
    else:
        query["grant_id"] = stolen["grant_id"][0]
        query["email"] = victim.email
    guard.arm(sessions=(attacker.session_id,), users=(victim.user_id, attacker.user_id))
    response = other_browser.http.get(f"{stack.gateway}/connect/callback?{urlencode(query)}")
    expected = "grant_invalid" if stack.flavour == "v3" else "account_already_linked"
    assert_return(stack, response, status="error", error=expected)
    assert grant_of(stack, attacker.user_id) is None
    assert grant_of(stack, victim.user_id) == victim_grant
    upstream = (
        {"POST /v3/connect/token": 1} if stack.flavour == "v3" else {"GET /connect/grants/{grant_id}": 1}
    )
    assert guard.upstream_calls() == upstream
    assert guard.changed() == {}
    sessions_table = harness.table_name(stack, "Sessions")
    assert guard.changed_watched() == [f"{sessions_table}:{attacker.session_id}"]  # consumed, failed
    harness.record("code_or_grant_injection", "TM4", "TM5", "TM13")


@pytest.mark.parametrize(
    "email", ["attacker@evil.example", SCRIPT + "@evil.example", "victim@contoso.example%0A", ""]
)
def test_a_forged_email_in_the_callback_is_never_stored(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard, email: str
) -> None:
    flow = browser.begin()
    query = {k: v[0] for k, v in harness.query_of(flow.callback_url).items()}
    query["email"] = email
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(f"{stack.gateway}/connect/callback?{urlencode(query)}")
    if response.status_code == 302:
        assert_return(stack, response, status="connected")
        stored = grant_of(stack, flow.user_id)
        assert stored is not None
        assert stored["email"] == {"S": flow.email}  # as Nylas reports it
    else:
        raise AssertionError(f"the query's email is never used: {response.status_code}")
    harness.record("email_injection", "TM5", "TM11")


def test_beta_grant_older_than_the_flow_is_refused(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    """A grant that existed before the session started (not produced by this flow) is not accepted.
    Simulated by moving the flow's start an hour later than the grant's last update."""
    flow = browser.begin()
    set_session_field(stack, flow.session_id, "started_at", int(time.time()) + 3600)
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(flow.callback_url)
    if stack.flavour == "beta":
        assert_return(stack, response, status="error", error="grant_invalid")
        assert guard.upstream_calls() == {"GET /connect/grants/{grant_id}": 1}
        assert grant_of(stack, flow.user_id) is None
    else:  # v3: the grant id comes from the back channel for this very code: freshness is moot
        assert_return(stack, response, status="connected")
    harness.record("grant_freshness", "TM5")


# --------------------------------------------------------------------------- issue 9 (security review 2)


def _revoke_route(stack: StackUrls) -> str:
    return "DELETE /v3/grants/{grant_id}" if stack.flavour == "v3" else "DELETE /connect/grants/{grant_id}"


def test_a_fresh_grant_of_someone_elses_unfinished_flow_is_refused_and_left_alone(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    """Review 2, F1: the victim consented but never came back (a closed tab, an expired session), so
    their grant is fresh and linked to nobody. beta: its grant id in the attacker's own flow carries
    the victim's state; v3: the victim's code fails the attacker's PKCE. Either way: grant_invalid,
    and the victim's grant is not touched (not revoked either)."""
    victim = browser.begin()
    attacker = other_browser.begin()
    stolen = harness.query_of(victim.callback_url)
    query = {k: v[0] for k, v in harness.query_of(attacker.callback_url).items()}
    if stack.flavour == "v3":
        query["code"] = stolen["code"][0]
    else:
        query["grant_id"] = stolen["grant_id"][0]
    guard.arm(sessions=(attacker.session_id,), users=(victim.user_id, attacker.user_id))
    response = other_browser.http.get(f"{stack.gateway}/connect/callback?{urlencode(query)}")
    assert_return(stack, response, status="error", error="grant_invalid")
    assert grant_of(stack, attacker.user_id) is None
    assert _revoke_route(stack) not in guard.upstream_calls()
    assert guard.changed() == {}
    harness.record("grant_binding", "TM5", "TM13")


def test_a_connect_link_phished_onto_another_mailbox_is_refused_with_email_mismatch(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    """Review 2, F2: the SaaS says whose mailbox the link is for; anyone else who follows it gets
    email_mismatch, nothing is stored, and the grant Nylas made for them is revoked."""
    flow = browser.begin(email=harness.mailbox(), expected_email="the.user@contoso.example")
    guard.arm(sessions=(flow.session_id,), users=(flow.user_id,))
    response = browser.http.get(flow.callback_url)
    assert_return(stack, response, status="error", error="email_mismatch")
    assert grant_of(stack, flow.user_id) is None
    assert guard.upstream_calls().get(_revoke_route(stack)) == 1
    assert guard.changed() == {}  # no record, no guard, no outbox entry left
    harness.record("phished_connect_link", "TM1", "TM3")


def test_a_mailbox_switch_revokes_the_replaced_grant(
    stack: StackUrls, browser: CheckedBrowser, other_browser: CheckedBrowser, guard: Guard
) -> None:
    """Review 2, F3: one user, one grant; the replaced grant is revoked and its guard removed."""
    first = browser.begin()
    assert_return(stack, browser.http.get(first.callback_url), status="connected")
    first_grant = grant_of(stack, first.user_id)
    assert first_grant is not None
    second = other_browser.begin(user_id=first.user_id)
    guard.arm(sessions=(second.session_id,), users=(first.user_id,))
    assert_return(stack, other_browser.http.get(second.callback_url), status="connected")
    now = grant_of(stack, first.user_id)
    assert now is not None
    assert now["grant_id"] != first_grant["grant_id"]
    assert guard.upstream_calls().get(_revoke_route(stack)) == 1
    old_guard = (
        stack.dynamodb()
        .get_item(
            TableName=harness.table_name(stack, "Grants"),
            Key={"pk": {"S": f"GRANT#{first_grant['grant_id']['S']}"}},  # type: ignore[index]
        )
        .get("Item")
    )
    assert old_guard is None
    assert guard.changed() == {}  # one guard replaced by another; the outbox entry is gone again
    harness.record("orphaned_grant", "TM13", "TM16")


def test_denied_consent_with_a_script_description_is_not_reflected(
    stack: StackUrls, browser: CheckedBrowser, guard: Guard
) -> None:
    session = browser.create_session(harness.unique("u"))
    started = browser.start(session["connect_url"])
    callback = browser.consent(started.headers["location"], email=harness.mailbox(), decision="deny")
    query = {k: v[0] for k, v in harness.query_of(callback).items()}
    query["error_description"] = SCRIPT
    guard.arm(sessions=(session["session_id"],))
    response = browser.http.get(f"{stack.gateway}/connect/callback?{urlencode(query)}")
    assert_return(stack, response, status="error", error="access_denied")
    assert guard.upstream_calls() == {}
    assert SCRIPT not in response.text
    harness.record("reflected_script", "TM11")


# --------------------------------------------------------------------------- Host / X-Forwarded-* (TM9)

HEADER_ATTACKS = {
    "host": {"host": "evil.example"},
    "x-forwarded-host": {"x-forwarded-host": "evil.example"},
    "x-forwarded-proto": {"x-forwarded-proto": "https"},
    "x-forwarded-port": {"x-forwarded-port": "31337"},
    "forwarded": {"forwarded": "for=1.2.3.4;host=evil.example;proto=https"},
    "x-original-url": {"x-original-url": "https://evil.example/connect/callback"},
    "all-at-once": {
        "host": "evil.example:443",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
        "forwarded": "host=evil.example;proto=https",
        "x-forwarded-server": "evil.example",
    },
}


@pytest.mark.parametrize("case", sorted(HEADER_ATTACKS))
def test_host_and_forwarding_headers_change_no_url_on_any_route(
    stack: StackUrls, http: httpx.Client, guard: Guard, case: str
) -> None:
    injected = HEADER_ATTACKS[case]
    user = harness.unique("u")
    created = http.post(
        "/v1/sessions",
        json={"user_id": user, "return_to": f"{stack.demo}/return"},
        headers=harness.api_headers(stack, **injected),
    )
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["connect_url"] == f"{stack.gateway}/connect/start?session={session['session_id']}"
    with CheckedBrowser(stack) as b:
        started = b.http.get(session["connect_url"], headers=injected)
        assert started.status_code == 302, started.text
        nylas_url = started.headers["location"]
        assert nylas_url.startswith(stack.emulator + "/")
        if stack.flavour == "v3":
            assert harness.query_of(nylas_url)["redirect_uri"] == [f"{stack.gateway}/connect/callback"]
        callback_url = b.consent(nylas_url, email=harness.mailbox(), decision="allow")
        assert callback_url.startswith(f"{stack.gateway}/connect/callback?")  # Nylas used ours
        done = b.http.get(callback_url, headers=injected)
        assert_return(stack, done, status="connected")
    for method in ("GET", "DELETE"):
        guard.arm()
        miss = http.request(
            method, "/v1/grants/nobody-" + case, headers=harness.api_headers(stack, **injected)
        )
        assert miss.status_code == 404
        guard.assert_untouched()
    got = http.get(f"/v1/grants/{user}", headers=harness.api_headers(stack, **injected))
    assert got.status_code == 200
    assert urlsplit(str(got.url)).netloc == urlsplit(stack.gateway).netloc
    harness.record("host_header_injection", "TM9", n=5)
