from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from teams_connect.errors import ServerError, UpstreamUnavailable
from teams_connect.flow import StartOutcome

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


def grant_body(h: Harness, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": GRANT_ID,
        "provider": "microsoft",
        "grant_status": "valid",
        "email": "ada@contoso.example",
        "scope": ["User.Read", "OnlineMeetings.ReadWrite"],
        "created_at": int(h.clock.now) - 86400,
        "updated_at": int(h.clock.now) + 5,
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
        "expires_in": 43200,
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
            return_value=httpx.Response(200, json=grant_body(beta))
        )
        outcome = beta.flow.complete(callback(state), cookies_of(started))
        assert lookup.call_count == 1
        assert lookup.calls.last.request.headers["authorization"] == BASIC
    assert outcome.connected
    assert outcome.return_to == RETURN_TO
    assert beta.client.calls == ["update_item", "transact_write_items"]
    record = beta.flow.get_grant("user-1")
    assert record.email == "ada@contoso.example"  # never the query's claim
    assert record.scopes == ("User.Read", "OnlineMeetings.ReadWrite")


@pytest.mark.parametrize(
    "overrides",
    [
        {"provider": "google"},
        {"grant_status": "invalid"},
        {"created_at": 1, "updated_at": 2},  # an old grant: not from this flow
        {"email": None},
        {"id": "another-grant"},
    ],
)
def test_beta_grant_failing_verification_is_grant_invalid(
    beta: Harness, overrides: dict[str, object]
) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{GRANT_ID}").mock(
            return_value=httpx.Response(200, json=grant_body(beta, **overrides))
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
                200, json=grant_body(beta, created_at=now - 1000, updated_at=now - 60)
            )
        )
        assert beta.flow.complete(callback(state), cookies_of(started)).connected


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"success": "yes"}, "session_invalid"),  # not a callback shape Nylas sends at all
        ({"provider": "google"}, "grant_invalid"),
        ({"grant_id": "../../v3/applications"}, "grant_invalid"),
        ({"grant_id": ""}, "grant_invalid"),
        ({"email": "<script>@x"}, "grant_invalid"),
    ],
)
def test_beta_callback_syntax_is_checked_before_any_io(
    beta: Harness, query: dict[str, str], code: str
) -> None:
    with respx.mock() as router:
        state, started, _ = begin(beta, router)
        beta.client.calls.clear()
        outcome = beta.flow.complete(callback(state, **query), cookies_of(started))
        assert router.calls.call_count == 1  # only the earlier POST /connect/auth
    assert beta.client.calls == []
    assert outcome.error is not None
    assert outcome.error.code == code
    assert outcome.return_to is None


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
                httpx.Response(200, json=grant_body(h)),
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
            return_value=httpx.Response(200, json=grant_body(beta))
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
    """`GRANT_ID_RE` used `$`, which matches before a trailing newline: the session was consumed and
    `GET /connect/grants/<id>\\n` was sent. Now the callback is refused before any I/O."""
    with respx.mock(assert_all_called=False) as router:
        state, outcome, _ = begin(beta, router)
        lookup = router.get(url__startswith=f"{BETA_BASE}/connect/grants/").mock(
            return_value=httpx.Response(200, json={"success": True, "data": grant_body(beta)})
        )
        calls_before = len(beta.client.calls)
        result = beta.flow.complete(callback(state, grant_id=grant_id), cookies_of(outcome))
    assert result.error is not None
    assert result.error.code == "grant_invalid"
    assert result.return_to is None  # nothing was consumed, so nothing identified the session
    assert lookup.call_count == 0
    assert len(beta.client.calls) == calls_before  # no DynamoDB call either
