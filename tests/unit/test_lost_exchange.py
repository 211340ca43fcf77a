"""A v3 code exchange that Nylas may have completed without an answer (docs/security.md, "lost exchange").

The adapter tells such a failure (a read timeout, a dropped connection, a 5xx) from one that surely did
nothing (a connect failure, a 4xx); the callback records a LOST# outbox entry for it; the sweeper, once
it is due, lists Nylas's grants created in its window and revokes every one that nobody holds.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from teams_connect.adapters.nylas.http import NylasError
from teams_connect.adapters.nylas.v3 import GRANT_LIST_PAGE
from teams_connect.adapters.store.grants import GrantStore
from teams_connect.adapters.store.outbox import DueLostExchange, lost_key
from teams_connect.domain.revocations import (
    ABANDONED_GRACE_SECONDS,
    BACKOFF,
    LOST_MARGIN_SECONDS,
    Revoker,
    lost_exchange,
)
from teams_connect.errors import ExchangeUnanswered, UpstreamUnavailable

from . import test_flow_beta as beta_support
from .conftest import BETA_BASE, GRANTS, SESSIONS, V3_BASE, Aws, Harness, make_harness
from .test_flow_v3 import GRANT_ID, TOKEN_URL, cookies_of, start

LIST_URL = f"{V3_BASE}/v3/grants"
HELD = "0b7c2d9e-1111-4c1a-9d1e-0f8e7c6b5a49"
ORPHAN = "0b7c2d9e-2222-4c1a-9d1e-0f8e7c6b5a49"


def items(aws: Aws, prefix: str) -> dict[str, dict[str, Any]]:
    found = aws.client.scan(TableName=GRANTS)["Items"]
    return {i["pk"]["S"]: i for i in found if i["pk"]["S"].startswith(prefix)}


def exchange_failing(h: Harness, failure: Any) -> tuple[Any, int, int]:
    """One v3 flow whose code exchange fails with `failure` (an httpx exception or a response):
    (its outcome, when the flow started, when the exchange failed). The exchange is never repeated."""
    with respx.mock() as router:
        route = router.post(TOKEN_URL)
        if isinstance(failure, httpx.Response):
            route.mock(return_value=failure)
        else:
            route.mock(side_effect=failure)
        state, started = start(h)
        started_at = int(h.clock.now)
        h.clock.now += 20  # consent
        outcome = h.flow.complete({"code": "c", "state": state}, cookies_of(started))
        connect_failure = isinstance(failure, httpx.ConnectError | httpx.ConnectTimeout)
        assert route.call_count == (3 if connect_failure else 1)  # only a surely unsent one is retried
    return outcome, started_at, int(h.clock.now)


# --------------------------------------------------------------------------- the adapter's classification
AMBIGUOUS = [
    pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
    pytest.param(httpx.WriteTimeout("slow"), id="write-timeout"),
    pytest.param(httpx.RemoteProtocolError("dropped"), id="dropped"),
    pytest.param(httpx.ReadError("reset"), id="reset"),
    pytest.param(httpx.Response(500, json={"error": "server_error"}), id="500"),
    pytest.param(httpx.Response(502), id="502"),
    pytest.param(httpx.Response(503, json={"error": "temporarily_unavailable"}), id="503"),
]
SURELY_NOTHING = [
    pytest.param(httpx.ConnectError("refused"), "upstream_unavailable", id="connect-error"),
    pytest.param(httpx.ConnectTimeout("no route"), "upstream_unavailable", id="connect-timeout"),
    pytest.param(httpx.PoolTimeout("no connection"), "upstream_unavailable", id="pool-timeout"),
    pytest.param(httpx.Response(429, json={"error": "slow_down"}), "upstream_unavailable", id="429"),
    pytest.param(httpx.Response(400, json={"error": "invalid_grant"}), "grant_invalid", id="400"),
]


@pytest.mark.parametrize("failure", AMBIGUOUS)
def test_an_exchange_that_may_have_reached_nylas_is_unanswered(v3: Harness, failure: Any) -> None:
    outcome, _, _ = exchange_failing(v3, failure)
    assert isinstance(outcome.error, ExchangeUnanswered)
    assert outcome.error.code == "upstream_unavailable"


@pytest.mark.parametrize(("failure", "code"), SURELY_NOTHING)
def test_an_exchange_that_surely_did_nothing_is_not_unanswered(v3: Harness, failure: Any, code: str) -> None:
    outcome, _, _ = exchange_failing(v3, failure)
    assert outcome.error is not None
    assert outcome.error.code == code
    assert not isinstance(outcome.error, ExchangeUnanswered)


@pytest.mark.parametrize(
    ("error", "done"),
    [
        (NylasError(None, "ReadTimeout"), True),
        (NylasError(None, "RemoteProtocolError"), True),
        (NylasError(500), True),
        (NylasError(504), True),
        (NylasError(None, "ConnectError"), False),
        (NylasError(None, "ConnectTimeout"), False),
        (NylasError(None, "deadline_exceeded"), False),
        (NylasError(None, "circuit_open"), False),
        (NylasError(429), False),
        (NylasError(400), False),
        (NylasError(401), False),
    ],
)
def test_which_failures_may_have_been_done_at_nylas(error: NylasError, done: bool) -> None:
    assert error.may_have_been_done is done


# --------------------------------------------------------------------------- the callback's LOST# entry
def test_an_unanswered_exchange_ends_upstream_unavailable_and_records_its_window(
    v3: Harness, aws: Aws
) -> None:
    outcome, started_at, failed_at = exchange_failing(v3, httpx.ReadTimeout("slow"))
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert outcome.error.retryable  # the session is released, as for any transient failure
    (key, item) = items(aws, "LOST#").popitem()
    since, before = started_at - LOST_MARGIN_SECONDS, failed_at + LOST_MARGIN_SECONDS
    assert key.startswith(f"LOST#{since}-{before}-")
    assert item["outbox"] == {"S": "revoke"}  # in the sweeper's `revoke-due` index
    due = before + v3.settings.flow_ttl_seconds + ABANDONED_GRACE_SECONDS
    assert item["due_at"] == {"N": str(due)}
    assert items(aws, "REVOKE#") == {}


def test_an_exchange_that_surely_did_nothing_records_no_lost_exchange(v3: Harness, aws: Aws) -> None:
    outcome, _, _ = exchange_failing(v3, httpx.ConnectError("refused"))
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert items(aws, "LOST#") == {}


class FailingPuts:
    """The DynamoDB client with every PutItem throttled."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_item(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "PutItem")


