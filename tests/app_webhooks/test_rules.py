"""App webhooks, pure rules: the contract's body, Standard Webhooks signatures verified by the official
`standardwebhooks` package, rotation overlap, retry classification, backoff, Retry-After, budget."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from teams_connect.rules.app_webhooks import (
    MAX_DELAY_SECONDS,
    RETRY_BUDGET_SECONDS,
    WEBHOOK_TYPES,
    Attempt,
    MalformedEvent,
    RetryPolicy,
    headers_for,
    retry_after_seconds,
    signing_keys,
    webhook_for,
    whsec,
)

SECRET = "A" * 20 + "b1c2d3e4f5g6h7i8j9k0LMNOPQRS"  # 48 letters/digits: what the stack generates
OTHER = "Z" * 20 + "y9x8w7v6u5t4s3r2q1p0ONMLKJIH"


def envelope(detail_type: str = "Grant Connected", **detail: object) -> str:
    data = {
        "event_id": "0123456789abcdef0123456789abcdef",
        "user_id": "u-1",
        "grant_id": "g-1",
        "email": "ada@example.com",
        "status": "valid",
        "occurred_at": "2026-12-07T05:00:00Z",
        "metadata": {"org": "acme"},
        **detail,
    }
    return json.dumps(
        {
            "version": "0",
            "id": "eb-id",
            "detail-type": detail_type,
            "source": "teams-connect",
            "time": "2026-12-07T05:00:01Z",
            "detail": data,
        }
    )


@pytest.mark.parametrize(("detail_type", "kind"), sorted(WEBHOOK_TYPES.items()))
def test_every_event_type_maps_to_the_contract_type_with_the_detail_as_data(detail_type, kind):
    hook = webhook_for(envelope(detail_type))
    body = json.loads(hook.body)
    assert body == {
        "type": kind,
        "timestamp": "2026-12-07T05:00:00Z",
        "data": json.loads(envelope())["detail"],
    }
    assert hook.webhook_id == "0123456789abcdef0123456789abcdef"


def test_the_eight_contract_types():
    assert set(WEBHOOK_TYPES.values()) == {
        "grant.connected",
        "grant.reconnected",
        "grant.disconnected",
        "grant.expired",
        "grant.revoked",
        "grant.needs_reauth",
        "connect.failed",
        "tenant.admin_consented",
    }


def test_tenant_event_without_grant_fields():
    raw = json.dumps(
        {
            "detail-type": "Tenant Admin Consented",
            "time": "2026-12-07T05:00:01Z",
            "detail": {
                "event_id": "e1",
                "tenant_id": "t",
                "consent_id": "c",
                "occurred_at": "2026-12-07T05:00:00Z",
            },
        }
    )
    body = json.loads(webhook_for(raw).body)
    assert body["type"] == "tenant.admin_consented"
    assert body["data"]["tenant_id"] == "t"


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        json.dumps({"detail-type": "Something Else", "detail": {"event_id": "e"}}),
        json.dumps({"detail-type": "Grant Connected", "detail": "x"}),
        json.dumps({"detail-type": "Grant Connected", "detail": {"user_id": "u"}}),
    ],
)
def test_malformed_messages_are_refused(raw):
    with pytest.raises(MalformedEvent):
        webhook_for(raw)


def test_the_body_is_the_same_bytes_on_every_attempt():
    assert webhook_for(envelope()).body == webhook_for(envelope()).body


def test_official_package_verifies_the_signature():
    hook = webhook_for(envelope())
    now = time.time()
    headers = headers_for(signing_keys({"secret": SECRET}, now), hook, now)
    assert headers["webhook-id"] == hook.webhook_id
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(whsec(SECRET)).verify(hook.body, headers) == json.loads(hook.body)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(OTHER)).verify(hook.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(SECRET)).verify(hook.body.replace("acme", "evil"), headers)


def test_a_stored_secret_with_the_prefix_signs_the_same():
    hook = webhook_for(envelope())
    now = time.time()
    bare = headers_for(signing_keys({"secret": SECRET}, now), hook, now)
    prefixed = headers_for(signing_keys({"secret": "whsec_" + SECRET}, now), hook, now)
    assert bare == prefixed


def test_rotation_overlap_signs_with_both_then_only_the_new():
    hook = webhook_for(envelope())
    now = time.time()
    stored = {"secret": SECRET, "previous_secret": OTHER, "previous_valid_until": int(now) + 3600}
    headers = headers_for(signing_keys(stored, now), hook, now)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(whsec(SECRET)).verify(hook.body, headers)  # a receiver already on the new secret
    Webhook(whsec(OTHER)).verify(hook.body, headers)  # a receiver still on the old one
    later = now + 3601
    after = headers_for(signing_keys(stored, later), hook, later)
    assert len(after["webhook-signature"].split(" ")) == 1
    assert signing_keys(stored, later).secrets == (SECRET,)


@pytest.mark.parametrize("stored", [{}, {"secret": ""}, {"secret": "short"}, {"secret": 5}])
def test_no_usable_secret_fails_closed(stored):
    with pytest.raises(ValueError, match="secret"):
        signing_keys(stored, time.time())


@pytest.mark.parametrize(
    ("attempt", "delivered", "retryable"),
    [
        (Attempt(status=200), True, False),
        (Attempt(status=204), True, False),
        (Attempt(error="ConnectError"), False, True),
        (Attempt(error="ReadTimeout"), False, True),
        (Attempt(status=408), False, True),
        (Attempt(status=429), False, True),
        (Attempt(status=500), False, True),
        (Attempt(status=502), False, True),
        (Attempt(status=503), False, True),
        (Attempt(status=400), False, False),
        (Attempt(status=401), False, False),
        (Attempt(status=403), False, False),
        (Attempt(status=404), False, False),
        (Attempt(status=410), False, False),
        (Attempt(status=422), False, False),
    ],
)
def test_what_is_retried(attempt, delivered, retryable):
    assert (attempt.delivered, attempt.retryable) == (delivered, retryable)


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = RetryPolicy()
    for attempt in range(1, 40):
        step = min(policy.cap, policy.base * 2 ** (attempt - 1))
        low, high = policy.backoff(attempt, lambda: 0.0), policy.backoff(attempt, lambda: 0.999999)
        assert low == step / 2
        assert step / 2 < high <= step
    assert policy.backoff(2, lambda: 0.0) == 2 * policy.backoff(1, lambda: 0.0)
    assert policy.backoff(60, lambda: 1.0) == policy.cap


def test_jitter_spreads_the_delays():
    policy = RetryPolicy()
    values = {policy.backoff(5, __import__("random").random) for _ in range(50)}
    assert len(values) > 40


def test_the_budget_is_at_least_24_hours():
    policy = RetryPolicy()
    first = 1_000_000.0
    assert RETRY_BUDGET_SECONDS >= 86400
    assert not policy.exhausted(first, first + 86399)
    assert policy.exhausted(first, first + 86400)
    # With the shortest delays (no jitter) the attempts keep coming until the budget ends.
    elapsed, attempt = 0.0, 1
    while not policy.exhausted(first, first + elapsed):
        elapsed += policy.delay_for(attempt, Attempt(status=503), first + elapsed, lambda: 0.0)
        attempt += 1
    assert elapsed >= 86400
    assert 40 < attempt < 150  # below the queue's maxReceiveCount safety net (template.yaml: 150)


def test_retry_after_seconds_and_http_date_are_honoured():
    policy = RetryPolicy()
    now = time.time()
    assert policy.delay_for(1, Attempt(status=429, retry_after="120"), now, lambda: 0.0) == 120
    date = format_datetime(datetime.fromtimestamp(now, UTC) + timedelta(seconds=600), usegmt=True)
    assert 598 <= policy.delay_for(1, Attempt(status=503, retry_after=date), now, lambda: 0.0) <= 601
    # Never sooner than the backoff; never beyond SQS's 12 h of visibility.
    assert policy.delay_for(8, Attempt(status=429, retry_after="1"), now, lambda: 0.0) == 640
    assert (
        policy.delay_for(1, Attempt(status=429, retry_after="999999"), now, lambda: 0.0) == MAX_DELAY_SECONDS
    )


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_unusable_retry_after_is_ignored(value):
    assert retry_after_seconds(value, time.time()) is None


def test_the_compressed_clock_scales_delays_and_budget():
    policy = RetryPolicy(scale=1440)
    first = 1_000_000.0
    assert policy.delay_for(1, Attempt(status=503), first, lambda: 0.0) == 1  # never below 1 s
    assert policy.delay_for(30, Attempt(status=503), first, lambda: 1.0) == 2  # 1800 s / 1440
    assert not policy.exhausted(first, first + 59)
    assert policy.exhausted(first, first + 60)
