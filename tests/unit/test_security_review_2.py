"""The second security review (shared/reference/security-review-2.md, issue 9), one test per defence.

Each test here fails on the code the review was done against (commit 2813c1f): it reproduces the
reviewer's scenario and asserts the fixed behaviour.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from botocore.exceptions import ClientError

from teams_connect.adapters.store.grants import GrantRecord, mailbox_key
from teams_connect.domain.revocations import ABANDONED_GRACE_SECONDS, Revoker
from teams_connect.errors import Conflict, UpstreamUnavailable

from . import test_flow_beta as beta_support
from .conftest import BETA_BASE, GRANTS, RETURN_TO, V3_BASE, Aws, Harness, make_harness
from .test_flow_v3 import GRANT_ID, TOKEN_URL, cookies_of, start, token_response

OTHER_GRANT = "0b7c2d9e-1111-4c1a-9d1e-0f8e7c6b5a49"


def revoke_url(grant_id: str) -> str:
    return f"{V3_BASE}/v3/grants/{grant_id}"


def grants_items(aws: Aws) -> dict[str, dict[str, Any]]:
    items = aws.client.scan(TableName=GRANTS)["Items"]
    return {item["pk"]["S"]: item for item in items}


#: The owner guard of the mailbox every token answer here names (token_response's address).
MAILBOX = str(mailbox_key("ada@contoso.example"))


def connect(h: Harness, router: respx.Router, grant_id: str, *, user_id: str = "user-1", **extra: str) -> Any:
    route = router.post(TOKEN_URL).mock(return_value=token_response(grant_id))
    state, started = start(h, user_id=user_id, **extra)
    h.clock.now += 5
    outcome = h.flow.complete({"code": "c", "state": state}, cookies_of(started))
    route.mock(side_effect=AssertionError("no second code exchange"))
    return outcome


class FlakyTransactions:
    """The DynamoDB client, with the n-th TransactWriteItems throttled (nothing written)."""

    def __init__(self, inner: Any, fail_on: set[int]) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self.transactions = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self.transactions in self._fail_on:
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "throttled"},
                    "CancellationReasons": [{"Code": "ThrottlingError"}] * len(kwargs["TransactItems"]),
                },
                "TransactWriteItems",
            )
        return self._inner.transact_write_items(**kwargs)


# --------------------------------------------------------------------------- F1: beta grant binding
def test_f1_poc_a_fresh_foreign_grant_with_another_state_is_refused_and_left_alone(beta: Harness) -> None:
    """PoC 1: the attacker completes their own flow with the victim's fresh grant id."""
    with respx.mock(assert_all_called=False) as router:
        state, started, _ = beta_support.begin(beta, router)
        beta.clock.now += 500
        victim = beta_support.grant_body(
            beta, "VICTIMS-STATE", email="ceo@victim.example", created_at=int(beta.clock.now) - 30
        )
        victim["data"]["updated_at"] = int(beta.clock.now) - 30  # type: ignore[index]
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=victim)
        )
        revoke = router.delete(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json={"success": True})
        )
        outcome = beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started))
        assert revoke.call_count == 0  # the victim's grant is not ours to revoke either
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"
    assert beta.flow.grants.get("user-1") is None


def test_f1_an_old_grant_updated_recently_passes_only_for_the_user_who_holds_it(beta: Harness) -> None:
    """Nylas keeps the first login's state on re-authentication: the holder may re-authenticate;
    anyone else presenting that grant id is refused (the contract's account_already_linked)."""
    with respx.mock() as router:
        first_state, started, _ = beta_support.begin(beta, router)
        lookup = router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=beta_support.grant_body(beta, first_state))
        )
        assert beta.flow.complete(
            beta_support.callback(first_state), beta_support.cookies_of(started)
        ).connected
        beta.clock.now += 86_400
        reauth = beta_support.grant_body(beta, first_state, created_at=int(beta.clock.now) - 86_400)
        lookup.mock(return_value=httpx.Response(200, json=reauth))
        state, started, _ = beta_support.begin(beta, router)
        assert beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started)).connected

        created = beta.flow.create_session({"user_id": "mallory", "return_to": RETURN_TO})
        outcome = beta.flow.start(created.session_id)
        state = json.loads(router.routes[0].calls.last.request.content)["state"]
        result = beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(outcome))
    assert result.error is not None
    assert result.error.code == "account_already_linked"
    assert beta.flow.grants.get("mallory") is None
    assert beta.flow.get_grant("user-1").grant_id == beta_support.GRANT_ID