def test_a_lost_exchange_that_cannot_be_recorded_still_answers_the_browser(v3: Harness, aws: Aws) -> None:
    v3.flow.grants._client = FailingPuts(aws.client)
    outcome, _, _ = exchange_failing(v3, httpx.RemoteProtocolError("dropped"))
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert items(aws, "LOST#") == {}


def test_a_beta_callback_never_records_a_lost_exchange(beta: Harness, aws: Aws) -> None:
    with respx.mock(assert_all_called=False) as router:
        state, started, _ = beta_support.begin(beta, router)
        router.get(f"{BETA_BASE}/connect/grants/{beta_support.GRANT_ID}").mock(
            side_effect=httpx.ReadTimeout("slow")
        )
        outcome = beta.flow.complete(beta_support.callback(state), beta_support.cookies_of(started))
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    assert items(aws, "LOST#") == {}


# --------------------------------------------------------------------------- the sweeper
def grant(grant_id: str, created_at: int, provider: str = "microsoft") -> dict[str, Any]:
    return {"id": grant_id, "provider": provider, "created_at": created_at, "grant_status": "valid"}


class FakeNylasList:
    """`GET /v3/grants` as the OpenAPI describes it: since/before inclusive, provider, limit/offset."""

    def __init__(self, grants: list[dict[str, Any]]) -> None:
        self.grants = grants
        self.queries: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        self.queries.append(query)
        since, before = int(query["since"]), int(query["before"])
        found = [
            g
            for g in self.grants
            if since <= g["created_at"] <= before and g["provider"] == query.get("provider", g["provider"])
        ]
        found.sort(key=lambda g: g["created_at"])
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 10))
        page = found[offset : offset + limit]
        return httpx.Response(200, json={"request_id": "r", "data": page, "limit": limit, "offset": offset})


