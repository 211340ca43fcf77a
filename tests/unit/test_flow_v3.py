from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from teams_connect.domain.flow import StartOutcome, grant_json
from teams_connect.errors import (
    InvalidRequest,
    NotFound,
    ReturnToNotAllowed,
    SessionExpired,
    SessionInvalid,
    SessionUsed,
    UpstreamUnavailable,
)
from teams_connect.rules import security

from .conftest import (
    API_KEY,
    GRANTS,
    NYLAS_API_KEY,
    NYLAS_CLIENT_ID,
    PUBLIC,
    RETURN_TO,
    SESSIONS,
    V3_BASE,
    Aws,
    Harness,
    log_text,
    make_harness,
)

GRANT_ID = "8a5a1d6e-2f3b-4c1a-9d1e-0f8e7c6b5a49"
TOKEN_URL = f"{V3_BASE}/v3/connect/token"


def token_response(grant_id: str = GRANT_ID, email: str = "ada@contoso.example") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": "at-secret",
            "expires_in": 3600,
            "id_token": "idt",
            "email": email,
            "scope": "Calendars.ReadWrite OnlineMeetings.ReadWrite",
            "token_type": "Bearer",
            "grant_id": grant_id,
            "provider": "microsoft",
        },
        headers={"X-Request-Id": "req-token-1"},
    )


def start(
    h: Harness, user_id: str = "user-1", return_to: str | None = RETURN_TO, **extra: str
) -> tuple[str, StartOutcome]:
    body: dict[str, str] = {"user_id": user_id, **extra}
    if return_to is not None:
        body["return_to"] = return_to
    created = h.flow.create_session(body)
    outcome = h.flow.start(created.session_id)
    state = parse_qs(urlsplit(outcome.location).query)["state"][0]
    return state, outcome


def cookies_of(outcome: StartOutcome) -> list[str]:
    return ["other=1", f"{outcome.cookie.name}={outcome.cookie.value}"]


def test_create_session_validates_and_returns_a_connect_url(v3: Harness) -> None:
    created = v3.flow.create_session(
        {"user_id": "user-1", "return_to": RETURN_TO, "login_hint": "ada@contoso.example"}
    )
    assert security.SESSION_ID_RE.match(created.session_id)
    assert created.connect_url == f"{PUBLIC}/connect/start?session={created.session_id}"
    assert created.to_json()["expires_at"] == "2027-01-15T08:10:00Z"
    assert created.expires_at == int(v3.clock.now) + 600
    for body in [
        [],
        "x",
        {},
        {"user_id": ""},
        {"user_id": "u", "extra": 1},
        {"user_id": "u", "login_hint": "nope"},
        {"user_id": "u", "account_id": "a b"},
        {"user_id": "u", "login_hint": "a@b.c" + "x" * 400},
    ]:
        with pytest.raises(InvalidRequest):
            v3.flow.create_session(body)
    with pytest.raises(ReturnToNotAllowed):
        v3.flow.create_session({"user_id": "u", "return_to": "https://evil.example/"})


def test_v3_start_builds_the_auth_url_locally_with_one_dynamodb_call(v3: Harness) -> None:
    created = v3.flow.create_session(
        {"user_id": "user-1", "return_to": RETURN_TO, "login_hint": "ada@contoso.example"}
    )
    v3.client.calls.clear()
    with respx.mock() as router:  # any Nylas call would fail: none is mocked
        outcome = v3.flow.start(created.session_id)
        assert router.calls.call_count == 0
    assert v3.client.calls == ["update_item"]
    url = urlsplit(outcome.location)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{V3_BASE}/v3/connect/auth"
    q = parse_qs(url.query)
    assert {k: v[0] for k, v in q.items() if k not in ("state", "code_challenge")} == {
        "client_id": NYLAS_CLIENT_ID,
        "redirect_uri": f"{PUBLIC}/connect/callback",
        "response_type": "code",
        "provider": "microsoft",
        "login_hint": "ada@contoso.example",
        "access_type": "online",
        "code_challenge_method": "S256",
    }
    assert "scope" not in q
    state = q["state"][0]
    assert security.session_id_from_state(state) == created.session_id
    item = v3.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": created.session_id}})[
        "Item"
    ]
    assert q["code_challenge"][0] == security.pkce_challenge(item["code_verifier"]["S"])
    assert item["state_hash"]["S"] == security.sha256_hex(state)
    assert state not in json.dumps(item)
    assert item["binding_hash"]["S"] == security.sha256_hex(outcome.cookie.value)
    assert outcome.cookie.name == "__Host-tc_" + security.sha256_hex(state)[:8]
    assert outcome.cookie.secure
    assert outcome.cookie.max_age == 900  # the flow TTL, not what is left of the link
    with pytest.raises(SessionUsed):
        v3.flow.start(created.session_id)


