"""The third security review (shared/reference/security-review-3.md) and issue 19's ties, one test per
defence. Each test fails on the code the review was done against (commit 2eb86f7): it reproduces the
reviewer's scenario (or the issue's measurement) and asserts the fixed behaviour."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
import respx

from teams_connect.adapters.nylas.http import NylasError, NylasHttp, counts_as_outage
from teams_connect.adapters.store.notifications import NotificationStore
from teams_connect.domain.webhooks import WebhookService, challenge

from .conftest import GRANTS, Aws
from .test_webhooks import REQUIRED, SECRET, T0, Secrets, note, post, record, seed


class Nylas:
    """What Nylas says of each grant (the webhook's `read_grant`), and how often it was asked."""

    def __init__(self, **states: str) -> None:
        self.states = states
        self.asked: list[str] = []

    def __call__(self, grant_id: str) -> tuple[str, tuple[str, ...] | None]:
        self.asked.append(grant_id)
        state = self.states[grant_id]
        if state == "down":
            from teams_connect.errors import UpstreamUnavailable

            raise UpstreamUnavailable()
        return state, None


def tie_service(aws: Aws, nylas: Nylas, now: float = T0 + 500) -> WebhookService:
    ticks = iter(range(0, 10_000, 100))
    return WebhookService(
        store=NotificationStore(GRANTS, aws.client),
        load_secrets=Secrets(SECRET),
        required_scopes=REQUIRED,
        read_grant=nylas,
        clock=lambda: now,
        monotonic=lambda: float(next(ticks)),
    )


def status_of(answer: Any) -> str:
    return str(json.loads(answer.body)["status"])


# --------------------------------------------------------------------------- issue 19, item 1: ties
def test_connect_then_expire_in_the_same_second_ends_expired(aws: Aws) -> None:
    """The issue's measurement: the callback wrote at T0, Nylas expired the grant in that second."""
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "invalid"})
    svc = tie_service(aws, nylas)
    assert status_of(svc.handle(post(note("grant.expired", T0)))) == "applied"
    assert nylas.asked == ["g-1"]
    assert (record(aws).status, record(aws).status_changed_at) == ("expired", T0)


def test_a_same_second_notification_nylas_contradicts_changes_nothing(aws: Aws) -> None:
    """A reconnect at T0 and an expiry notification of T0 that came before it: Nylas says valid."""
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "valid"})
    assert status_of(tie_service(aws, nylas).handle(post(note("grant.expired", T0)))) == "applied"
    assert record(aws).status == "valid"


def test_two_notifications_in_one_second_end_as_nylas_says(aws: Aws) -> None:
    for order in (("grant.expired", "grant.updated"), ("grant.updated", "grant.expired")):
        aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": "USER#u1"}})
        aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-1"}})
        seed(aws, at=T0)
        nylas = Nylas(**{"g-1": "valid"})  # re-authenticated: the grant.updated came last
        svc = tie_service(aws, nylas)
        for kind in order:
            svc.handle(post(note(kind, T0 + 7)))
        assert record(aws).status == "valid", order
        nylas.states["g-1"] = "invalid"  # and the other way round
        svc.handle(post(note("grant.expired", T0 + 7)))
        assert record(aws).status == "expired", order


def test_a_gone_grant_reads_revoked_and_nylas_down_is_503_and_changes_nothing(aws: Aws) -> None:
    seed(aws, at=T0)
    down = Nylas(**{"g-1": "down"})
    answer = tie_service(aws, down).handle(post(note("grant.deleted", T0)))
    assert answer.status == 503  # Nylas redelivers
    assert record(aws).status == "valid"
    gone = Nylas(**{"g-1": "gone"})
    assert status_of(tie_service(aws, gone).handle(post(note("grant.deleted", T0)))) == "applied"
    assert record(aws).status == "revoked"


def test_a_duplicate_in_the_same_second_never_asks_nylas(aws: Aws) -> None:
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "invalid"})
    svc = tie_service(aws, nylas)
    body = note("grant.expired", T0, nid="n-1")
    assert status_of(svc.handle(post(body))) == "applied"
    assert status_of(svc.handle(post(body))) == "duplicate"
    assert nylas.asked == ["g-1"]


def test_g3_a_future_time_cannot_pin_the_record(aws: Aws) -> None:
    """Review 3, G3 step 5-6: `time=99999999999` must not make every later genuine notification stale."""
    seed(aws, at=T0)
    now = T0 + 500
    nylas = Nylas(**{"g-1": "valid"})
    svc = tie_service(aws, nylas, now=now)
    assert status_of(svc.handle(post(note("grant.updated", 99_999_999_999)))) == "applied"
    assert nylas.asked == ["g-1"]  # a future stamp orders nothing: Nylas decides
    assert record(aws).notified_at == now  # recorded as of now, never as of the future
    # The genuine expiry that follows is applied.
    assert status_of(svc.handle(post(note("grant.expired", now + 1)))) == "applied"
    assert record(aws).status == "expired"