def record_lost(h: Harness, *, started_at: int, failed_at: int) -> DueLostExchange:
    lost = lost_exchange("ab" * 32, started_at=started_at, failed_at=failed_at, flow_ttl=900)
    h.flow.grants.outbox.remember_lost(lost.key, due=lost.due, now=failed_at)
    return DueLostExchange(lost.key, lost.since, lost.before, 0, lost.due)


def hold(aws: Aws, grant_id: str, owner: str) -> None:
    aws.client.put_item(TableName=GRANTS, Item={"pk": {"S": f"GRANT#{grant_id}"}, "owner": {"S": owner}})


def sweeper(h: Harness) -> Revoker:
    assert h.flow.nylas is not None
    return Revoker(h.flow.grants, h.flow.nylas, clock=h.clock)


def test_the_sweeper_revokes_the_unheld_grants_of_a_due_window_and_keeps_the_held_ones(
    v3: Harness, aws: Aws
) -> None:
    t = int(v3.clock.now)
    lost = record_lost(v3, started_at=t, failed_at=t + 30)
    hold(aws, HELD, "user-1")  # the user retried and connected: Nylas kept the grant's id
    outside = "0b7c2d9e-3333-4c1a-9d1e-0f8e7c6b5a49"
    other_provider = "0b7c2d9e-4444-4c1a-9d1e-0f8e7c6b5a49"
    nylas = FakeNylasList(
        [
            grant(HELD, t + 10),
            grant(ORPHAN, t + 12),
            grant(outside, lost.before + 1),
            grant(other_provider, t + 12, provider="google"),
        ]
    )
    with respx.mock() as router:
        listing = router.get(LIST_URL).mock(side_effect=nylas)
        revoked = router.delete(f"{LIST_URL}/{ORPHAN}").mock(return_value=httpx.Response(200, json={}))
        v3.clock.now = lost.due_at - 1
        assert sweeper(v3).sweep().revoked == 0  # not due: a flow of the window may still complete
        assert listing.call_count == 0
        v3.clock.now = lost.due_at
        report = sweeper(v3).sweep()
    assert (report.revoked, report.failed) == (1, 0)
    assert revoked.call_count == 1
    assert nylas.queries[0]["provider"] == "microsoft"
    assert (int(nylas.queries[0]["since"]), int(nylas.queries[0]["before"])) == (lost.since, lost.before)
    assert items(aws, "LOST#") == {}
    assert items(aws, "REVOKE#") == {}
    assert set(items(aws, "GRANT#")) == {f"GRANT#{HELD}"}


def test_a_window_whose_listing_fails_is_postponed_with_backoff(v3: Harness, aws: Aws) -> None:
    t = int(v3.clock.now)
    lost = record_lost(v3, started_at=t, failed_at=t + 30)
    v3.clock.now = lost.due_at + 5
    with respx.mock() as router:
        router.get(LIST_URL).mock(return_value=httpx.Response(503, json={"error": {"type": "api_error"}}))
        report = sweeper(v3).sweep()
    assert report.failed == 1
    [(key, item)] = items(aws, "LOST#").items()
    assert key == lost.key
    assert item["attempts"] == {"N": "1"}
    assert item["due_at"] == {"N": str(lost.due_at + 5 + BACKOFF[0])}
    # the next attempt lists it again and settles it
    v3.clock.now += BACKOFF[0]
    with respx.mock() as router:
        router.get(LIST_URL).mock(side_effect=FakeNylasList([grant(ORPHAN, t + 1)]))
        router.delete(f"{LIST_URL}/{ORPHAN}").mock(return_value=httpx.Response(200, json={}))
        assert sweeper(v3).sweep().revoked == 1
    assert items(aws, "LOST#") == {}