def test_f1_the_grant_email_must_match_the_login_hint(beta: Harness) -> None:
    with respx.mock() as router:
        state, started, _ = beta_support.begin(beta, router, login_hint="Ada@Contoso.example")
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=beta_support.grant_body(beta, state, email="eve@x.example"))
        )
        outcome = beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"


# --------------------------------------------------------------------------- F3: no orphaned grants
def test_f3_a_mailbox_switch_revokes_the_old_grant_and_removes_its_guard(v3: Harness, aws: Aws) -> None:
    with respx.mock() as router:
        assert connect(v3, router, GRANT_ID).connected
        revoke_old = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        assert connect(v3, router, OTHER_GRANT).connected
        assert revoke_old.call_count == 1
    items = grants_items(aws)
    # no guard of the old grant, no outbox entry left; the mailbox guard stays (the same address)
    assert set(items) == {"USER#user-1", f"GRANT#{OTHER_GRANT}", MAILBOX}
    assert v3.flow.get_grant("user-1").grant_id == OTHER_GRANT


def test_f3_a_failed_revoke_is_retried_by_the_sweeper_until_nylas_confirms(v3: Harness, aws: Aws) -> None:
    with respx.mock() as router:
        assert connect(v3, router, GRANT_ID).connected
        revoke_old = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(503))
        assert connect(v3, router, OTHER_GRANT).connected  # the user's switch succeeds anyway
        assert f"REVOKE#{GRANT_ID}" in grants_items(aws)
        assert f"GRANT#{GRANT_ID}" not in grants_items(aws)
        assert v3.flow.nylas is not None
        sweeper = Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock)
        assert sweeper.sweep().failed == 0  # postponed: not due yet
        v3.clock.now += 60
        assert sweeper.sweep().failed == 1  # still down: postponed again
        revoke_old.mock(return_value=httpx.Response(404, json={"error": {"type": "grant.not_found"}}))
        v3.flow.nylas._http.breaker.close()  # type: ignore[attr-defined]  # Nylas is back
        v3.clock.now += 300
        assert sweeper.sweep().revoked == 1  # Nylas's own not-found: already gone
    assert f"REVOKE#{GRANT_ID}" not in grants_items(aws)


def test_f3_a_newer_flow_wins_and_the_losers_grant_is_revoked(v3: Harness) -> None:
    with respx.mock() as router:
        older_state, older = start(v3)
        v3.clock.now += 1
        router.post(TOKEN_URL).mock(return_value=token_response(OTHER_GRANT))
        newer_state, newer = start(v3)
        assert v3.flow.complete({"code": "n", "state": newer_state}, cookies_of(newer)).connected
        router.post(TOKEN_URL).mock(return_value=token_response(GRANT_ID))
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        outcome = v3.flow.complete({"code": "o", "state": older_state}, cookies_of(older))
        assert revoke.call_count == 1
    assert outcome.error is not None
    assert outcome.error.code == "session_used"
    assert v3.flow.get_grant("user-1").grant_id == OTHER_GRANT


def test_f3_a_losing_flow_of_the_same_mailbox_revokes_nothing(v3: Harness) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(TOKEN_URL).mock(return_value=token_response(GRANT_ID))
        older_state, older = start(v3)
        v3.clock.now += 1
        newer_state, newer = start(v3)
        assert v3.flow.complete({"code": "n", "state": newer_state}, cookies_of(newer)).connected
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        outcome = v3.flow.complete({"code": "o", "state": older_state}, cookies_of(older))
        assert revoke.call_count == 0  # the winner holds this very grant
    assert outcome.error is not None
    assert v3.flow.get_grant("user-1").grant_id == GRANT_ID