# --------------------------------------------------------------------------- G3: the previous secret expires
def test_g3_the_rotated_out_webhook_secret_stops_working_after_the_overlap(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from teams_connect.adapters import secrets as tc_secrets
    from teams_connect.config import Settings

    now = 1_800_000_000.0
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"wh-{now}",
        SecretString=json.dumps(
            {
                "webhook_id": "w",
                "webhook_secret": "new-secret-0123",
                "previous_webhook_secret": "old-secret-0123",
                "previous_expires_at": int(now) + 3600,
            }
        ),
    )["ARN"]
    settings = Settings.from_env(aws.env(WEBHOOK_SECRET_ARN=arn))
    assert tc_secrets.webhook_secrets(settings, now=lambda: now) == ("new-secret-0123", "old-secret-0123")
    assert tc_secrets.webhook_secrets(settings, now=lambda: now + 3601) == ("new-secret-0123",)


def test_g3_a_previous_secret_without_an_expiry_is_not_accepted(aws: Aws) -> None:
    from teams_connect.adapters import secrets as tc_secrets
    from teams_connect.config import Settings

    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="wh-legacy",
        SecretString=json.dumps(
            {"webhook_secret": "new-secret-0123", "previous_webhook_secret": "old-secret-0123"}
        ),
    )["ARN"]
    settings = Settings.from_env(aws.env(WEBHOOK_SECRET_ARN=arn))
    assert tc_secrets.webhook_secrets(settings) == ("new-secret-0123",)


# --------------------------------------------------------------------------- G4: per-grant failures
BASE = "https://api.us.nylas.com"
PROVIDER_504 = {
    "request_id": "r",
    "error": {
        "type": "provider_error",
        "message": "mailbox",
        "provider_error": {"error": "ErrorMailboxMoveInProgress"},
    },
}
PROVIDER_429 = {
    "request_id": "r",
    "error": {"type": "rate_limit_error", "message": "slow down", "provider_error": {}},
}


@pytest.mark.parametrize(("status", "body"), [(504, PROVIDER_504), (429, PROVIDER_429)], ids=["504", "429"])
def test_g4_one_mailboxs_failures_do_not_open_the_breaker_for_everyone(status: int, body: Any) -> None:
    http = NylasHttp(BASE, sleep=lambda _: None)
    with respx.mock() as router:
        attacker = router.get(f"{BASE}/v3/grants/a/events/e").mock(
            return_value=httpx.Response(status, json=body)
        )
        victim = router.get(f"{BASE}/v3/grants/v/events/e").mock(
            return_value=httpx.Response(200, json={"data": {}})
        )
        for _ in range(4):  # 12 failed attempts of one grant
            with pytest.raises(NylasError) as err:
                http.request("GET", "/v3/grants/a/events/e", route="t", idempotent=True)
            assert err.value.grant_scoped
        assert http.breaker.current_state == "closed"
        assert http.request("GET", "/v3/grants/v/events/e", route="t", idempotent=True).status == 200
    assert (attacker.call_count, victim.call_count) == (12, 1)


def test_g4_nylas_wide_failures_still_open_the_breaker() -> None:
    assert counts_as_outage(NylasError(503, "api.internal_error"))
    assert counts_as_outage(NylasError(429, "nylas_rate_limit_exceeded"))
    assert counts_as_outage(NylasError(None, "ConnectError"))
    assert not counts_as_outage(NylasError(504, "provider_error", provider_error=""))
    assert not counts_as_outage(NylasError(429, "rate_limit_error", provider_error=""))


# --------------------------------------------------------------------------- G9: the challenge
def test_g9_the_challenge_echoes_only_a_token_and_sandboxes_it() -> None:
    assert challenge("challenge=%3Csvg%2Fonload%3Dalert(document.domain)%3E").status == 400
    assert challenge("challenge=" + "a" * 257).status == 400
    answer = challenge("challenge=Xy_9-abc.DEF~1").to_lambda()
    assert (answer["statusCode"], answer["body"]) == (200, "Xy_9-abc.DEF~1")
    assert answer["headers"]["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert answer["headers"]["Content-Disposition"] == 'inline; filename="challenge.txt"'
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"


# --------------------------------------------------------------------------- G11: unknown 401 types
def test_g11_only_a_grant_scoped_401_marks_the_user_expired() -> None:
    from teams_connect.adapters.nylas.events import GrantExpired, events_error
    from teams_connect.errors import ServerError

    assert isinstance(events_error(NylasError(401, "grant.refresh_token_invalid")), GrantExpired)
    invalid_grant = NylasError(401, "unauthorized_client", provider_error="invalid_grant")
    assert isinstance(events_error(invalid_grant), GrantExpired)
    for kind in ("api.wrong_region", "unknown", "api.authentication_error"):
        assert isinstance(events_error(NylasError(401, kind)), ServerError)
