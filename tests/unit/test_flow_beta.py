from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from teams_connect.domain.flow import StartOutcome
from teams_connect.errors import ServerError, UpstreamUnavailable

from .conftest import (
    BETA_BASE,
    NYLAS_CLIENT_ID,
    NYLAS_CLIENT_SECRET,
    PUBLIC,
    RETURN_TO,
    SESSIONS,
    Aws,
    Harness,
    make_harness,
)

GRANT_ID = "beta-grant-123"
LOGIN_URL = "https://beta.us.nylas.com/connect/login?id=abc"
BASIC = "Basic " + base64.b64encode(f"{NYLAS_CLIENT_ID}:{NYLAS_CLIENT_SECRET}".encode()).decode()


DEFAULT_SCOPES = [
    "User.Read",
    "offline_access",
    "OnlineMeetings.ReadWrite",
    "openid",
    "profile",
    "EAS.AccessAsUser.All",
    "EWS.AccessAsUser.All",
]


def grant_body(h: Harness, flow_state: str | None = None, **overrides: object) -> dict[str, object]:
    """The grant as Nylas reports it: made by the flow whose `state` is given, a few seconds ago."""
    data: dict[str, object] = {
        "id": GRANT_ID,
        "provider": "microsoft",
        "grant_status": "valid",
        "email": "ada@contoso.example",
        "scope": DEFAULT_SCOPES,
        "state": flow_state,
        "created_at": int(h.clock.now) - 5,
        "updated_at": int(h.clock.now) - 5,
    }
    data.update(overrides)
    return {"data": data}


def begin(h: Harness, router: respx.Router, **body: str) -> tuple[str, StartOutcome, respx.Route]:
    route = router.post(f"{BETA_BASE}/connect/auth").mock(
        return_value=httpx.Response(
            200, json={"success": True, "data": {"url": LOGIN_URL, "id": "abc", "expires_at": 1}}
        )
    )
    created = h.flow.create_session({"user_id": "user-1", "return_to": RETURN_TO, **body})
    outcome = h.flow.start(created.session_id)
    sent = json.loads(route.calls.last.request.content)
    return sent["state"], outcome, route


def cookies_of(outcome: StartOutcome) -> list[str]:
    return [f"{outcome.cookie.name}={outcome.cookie.value}"]


def callback(state: str, **extra: str) -> dict[str, str]:
    return {
        "success": "true",
        "provider": "microsoft",
        "email": "forged@evil.example",
        "grant_id": GRANT_ID,
        "state": state,
        **extra,
    }


def test_beta_start_posts_connect_auth_with_basic_auth(beta: Harness) -> None:
    with respx.mock() as router:
        state, outcome, route = begin(
            beta, router, login_hint="ada@contoso.example", account_id="v2-account-1"
        )
    assert outcome.location == LOGIN_URL
    request = route.calls.last.request
    assert request.headers["authorization"] == BASIC
    body = json.loads(request.content)
    assert body == {
        "provider": "microsoft",
        "redirect_uri": f"{PUBLIC}/connect/callback",
        "expires_in": 900,  # the flow TTL: the login link never outlives the flow
        "state": state,
        "scope": [
            "User.Read",
            "offline_access",
            "OnlineMeetings.ReadWrite",
            "openid",
            "profile",
            "EAS.AccessAsUser.All",
            "EWS.AccessAsUser.All",
        ],
        "login_hint": "ada@contoso.example",
        "account_id": "v2-account-1",
    }


def test_beta_start_failure_leaves_the_link_usable(beta: Harness) -> None:
    created = beta.flow.create_session({"user_id": "user-1", "return_to": RETURN_TO})
    with respx.mock() as router:
        route = router.post(f"{BETA_BASE}/connect/auth").mock(return_value=httpx.Response(503))
        with pytest.raises(UpstreamUnavailable) as err:
            beta.flow.start(created.session_id)
        assert err.value.return_to == RETURN_TO
        assert route.call_count == 3
        route.mock(
            return_value=httpx.Response(200, json={"success": True, "data": {"url": "javascript:alert(1)"}})
        )
        with pytest.raises(ServerError):
            beta.flow.start(created.session_id)
        route.mock(return_value=httpx.Response(200, json={"success": True, "data": {"url": LOGIN_URL}}))
        assert beta.flow.start(created.session_id).location == LOGIN_URL


def test_beta_callback_verifies_the_grant_and_stores_what_nylas_reports(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        beta.client.calls.clear()
        lookup = router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json=grant_body(beta, state))
        )
        outcome = beta.flow.complete(callback(state), cookies_of(started))
        assert lookup.call_count == 1
        assert lookup.calls.last.request.headers["authorization"] == BASIC
    assert outcome.connected
    assert outcome.return_to == RETURN_TO
    assert beta.client.calls == ["update_item", "transact_write_items", "transact_write_items"]
    record = beta.flow.get_grant("user-1")
    assert record.email == "ada@contoso.example"  # never the query's claim
    assert record.scopes == tuple(DEFAULT_SCOPES)