def test_v3_scopes_are_space_joined_when_configured(aws: Aws) -> None:
    h = make_harness(aws, "v3", NYLAS_SCOPES="Calendars.ReadWrite,OnlineMeetings.ReadWrite")
    _, outcome = start(h)
    assert parse_qs(urlsplit(outcome.location).query)["scope"] == [
        "Calendars.ReadWrite OnlineMeetings.ReadWrite"
    ]


def test_start_refuses_bad_ids_and_expired_sessions(v3: Harness) -> None:
    for bad in [None, "", "short", "a" * 44, "a" * 42 + "!"]:
        with pytest.raises(SessionInvalid):
            v3.flow.start(bad)
    with pytest.raises(SessionInvalid):
        v3.flow.start(security.new_session_id())
    created = v3.flow.create_session({"user_id": "u", "return_to": RETURN_TO})
    v3.clock.now += 600
    with pytest.raises(SessionExpired) as err:
        v3.flow.start(created.session_id)
    assert err.value.return_to == RETURN_TO


def test_v3_callback_happy_path_one_nylas_call_three_dynamodb_calls(
    v3: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    state, started = start(v3)
    v3.client.calls.clear()
    with respx.mock() as router:
        route = router.post(TOKEN_URL).mock(return_value=token_response())
        outcome = v3.flow.complete({"code": "one-time-code", "state": state}, cookies_of(started))
        assert router.calls.call_count == 1
    assert outcome.connected
    assert outcome.return_to == RETURN_TO
    assert outcome.clear_cookie is not None
    assert outcome.clear_cookie.name == started.cookie.name
    # consume, keep the verified grant (+ deferred revoke entry), store the grant
    assert v3.client.calls == ["update_item", "transact_write_items", "transact_write_items"]
    sent = json.loads(route.calls.last.request.content)
    item = v3.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": state.split(".")[0]}})[
        "Item"
    ]
    assert sent == {
        "client_id": NYLAS_CLIENT_ID,
        "client_secret": NYLAS_API_KEY,
        "code": "one-time-code",
        "redirect_uri": f"{PUBLIC}/connect/callback",
        "code_verifier": item["code_verifier"]["S"],
        "grant_type": "authorization_code",
    }
    assert item["status"]["S"] == "completed"
    assert grant_json(v3.flow.get_grant("user-1")) == {
        "user_id": "user-1",
        "grant_id": GRANT_ID,
        "email": "ada@contoso.example",
        "provider": "microsoft",
        "status": "valid",
        "status_changed_at": "2027-01-15T08:00:00Z",
        "scopes": ["Calendars.ReadWrite", "OnlineMeetings.ReadWrite"],
        "missing_scopes": [],
        "teams": "unknown",
        "connected_at": "2027-01-15T08:00:00Z",
        "updated_at": "2027-01-15T08:00:00Z",
        "tenant_id": None,  # this harness looks no tenant up (build_flow: with_tenants)
        "metadata": {},
    }
    logs = log_text(caplog)
    for secret in (
        state,
        "one-time-code",
        NYLAS_API_KEY,
        started.cookie.value,
        item["code_verifier"]["S"],
        "at-secret",
    ):
        assert secret not in logs
    assert "req-token-1" in logs


