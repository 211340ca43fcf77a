"""The DynamoDB part of tools/static_gates.LEAST_PRIVILEGE is what the code really calls.

Each function's use cases run against moto through a client that records every item action (a
transaction counts per item, as IAM authorises it). The recorded set must equal the declared one:
a declared action no path uses is as wrong as a used one that is not declared. The static gate then
makes the template grant exactly the declared set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import respx
from tools.static_gates import LEAST_PRIVILEGE

from teams_connect.adapters.store.listing import GrantListing
from teams_connect.domain.listing import GrantLister
from teams_connect.domain.revocations import Revoker, lost_exchange
from teams_connect.domain.session_status import SessionStatus
from teams_connect.errors import NotConnected

from . import test_flow_beta as beta_support
from .conftest import BETA_BASE, GRANTS, SESSIONS, V3_BASE, Aws, make_harness
from .test_flow_v3 import TOKEN_URL, cookies_of, start, token_response

LOGICAL = {SESSIONS: "SessionsTable", GRANTS: "GrantsTable", "tc-tenants": "TenantsTable"}  # + admin consent
_SINGLE = {
    "get_item": "GetItem",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
}
_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


class Recorder:
    """The DynamoDB client; while `recording`, every item action is noted."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.used: set[tuple[str, str]] = set()
        self.on = False

    @contextmanager
    def recording(self) -> Iterator[set[tuple[str, str]]]:
        self.used = set()
        self.on = True
        try:
            yield self.used
        finally:
            self.on = False

    def _note(self, action: str, resource: str) -> None:
        if self.on:
            self.used.add((f"dynamodb:{action}", resource))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in _SINGLE:

            def single(**kwargs: Any) -> Any:
                self._note(_SINGLE[name], LOGICAL[kwargs["TableName"]])
                return attr(**kwargs)

            return single
        if name == "query":

            def query(**kwargs: Any) -> Any:
                self._note("Query", f"{LOGICAL[kwargs['TableName']]}/index/{kwargs['IndexName']}")
                return attr(**kwargs)

            return query
        if name == "transact_write_items":

            def transact(**kwargs: Any) -> Any:
                for item in kwargs["TransactItems"]:
                    [(kind, spec)] = item.items()
                    self._note(_TRANSACT[kind], LOGICAL[spec["TableName"]])
                return attr(**kwargs)

            return transact
        raise AssertionError(f"unexpected DynamoDB call {name}")


def declared(function: str) -> set[tuple[str, str]]:
    return {(a, r) for a, r in LEAST_PRIVILEGE[function] if a.startswith("dynamodb:")}


def test_every_function_is_granted_exactly_the_item_actions_its_code_performs(aws: Aws) -> None:
    h = make_harness(aws, "v3")
    recorder = Recorder(aws.client)
    h.flow.sessions._client = recorder
    h.flow.grants._client = recorder
    flow = h.flow

    with recorder.recording() as used:
        created = flow.create_session({"user_id": "user-1"})
        with pytest.raises(NotConnected):  # "reconnect" reads the held grant
            flow.create_session({"user_id": "user-1", "reconnect": True})
    assert used == declared("CreateSessionFunction")

    with recorder.recording() as used:
        SessionStatus(flow.sessions, clock=h.clock).read(created.session_id)
    assert used == declared("SessionStatusFunction")

    with recorder.recording() as used:
        flow.start(created.session_id)
    assert used == declared("ConnectStartFunction")

    with respx.mock(assert_all_called=False) as router:
        token = router.post(TOKEN_URL).mock(return_value=token_response("g-1"))
        state, started = start(h, user_id="user-2")
        assert flow.complete({"code": "c", "state": state}, cookies_of(started)).connected
        router.delete(f"{V3_BASE}/v3/grants/g-1").mock(return_value=httpx.Response(400))
        token.mock(return_value=token_response("g-2", "switched@contoso.example"))
        switch_state, switch = start(h, user_id="user-2")
        aws.client.put_item(TableName=GRANTS, Item={"pk": {"S": "GRANT#g-3"}, "owner": {"S": "ghost"}})
        stale_state, stale = start(h, user_id="user-3")
        with recorder.recording() as used:
            # a mailbox switch whose revoke fails (postponed) …
            assert flow.complete({"code": "c", "state": switch_state}, cookies_of(switch)).connected
            # … and the takeover of a stale guard
            token.mock(return_value=token_response("g-3", "stale@contoso.example"))
            assert flow.complete({"code": "c", "state": stale_state}, cookies_of(stale)).connected
    callback_used = set(used)
    # beta: a grant re-authenticated after an earlier flow of the same user failed after consent
    hb = make_harness(aws, "beta")
    hb.flow.sessions._client = recorder
    hb.flow.grants._client = recorder
    with respx.mock(assert_all_called=False) as router:
        first_state, _, _ = beta_support.begin(hb, router)  # consented, never came back
        state, started, _ = beta_support.begin(hb, router)
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            return_value=httpx.Response(200, json=beta_support.grant_body(hb, first_state))
        )
        with recorder.recording() as used:
            assert hb.flow.complete(beta_support.callback(state), beta_support.cookies_of(started)).connected
    assert callback_used | used == declared("ConnectCallbackFunction")

    with recorder.recording() as used:
        flow.get_grant("user-2")
    assert used == declared("GetGrantFunction")

    lister = GrantLister(h.settings, GrantListing(GRANTS, recorder), lambda: b"k" * 48)
    with recorder.recording() as used:
        lister.list({})
        lister.list({"status": "valid"})
        lister.list({"email": "someone@example.com", "status": "valid"})
    assert used == declared("ListGrantsFunction")

    with respx.mock() as router, recorder.recording() as used:
        router.delete(f"{V3_BASE}/v3/grants/g-2").mock(return_value=httpx.Response(200, json={}))
        flow.disconnect("user-2")
    assert used == declared("DeleteGrantFunction")

    assert flow.nylas is not None
    flow.nylas._http.breaker.close()  # type: ignore[attr-defined]
    h.clock.now += 10**6
    flow.grants.outbox.enqueue("g-9", due=int(h.clock.now), now=int(h.clock.now))
    # a lost code exchange whose window holds an unheld grant (g-8) and a held one (g-3: user-3's)
    lost = lost_exchange(
        "ab" * 32, started_at=int(h.clock.now) - 4000, failed_at=int(h.clock.now) - 3000, flow_ttl=900
    )
    flow.grants.outbox.remember_lost(lost.key, due=lost.due, now=lost.since)
    window = [{"id": g, "provider": "microsoft", "created_at": lost.since + 60} for g in ("g-3", "g-8")]
    with respx.mock(assert_all_called=False) as router, recorder.recording() as used:
        router.delete(f"{V3_BASE}/v3/grants/g-9").mock(return_value=httpx.Response(200, json={}))
        router.delete(f"{V3_BASE}/v3/grants/g-8").mock(return_value=httpx.Response(200, json={}))
        router.delete(f"{V3_BASE}/v3/grants/g-1").mock(return_value=httpx.Response(400))
        router.get(f"{V3_BASE}/v3/grants").mock(return_value=httpx.Response(200, json={"data": window}))
        report = Revoker(flow.grants, flow.nylas, clock=h.clock).sweep()
    assert (report.revoked, report.failed) == (2, 1)
    assert used == declared("RevokeSweeperFunction")