def test_a_failed_revoke_of_a_listed_orphan_stays_in_the_revoke_outbox(v3: Harness, aws: Aws) -> None:
    t = int(v3.clock.now)
    lost = record_lost(v3, started_at=t, failed_at=t + 30)
    v3.clock.now = lost.due_at
    with respx.mock() as router:
        router.get(LIST_URL).mock(side_effect=FakeNylasList([grant(ORPHAN, t + 1)]))
        router.delete(f"{LIST_URL}/{ORPHAN}").mock(side_effect=httpx.ConnectError("down"))
        assert sweeper(v3).sweep().failed == 1
    assert items(aws, "LOST#") == {}
    assert set(items(aws, "REVOKE#")) == {f"REVOKE#{ORPHAN}"}  # retried with the revoke backoff


def test_the_sweeper_pages_through_a_busy_window(v3: Harness, aws: Aws) -> None:
    t = int(v3.clock.now)
    lost = record_lost(v3, started_at=t, failed_at=t + 30)
    many = [grant(f"held-{i:04d}", t + i % 30) for i in range(GRANT_LIST_PAGE + 7)]
    for g in many:
        hold(aws, g["id"], "someone")
    aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": f"GRANT#{many[-1]['id']}"}})
    nylas = FakeNylasList(many)
    v3.clock.now = lost.due_at
    with respx.mock() as router:
        router.get(LIST_URL).mock(side_effect=nylas)
        revoked = router.delete(f"{LIST_URL}/{many[-1]['id']}").mock(
            return_value=httpx.Response(200, json={})
        )
        report = sweeper(v3).sweep()
    assert report.revoked == 1
    assert revoked.call_count == 1
    assert [int(q["offset"]) for q in nylas.queries] == [0, GRANT_LIST_PAGE]


def test_a_nylas_that_ignores_the_filters_never_widens_what_is_revoked(v3: Harness, aws: Aws) -> None:
    t = int(v3.clock.now)
    lost = record_lost(v3, started_at=t, failed_at=t + 30)
    everything = [grant(ORPHAN, t + 1), grant(HELD, t - 3600), grant("g-google", t + 1, provider="google")]
    v3.clock.now = lost.due_at
    with respx.mock() as router:
        router.get(LIST_URL).mock(
            return_value=httpx.Response(200, json={"data": everything, "limit": 200, "offset": 0})
        )
        revoked = router.delete(f"{LIST_URL}/{ORPHAN}").mock(return_value=httpx.Response(200, json={}))
        assert sweeper(v3).sweep().revoked == 1
    assert revoked.call_count == 1


def test_a_beta_sweeper_keeps_a_lost_exchange_it_cannot_list(aws: Aws) -> None:
    h = make_harness(aws, "beta")
    t = int(h.clock.now)
    lost = record_lost(h, started_at=t, failed_at=t + 30)
    h.clock.now = lost.due_at
    assert sweeper(h).sweep().failed == 1
    assert set(items(aws, "LOST#")) == {lost.key}  # postponed, not dropped


def test_a_lost_key_carries_its_window_and_refuses_anything_else() -> None:
    assert lost_key("abcdef", since=10, before=20) == "LOST#10-20-abcdef"
    with pytest.raises(ValueError, match="hex flow id"):
        lost_key("not hex!", since=10, before=20)
    store = GrantStore(GRANTS, SESSIONS)
    with pytest.raises(ValueError, match="not a lost exchange key"):
        store.outbox.remember_lost("REVOKE#x", due=1, now=1)


def test_the_window_covers_a_grant_made_at_consent(v3: Harness, aws: Aws) -> None:
    """The grant is created when the user consents (between the flow's start and the exchange), not
    when the code is exchanged: the window starts at the flow's start."""
    outcome, started_at, _ = exchange_failing(v3, httpx.ReadTimeout("slow"))
    assert isinstance(outcome.error, UpstreamUnavailable)
    [item] = items(aws, "LOST#").values()
    v3.clock.now = int(item["due_at"]["N"])
    with respx.mock() as router:
        router.get(LIST_URL).mock(side_effect=FakeNylasList([grant(GRANT_ID, started_at + 1)]))
        revoked = router.delete(f"{LIST_URL}/{GRANT_ID}").mock(return_value=httpx.Response(200, json={}))
        assert sweeper(v3).sweep().revoked == 1
    assert revoked.call_count == 1