def test_replay_by_the_same_browser_is_idempotent_and_by_another_is_refused(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected
        again = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
        other = v3.flow.complete({"code": "c", "state": state}, [])
        assert router.calls.call_count == 1
    assert again.connected
    assert again.return_to == RETURN_TO
    assert other.error is not None
    assert other.error.code == "browser_mismatch"
    assert other.return_to == RETURN_TO


def test_browser_mismatch_does_not_consume_so_the_real_browser_finishes(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        for cookies in ([], [f"{started.cookie.name}=" + "x" * 43], [f"{started.cookie.name}=bad"]):
            outcome = v3.flow.complete({"code": "c", "state": state}, cookies)
            assert outcome.error is not None
            assert outcome.error.code == "browser_mismatch"
        assert router.calls.call_count == 0
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"code": "c"},
        {"code": "c", "state": "garbage"},
        {"code": "c", "state": "a" * 43 + "." + "b" * 43},  # well-formed, unknown
    ],
)
def test_unidentifiable_callbacks_get_session_invalid_without_redirect(
    v3: Harness, query: dict[str, str]
) -> None:
    outcome = v3.flow.complete(query, [])
    assert outcome.error is not None
    assert outcome.error.code == "session_invalid"
    assert outcome.return_to is None


def test_wrong_state_for_a_real_session_is_session_invalid(v3: Harness) -> None:
    state, started = start(v3)
    forged = state.split(".")[0] + "." + "Z" * 43
    outcome = v3.flow.complete({"code": "c", "state": forged}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "session_invalid"
    assert outcome.return_to is None


def test_access_denied_consumes_without_calling_nylas(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        outcome = v3.flow.complete(
            {"error": "access_denied", "error_description": "<script>x</script>", "state": state},
            cookies_of(started),
        )
        assert router.calls.call_count == 0
    assert outcome.error is not None
    assert outcome.error.code == "access_denied"
    assert outcome.return_to == RETURN_TO
    again = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert again.error is not None
    assert again.error.code == "session_used"


def test_invalid_grant_is_terminal(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(
            return_value=httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "Code verifier challenge failed"}
            )
        )
        outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"
    assert v3.flow.grants.get("user-1") is None


def test_upstream_failure_leaves_the_session_retryable(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        route = router.post(TOKEN_URL).mock(side_effect=[httpx.Response(503), token_response()])
        first = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
        assert route.call_count == 1  # never retried blindly
        assert first.error is not None
        assert first.error.code == "upstream_unavailable"
        assert first.return_to == RETURN_TO
        second = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert second.connected


def test_a_retryable_end_keeps_the_binding_cookie_and_a_terminal_one_clears_it(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(side_effect=[httpx.Response(503)])
        retryable = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert retryable.error is not None
    assert retryable.error.code == "upstream_unavailable"
    assert retryable.clear_cookie is None
    denied = v3.flow.complete({"error": "access_denied", "state": state}, cookies_of(started))
    assert denied.error is not None
    assert denied.error.code == "access_denied"
    assert denied.clear_cookie is not None
    assert denied.clear_cookie.name == started.cookie.name
    assert denied.clear_cookie.max_age == 0


@pytest.mark.parametrize(
    "query",
    [{}, {"code": ""}, {"code": "abc\n"}, {"code": "a b"}],
    ids=["no-code", "empty", "trailing-newline", "space"],
)
def test_a_callback_without_a_usable_code_is_session_invalid_and_consumes_nothing(
    v3: Harness, query: dict[str, str]
) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        outcome = v3.flow.complete({**query, "state": state}, cookies_of(started))
        assert router.calls.call_count == 0
    assert outcome.error is not None
    assert outcome.error.code == "session_invalid"
    assert outcome.return_to is None
    item = v3.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": state.split(".")[0]}})
    assert item["Item"]["status"]["S"] == "started"


def test_secrets_unavailable_at_the_callback_changes_nothing(
    v3: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, started = start(v3)

    def unavailable(*_args: object, **_kwargs: object) -> str:
        raise UpstreamUnavailable()

    monkeypatch.setattr(v3.flow.nylas, "client_id", unavailable)
    outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert outcome.clear_cookie is None
    item = v3.client._inner.get_item(TableName=SESSIONS, Key={"session_id": {"S": state.split(".")[0]}})
    assert item["Item"]["status"]["S"] == "started"
    monkeypatch.undo()
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected


def test_dynamodb_failure_on_the_grant_write_is_retryable(
    v3: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    state, started = start(v3)
    real = v3.client._inner.transact_write_items

    def throttled(**_: object) -> None:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems"
        )

    monkeypatch.setattr(v3.client._inner, "transact_write_items", throttled)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        first = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
        assert first.error is not None
        assert first.error.code == "upstream_unavailable"
        monkeypatch.setattr(v3.client._inner, "transact_write_items", real)
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected


def test_mailbox_linked_to_another_user_is_refused(v3: Harness) -> None:
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        state, started = start(v3, user_id="alice")
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected
        state, started = start(v3, user_id="bob")
        outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "account_already_linked"
    assert v3.flow.get_grant("alice").grant_id == GRANT_ID
    with pytest.raises(NotFound):
        v3.flow.get_grant("bob")


def test_reconnecting_the_same_user_replaces_the_record(v3: Harness) -> None:
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(side_effect=[token_response(), token_response(email="ada@new.example")])
        for _ in range(2):
            state, started = start(v3)
            v3.clock.now += 10
            assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected
    record = v3.flow.get_grant("user-1")
    assert record.email == "ada@new.example"


def test_expired_session_at_callback(v3: Harness) -> None:
    state, started = start(v3)
    v3.clock.now += 900  # the flow TTL, counted from start
    outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "session_expired"
    assert outcome.return_to == RETURN_TO


def test_session_without_return_to_ends_on_a_page(v3: Harness) -> None:
    state, started = start(v3, return_to=None)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.connected
    assert outcome.return_to is None


def test_malformed_token_response_without_grant_is_a_server_error(v3: Harness) -> None:
    state, started = start(v3)
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=httpx.Response(200, json={"access_token": "x"}))
        outcome = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "server_error"
    assert v3.flow.grants.get("user-1") is None


def test_mix_up_is_refused(aws: Aws) -> None:
    h = make_harness(aws, "v3")
    state, started = start(h)
    other = make_harness(aws, "v3", NYLAS_REGION="eu")  # the deployment changed region mid-flow
    with respx.mock() as router:
        outcome = other.flow.complete({"code": "c", "state": state}, cookies_of(started))
        assert router.calls.call_count == 0
    assert outcome.error is not None
    assert outcome.error.code == "server_error"


def test_disconnect_revokes_then_deletes(v3: Harness) -> None:
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        state, started = start(v3)
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected
        revoke = router.delete(f"{V3_BASE}/v3/grants/{GRANT_ID}").mock(
            side_effect=[httpx.ConnectError("down")] * 3
            + [httpx.Response(404, json={"error": {"type": "grant.not_found"}})]
        )
        with pytest.raises(UpstreamUnavailable):
            v3.flow.disconnect("user-1")
        assert v3.flow.get_grant("user-1").grant_id == GRANT_ID  # the record stays
        v3.flow.disconnect("user-1")  # 404 at Nylas: already gone, fine
        assert revoke.calls.last.request.headers["authorization"] == f"Bearer {NYLAS_API_KEY}"
    with pytest.raises(NotFound):
        v3.flow.get_grant("user-1")
    assert "Item" not in v3.client._inner.get_item(TableName=GRANTS, Key={"pk": {"S": f"GRANT#{GRANT_ID}"}})
    with pytest.raises(NotFound):
        v3.flow.disconnect("user-1")


def test_authenticate_uses_every_key_of_the_secret(v3: Harness) -> None:
    v3.flow.authenticate(f"Bearer {API_KEY}")
    from teams_connect.errors import Unauthorized

    with pytest.raises(Unauthorized):
        v3.flow.authenticate("Bearer wrong-key-0123456789")


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "\ud800"},
        {"user_id": "u", "login_hint": "\udfff@contoso.example"},
        {"user_id": "u", "login_hint": "ada@contoso.example\n"},
        {"user_id": "u", "account_id": "acc-1\n"},
    ],
)
def test_create_session_refuses_unencodable_or_newline_terminated_values(v3: Harness, body: object) -> None:
    """Lone surrogates reached DynamoDB (a 500); `$` let a trailing newline through the patterns."""
    calls_before = len(v3.client.calls)
    with pytest.raises(InvalidRequest):
        v3.flow.create_session(body)
    assert len(v3.client.calls) == calls_before