def test_f3_another_users_mailbox_is_never_revoked(v3: Harness, aws: Aws) -> None:
    with respx.mock(assert_all_called=False) as router:
        assert connect(v3, router, GRANT_ID, user_id="alice").connected
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        outcome = connect(v3, router, GRANT_ID, user_id="bob")
        assert revoke.call_count == 0
        assert outcome.error is not None
        assert outcome.error.code == "account_already_linked"
        v3.clock.now += 3600
        assert v3.flow.nylas is not None
        Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock).sweep()
        assert revoke.call_count == 0
    assert set(grants_items(aws)) == {"USER#alice", f"GRANT#{GRANT_ID}", MAILBOX}


def test_f3_a_verified_grant_whose_flow_never_completes_is_revoked_after_the_flow_expired(
    v3: Harness, aws: Aws
) -> None:
    flaky = FlakyTransactions(aws.client, fail_on={2})
    v3.flow.grants._client = flaky
    with respx.mock() as router:
        outcome = connect(v3, router, GRANT_ID)
        assert outcome.error is not None
        assert outcome.error.code == "upstream_unavailable"
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        assert v3.flow.nylas is not None
        sweeper = Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock)
        sweeper.sweep()
        assert revoke.call_count == 0  # the flow may still be retried
        v3.clock.now += v3.settings.flow_ttl_seconds + ABANDONED_GRACE_SECONDS
        assert sweeper.sweep().revoked == 1
    assert grants_items(aws) == {}


def test_f3_delete_leaves_nothing_behind(v3: Harness, aws: Aws) -> None:
    with respx.mock() as router:
        assert connect(v3, router, GRANT_ID).connected
        router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        assert connect(v3, router, OTHER_GRANT).connected
        router.delete(revoke_url(OTHER_GRANT)).mock(return_value=httpx.Response(200, json={}))
        v3.flow.disconnect("user-1")
    assert grants_items(aws) == {}


# --------------------------------------------------------------------------- F2/F6: phished links, TTLs
def test_f2_expected_email_refuses_another_mailbox_stores_nothing_and_revokes_its_grant(
    v3: Harness, aws: Aws
) -> None:
    with respx.mock() as router:
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        outcome = connect(v3, router, GRANT_ID, expected_email="mallory@saas.example")
        assert revoke.call_count == 1
    assert outcome.error is not None
    assert outcome.error.code == "email_mismatch"
    assert outcome.return_to == RETURN_TO
    assert grants_items(aws) == {}


def test_f2_expected_email_is_compared_casefolded(v3: Harness) -> None:
    with respx.mock() as router:
        assert connect(v3, router, GRANT_ID, expected_email="ADA@Contoso.Example").connected


def test_f2_expected_email_must_be_an_email(v3: Harness) -> None:
    from teams_connect.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        v3.flow.create_session({"user_id": "u", "expected_email": "not an email"})


def test_f6_a_late_click_still_leaves_the_whole_flow_ttl(v3: Harness) -> None:
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())
        created = v3.flow.create_session({"user_id": "user-1", "return_to": RETURN_TO})
        v3.clock.now += v3.settings.session_ttl_seconds - 10  # the link is followed at the last moment
        started = v3.flow.start(created.session_id)
        state = started.location.split("state=")[1].split("&")[0]
        assert started.cookie.max_age == v3.settings.flow_ttl_seconds
        v3.clock.now += 300  # five minutes of sign-in and MFA
        assert v3.flow.complete({"code": "c", "state": state}, cookies_of(started)).connected


# --------------------------------------------------------------------------- F9: a real retry
def test_f9_a_callback_retried_after_a_throttled_write_does_not_redeem_the_code_again(
    v3: Harness, aws: Aws
) -> None:
    flaky = FlakyTransactions(aws.client, fail_on={2})
    v3.flow.grants._client = flaky
    with respx.mock() as router:
        token = router.post(TOKEN_URL).mock(
            side_effect=[token_response(), httpx.Response(400, json={"error": "invalid_grant"})]
        )
        state, started = start(v3)
        first = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
        assert first.error is not None
        assert first.error.code == "upstream_unavailable"
        assert first.clear_cookie is None  # the browser keeps its binding: retryable
        again = v3.flow.complete({"code": "c", "state": state}, cookies_of(started))
        assert token.call_count == 1
    assert again.connected
    assert v3.flow.get_grant("user-1").grant_id == GRANT_ID
    assert set(grants_items(aws)) == {"USER#user-1", f"GRANT#{GRANT_ID}", MAILBOX}  # no deferred revoke