@pytest.mark.parametrize(
    "overrides",
    [
        {"provider": "google"},
        {"grant_status": "invalid"},
        {"created_at": 1, "updated_at": 2},  # an old grant: not from this flow
        {"email": None},
        {"id": "another-grant"},
        {"id": None},  # the id must be in the answer
        {"updated_at": 1_800_000_000 + 3600},  # a stamp from the future
        {"scope": ["User.Read"]},  # the required scopes were not granted
        {"scope": None},
        {"state": "another-flows-state"},  # made by another flow, not this user's grant
        {"state": None},  # no state: fail closed
    ],
)
def test_beta_grant_failing_verification_is_grant_invalid(
    beta: Harness, overrides: dict[str, object]
) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json=grant_body(beta, state, **overrides))
        )
        outcome = beta.flow.complete(callback(state), cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"
    assert beta.flow.grants.get("user-1") is None


def test_beta_freshness_allows_sixty_seconds_of_skew(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        now = int(beta.clock.now)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(
                200, json=grant_body(beta, state, created_at=now - 1000, updated_at=now - 60)
            )
        )
        assert beta.flow.complete(callback(state), cookies_of(started)).connected


def test_beta_callback_that_is_not_a_callback_is_refused_before_any_io(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        beta.client.calls.clear()
        outcome = beta.flow.complete(callback(state, success="yes"), cookies_of(started))
        assert router.calls.call_count == 1  # only the earlier POST /connect/auth
    assert beta.client.calls == []
    assert outcome.error is not None
    assert outcome.error.code == "session_invalid"
    assert outcome.error.status == 400
    assert outcome.return_to is None


@pytest.mark.parametrize(
    "query",
    [
        {"provider": "google"},
        {"grant_id": "../../v3/applications"},
        {"grant_id": ""},
    ],
)
def test_beta_forged_callback_fields_end_the_flow_with_a_redirect_not_a_5xx_page(
    beta: Harness, query: dict[str, str]
) -> None:
    """Before: `grant_invalid` was raised before the session was read, so the browser got an HTML
    page with status 502. Now the flow ends with grant_invalid at the session's return_to, and
    Nylas is never asked about the forged grant id."""
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        outcome = beta.flow.complete(callback(state, **query), cookies_of(started))
        assert router.calls.call_count == 1  # only the earlier POST /connect/auth
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"
    assert outcome.return_to == RETURN_TO
    item = beta.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": state.split(".")[0]}})[
        "Item"
    ]
    assert item["status"]["S"] == "failed"


def test_beta_query_email_is_ignored(beta: Harness) -> None:
    """The query's email is browser input and unused: an unencoded `+` (a space) must not fail."""
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json=grant_body(beta, state))
        )
        outcome = beta.flow.complete(callback(state, email="ada x@contoso.example"), cookies_of(started))
    assert outcome.connected


def test_beta_success_false_is_access_denied(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        outcome = beta.flow.complete(
            {"success": "false", "state": state, "code": "whatever"}, cookies_of(started)
        )
        assert router.calls.call_count == 1
    assert outcome.error is not None
    assert outcome.error.code == "access_denied"
    assert outcome.return_to == RETURN_TO
    item = beta.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": state.split(".")[0]}})[
        "Item"
    ]
    assert item["status"]["S"] == "failed"


def test_beta_grant_lookup_404_and_401_rotation(aws: Aws) -> None:
    h = make_harness(aws, "beta")
    with respx.mock() as router:
        state, started, _ = begin(h, router)
        lookup = router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            side_effect=[
                httpx.Response(401, json={"message": "bad auth", "type": "api_error"}),
                httpx.Response(200, json=grant_body(h, state)),
            ]
        )
        assert h.flow.complete(callback(state), cookies_of(started)).connected
        assert lookup.call_count == 2  # the secret was re-read once and the call retried once
    with respx.mock() as router:
        state, started, _ = begin(h, router)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(404, json={"success": False, "message": "not found"})
        )
        outcome = h.flow.complete(callback(state), cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"


def test_beta_disconnect_revokes_with_basic_auth(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json=grant_body(beta, state))
        )
        assert beta.flow.complete(callback(state), cookies_of(started)).connected
        revoke = router.delete(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json={"success": True})
        )
        beta.flow.disconnect("user-1")
        assert revoke.calls.last.request.headers["authorization"] == BASIC
    assert beta.flow.grants.get("user-1") is None


def test_beta_custom_scopes_and_expiry(aws: Aws) -> None:
    h = make_harness(
        aws, "beta", NYLAS_SCOPES="User.Read,OnlineMeetings.ReadWrite", BETA_AUTH_EXPIRES_IN="600"
    )
    with respx.mock() as router:
        _, outcome, route = begin(h, router)
    body = json.loads(route.calls.last.request.content)
    assert body["scope"] == ["User.Read", "OnlineMeetings.ReadWrite"]
    assert body["expires_in"] == 600
    assert parse_qs(urlsplit(outcome.location).query) == {"id": ["abc"]}


@pytest.mark.parametrize("grant_id", [GRANT_ID + "\n", GRANT_ID + "\r\n", "\n" + GRANT_ID])
def test_beta_grant_id_with_a_newline_is_refused_before_any_io(beta: Harness, grant_id: str) -> None:
    """`GRANT_ID_RE` used `$`, which matches before a trailing newline: `GET /connect/grants/<id>\\n`
    was sent. Now Nylas is never called with it and the flow ends with grant_invalid."""
    with respx.mock(assert_all_called=False) as router:
        state, outcome, _ = begin(beta, router)
        lookup = router.get(url__startswith=f"{BETA_BASE}/connect/grants/").mock(
            return_value=httpx.Response(200, json={"success": True, "data": grant_body(beta, state)})
        )
        result = beta.flow.complete(callback(state, grant_id=grant_id), cookies_of(outcome))
    assert result.error is not None
    assert result.error.code == "grant_invalid"
    assert result.return_to == RETURN_TO
    assert lookup.call_count == 0