# --------------------------------------------------------------------------- F8: revoke fails closed
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, text="<html>Not Found</html>"),  # a wrong host or a retired one
        httpx.Response(404, json={"error": {"type": "not_found_error", "message": "No such route"}}),
        httpx.Response(404, json={"message": "not found", "type": "not_found_error"}),
    ],
)
@pytest.mark.parametrize("flavour", ["v3", "beta"])
def test_f8_a_foreign_404_on_revoke_keeps_the_record(aws: Aws, answer: httpx.Response, flavour: str) -> None:
    h = make_harness(aws, flavour)
    grant_id = GRANT_ID
    h.flow.grants.save(
        GrantRecord(
            user_id="user-1",
            grant_id=grant_id,
            email="ada@contoso.example",
            provider="microsoft",
            status="valid",
            scopes=(),
            connected_at=1,
            updated_at=1,
            flow_started_at=1,
        )
    )
    path = f"/v3/grants/{grant_id}" if flavour == "v3" else f"/connect/grants/{grant_id}"
    base = V3_BASE if flavour == "v3" else BETA_BASE
    with respx.mock() as router:
        router.delete(base + path).mock(return_value=answer)
        with pytest.raises(UpstreamUnavailable):
            h.flow.disconnect("user-1")
    assert h.flow.get_grant("user-1").grant_id == grant_id


# --------------------------------------------------------------------------- F12: no `conflict` page
def test_f12_a_store_conflict_never_reaches_the_browser(v3: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def conflicted(*args: object, **kwargs: object) -> None:
        raise Conflict()

    monkeypatch.setattr(v3.flow.grants, "save", conflicted)
    with respx.mock() as router:
        outcome = connect(v3, router, GRANT_ID)
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert outcome.error.retryable


def test_f1_a_grant_made_by_an_earlier_flow_of_the_same_user_is_accepted(beta: Harness) -> None:
    """The first attempt failed after consent (the grant exists with that flow's state, which Nylas
    keeps on re-authentication): the user's next flow may link it."""
    with respx.mock(assert_all_called=False) as router:
        first_state, _, _ = beta_support.begin(beta, router)  # consented, never came back
        state, started, _ = beta_support.begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=beta_support.grant_body(beta, first_state))
        )
        assert beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started)).connected


def test_f1_a_grant_made_by_another_users_flow_is_refused(beta: Harness) -> None:
    """The victim's flow (a real state of a retained session) made the grant; the attacker's own flow
    presents it."""
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{BETA_BASE}/connect/auth").mock(
            return_value=httpx.Response(200, json={"success": True, "data": {"url": beta_support.LOGIN_URL}})
        )
        victim = beta.flow.create_session({"user_id": "victim", "return_to": RETURN_TO})
        beta.flow.start(victim.session_id)
        victim_state = json.loads(route.calls.last.request.content)["state"]
        attacker = beta.flow.create_session({"user_id": "mallory", "return_to": RETURN_TO})
        started = beta.flow.start(attacker.session_id)
        state = json.loads(route.calls.last.request.content)["state"]
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=beta_support.grant_body(beta, victim_state))
        )
        outcome = beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "grant_invalid"
    assert beta.flow.grants.get("mallory") is None


def test_f3_a_grant_that_could_not_be_kept_on_the_session_is_still_revoked_later(
    v3: Harness, aws: Aws
) -> None:
    """The write that keeps the verified grant is throttled: the grant is enqueued on its own."""
    flaky = FlakyTransactions(aws.client, fail_on={1})
    v3.flow.grants._client = flaky
    with respx.mock(assert_all_called=False) as router:
        outcome = connect(v3, router, GRANT_ID)
        assert outcome.error is not None
        assert outcome.error.code == "upstream_unavailable"
        revoke = router.delete(revoke_url(GRANT_ID)).mock(return_value=httpx.Response(200, json={}))
        v3.clock.now += v3.settings.flow_ttl_seconds + ABANDONED_GRACE_SECONDS
        assert v3.flow.nylas is not None
        assert Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock).sweep().revoked == 1
        assert revoke.call_count == 1
