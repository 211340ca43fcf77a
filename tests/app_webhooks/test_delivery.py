"""The delivery of one SQS batch (teams_connect.domain.app_webhooks) against a scripted receiver and
recording queues: every delivery verified by the official `standardwebhooks` package; retries by
visibility with backoff and Retry-After; no retry on 4xx; the dead-letter queue after the budget;
ordering (nothing overtakes a failed event); rotation overlap; nothing unsigned; nothing lost."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from standardwebhooks import Webhook

from teams_connect.domain.app_webhooks import AppWebhookSettings, Delivery
from teams_connect.rules.app_webhooks import RETRY_BUDGET_SECONDS, Attempt, whsec

SECRET = "Qm9vdHN0cmFwU2VjcmV0Rm9yVGVzdHMxMjM0NTY3ODkwYWI"
OLD = "T2xkU2VjcmV0Rm9yVGVzdHNPbmx5MTIzNDU2Nzg5MGFiY2Q"
URL = "https://app.example.com/hooks/teams"
T0 = 1_800_000_000.0
GRANT_FIELDS = {"event_id", "user_id", "grant_id", "email", "status", "occurred_at", "metadata"}


@dataclass
class Receiver:
    """Answers each POST with the next scripted outcome (2xx once the script is spent)."""

    script: list[Attempt] = field(default_factory=list)
    posts: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def post(self, url: str, body: str, headers: Mapping[str, str]) -> Attempt:
        self.posts.append((url, body, dict(headers)))
        return self.script.pop(0) if self.script else Attempt(status=204)


@dataclass
class Queues:
    delays: list[tuple[list[str], int]] = field(default_factory=list)
    dead: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    dead_letter_fails: bool = False

    def delay(self, receipt_handles: Sequence[str], seconds: int) -> None:
        self.delays.append((list(receipt_handles), seconds))

    def dead_letter(self, body: str, attributes: Mapping[str, str], dedupe_id: str) -> None:
        if self.dead_letter_fails:
            raise RuntimeError("SQS unavailable")
        self.dead.append((body, dict(attributes), dedupe_id))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event_body(n: int, detail_type: str = "Grant Connected", user: str = "u-1") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": f"eb-{n}",
            "detail-type": detail_type,
            "source": "teams-connect",
            "time": "2027-01-15T08:00:00Z",
            "detail": {
                "event_id": f"{n:032x}",
                "user_id": user,
                "grant_id": f"g-{user}",
                "email": f"{user}@example.com",
                "status": "valid",
                "occurred_at": "2027-01-15T08:00:00Z",
                "metadata": {"org": "acme"},
            },
        }
    )


def record(n: int, *, receive_count: int = 1, first: float = T0, body: str | None = None) -> dict[str, Any]:
    return {
        "messageId": f"m-{n}",
        "receiptHandle": f"r-{n}",
        "body": body if body is not None else event_body(n),
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "ApproximateFirstReceiveTimestamp": str(int(first * 1000)),
            "MessageGroupId": "lifecycle",
        },
    }


def make(
    receiver: Receiver,
    queues: Queues,
    clock: Clock,
    secret: Mapping[str, Any] | None = None,
    scale: int = 1,
) -> Delivery:
    settings = AppWebhookSettings(URL, "arn:secret", "q", "dlq", clock_scale=scale)
    stored = {"secret": SECRET} if secret is None else secret
    return Delivery(
        settings, sender=receiver, queues=queues, secret=lambda: stored, clock=clock, rand=lambda: 0.5
    )


def plenty() -> int:
    return 120_000


def verify_all(receiver: Receiver, secret: str = SECRET) -> list[dict[str, Any]]:
    hook = Webhook(whsec(secret))
    return [hook.verify(body, headers) for _, body, headers in receiver.posts]


def signed_at_its_timestamp(body: str, headers: Mapping[str, str]) -> bool:
    """The official package's signature for the delivery's own timestamp (the simulated clock runs
    ahead of the real one, which `verify` compares with)."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    return Webhook(whsec(SECRET)).sign(headers["webhook-id"], when, body) == headers["webhook-signature"]


def test_every_delivery_is_verified_by_the_official_package():
    receiver, queues, clock = Receiver(), Queues(), Clock(__import__("time").time())
    failed = make(receiver, queues, clock).handle([record(1), record(2), record(3)], plenty)
    assert failed == []
    bodies = verify_all(receiver)
    assert [b["data"]["event_id"] for b in bodies] == [f"{n:032x}" for n in (1, 2, 3)]
    assert [h["webhook-id"] for _, _, h in receiver.posts] == [f"{n:032x}" for n in (1, 2, 3)]
    assert all(url == URL for url, _, _ in receiver.posts)
    assert all(b["type"] == "grant.connected" for b in bodies)
    assert queues.delays == []
    assert queues.dead == []


def test_a_redelivery_has_the_same_id_and_body():
    receiver, queues, clock = Receiver(), Queues(), Clock()
    delivery = make(receiver, queues, clock)
    delivery.handle([record(1)], plenty)
    clock.now += 600
    delivery.handle([record(1, receive_count=2)], plenty)
    (_, first_body, first), (_, second_body, second) = receiver.posts
    assert first_body == second_body
    assert first["webhook-id"] == second["webhook-id"]
    assert int(second["webhook-timestamp"]) == int(first["webhook-timestamp"]) + 600


@pytest.mark.parametrize(
    "outcome",
    [
        Attempt(error="ConnectError"),
        Attempt(error="ReadTimeout"),
        Attempt(status=408),
        Attempt(status=429),
        Attempt(status=500),
        Attempt(status=503),
    ],
)
def test_a_retryable_failure_defers_it_and_everything_after_it(outcome):
    receiver, queues, clock = Receiver([Attempt(status=200), outcome]), Queues(), Clock()
    failed = make(receiver, queues, clock).handle([record(n) for n in (1, 2, 3, 4)], plenty)
    assert failed == ["m-2", "m-3", "m-4"]
    assert len(receiver.posts) == 2  # 3 and 4 were not sent: nothing overtakes event 2
    ((handles, seconds),) = queues.delays
    assert handles == ["r-2", "r-3", "r-4"]
    assert seconds == 8  # attempt 1: a 10 s step, jitter 0.5 → 7.5 s, rounded up
    assert queues.dead == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422])
def test_other_4xx_are_not_retried_and_keep_the_whole_event(status):
    receiver, queues, clock = Receiver([Attempt(status=status)]), Queues(), Clock()
    failed = make(receiver, queues, clock).handle([record(1), record(2)], plenty)
    assert failed == []
    assert len(receiver.posts) == 2  # the next event went on
    ((body, attributes, dedupe),) = queues.dead
    assert body == event_body(1)  # the whole EventBridge event, verbatim
    assert attributes["reason"] == "refused"
    assert attributes["last_outcome"] == f"http_{status}"
    assert attributes["webhook_type"] == "grant.connected"
    assert dedupe == "m-1"
    assert queues.delays == []


def test_backoff_grows_and_retry_after_is_honoured():
    receiver, queues, clock = Receiver(), Queues(), Clock()
    delivery = make(receiver, queues, clock)
    seconds = []
    for attempt in range(1, 9):
        receiver.script = [Attempt(status=503)]
        delivery.handle([record(1, receive_count=attempt)], plenty)
        seconds.append(queues.delays[-1][1])
    assert seconds == [8, 15, 30, 60, 120, 240, 480, 960]
    receiver.script = [Attempt(status=429, retry_after="3600")]
    delivery.handle([record(1, receive_count=2)], plenty)
    assert queues.delays[-1][1] == 3600


def test_after_the_budget_the_event_is_dead_lettered():
    receiver, queues, clock = Receiver([Attempt(status=503), Attempt(status=503)]), Queues(), Clock()
    delivery = make(receiver, queues, clock)
    clock.now = T0 + RETRY_BUDGET_SECONDS - 1
    assert delivery.handle([record(1, receive_count=60)], plenty) == ["m-1"]  # still within 24 h
    clock.now = T0 + RETRY_BUDGET_SECONDS
    assert delivery.handle([record(1, receive_count=61)], plenty) == []
    ((body, attributes, _),) = queues.dead
    assert body == event_body(1)
    assert attributes["reason"] == "retry budget spent"
    assert attributes["attempts"] == "61"


def test_a_receiver_down_for_three_hours_gets_everything_in_order_afterwards():
    """Simulated SQS with a compressed clock: attempts until the receiver is back, then in order."""
    receiver, queues, clock = Receiver(), Queues(), Clock()
    rng = random.Random(7)
    settings = AppWebhookSettings(URL, "arn", "q", "dlq")
    delivery = Delivery(
        settings,
        sender=receiver,
        queues=queues,
        secret=lambda: {"secret": SECRET},
        clock=clock,
        rand=rng.random,
    )
    back_at = T0 + 3 * 3600

    def answer(url: str, body: str, headers: Mapping[str, str]) -> Attempt:
        receiver.posts.append((url, body, dict(headers)))
        return Attempt(status=200) if clock.now >= back_at else Attempt(error="ConnectError")

    receiver.post = answer  # type: ignore[method-assign]
    pending = [record(n, first=T0) for n in range(1, 6)]
    attempt = 1
    while pending:
        batch = [
            dict(r, attributes={**r["attributes"], "ApproximateReceiveCount": str(attempt)}) for r in pending
        ]
        failed = delivery.handle(batch, plenty)
        pending = [r for r in pending if r["messageId"] in failed]
        if pending:
            clock.now += queues.delays[-1][1]
            attempt += 1
    ids = [json.loads(body)["data"]["event_id"] for _, body, _ in receiver.posts[-5:]]
    assert ids == [f"{n:032x}" for n in range(1, 6)]
    assert all(signed_at_its_timestamp(body, headers) for _, body, headers in receiver.posts)
    assert clock.now >= back_at
    assert 10 <= attempt <= 20  # exponential: about a dozen attempts in 3 hours, not hundreds
    assert queues.dead == []


def test_rotation_overlap_signs_with_both_secrets():
    import time

    receiver, queues, clock = Receiver(), Queues(), Clock(time.time())
    stored = {"secret": SECRET, "previous_secret": OLD, "previous_valid_until": int(clock.now) + 86400}
    make(receiver, queues, clock, stored).handle([record(1)], plenty)
    verify_all(receiver, SECRET)
    verify_all(receiver, OLD)
    assert len(receiver.posts[0][2]["webhook-signature"].split(" ")) == 2


def test_no_usable_secret_sends_nothing_and_loses_nothing():
    receiver, queues, clock = Receiver(), Queues(), Clock()
    failed = make(receiver, queues, clock, {"secret": ""}).handle([record(1), record(2)], plenty)
    assert failed == ["m-1", "m-2"]
    assert receiver.posts == []
    assert [h for h, _ in queues.delays] == [["r-1", "r-2"]]


def test_a_dead_letter_queue_failure_keeps_the_message():
    receiver, queues, clock = Receiver([Attempt(status=410)]), Queues(dead_letter_fails=True), Clock()
    failed = make(receiver, queues, clock).handle([record(1), record(2)], plenty)
    assert failed == ["m-1", "m-2"]
    assert queues.delays[0][0] == ["r-1", "r-2"]


def test_malformed_messages_go_to_the_dead_letters_untouched():
    receiver, queues, clock = Receiver(), Queues(), Clock()
    failed = make(receiver, queues, clock).handle([record(1, body="{not json"), record(2)], plenty)
    assert failed == []
    assert queues.dead[0][0] == "{not json"
    assert queues.dead[0][1]["reason"].startswith("malformed")
    assert len(receiver.posts) == 1


def test_no_delivery_starts_without_time_for_its_timeout():
    receiver, queues, clock = Receiver(), Queues(), Clock()
    failed = make(receiver, queues, clock).handle([record(1), record(2)], lambda: 14_000)
    assert failed == ["m-1", "m-2"]
    assert receiver.posts == []
    assert queues.delays == [(["r-1", "r-2"], 0)]


def test_the_compressed_clock_shortens_delays_and_budget():
    receiver, queues, clock = Receiver([Attempt(status=503), Attempt(status=503)]), Queues(), Clock()
    delivery = make(receiver, queues, clock, scale=14400)
    assert delivery.handle([record(1, receive_count=5)], plenty) == ["m-1"]
    assert queues.delays[-1][1] == 1
    clock.now = T0 + 6  # 6 s x 14400 = 24 h
    assert delivery.handle([record(1, receive_count=6)], plenty) == []
    assert queues.dead[0][1]["reason"] == "retry budget spent"


@pytest.mark.parametrize(
    ("detail_type", "detail", "allowed"),
    [
        ("Grant Expired", None, GRANT_FIELDS),
        (
            "Connect Failed",
            {
                "event_id": "e" * 32,
                "user_id": "u",
                "error": "access_denied",
                "occurred_at": "x",
                "metadata": {},
            },
            {"event_id", "user_id", "error", "occurred_at", "metadata"},
        ),
        (
            "Tenant Admin Consented",
            {"event_id": "f" * 32, "tenant_id": "t", "consent_id": "c", "occurred_at": "x"},
            {"event_id", "tenant_id", "consent_id", "occurred_at"},
        ),
    ],
)
def test_a_webhook_carries_the_detail_and_nothing_more(detail_type, detail, allowed):
    body = json.loads(event_body(9, detail_type))
    if detail is not None:
        body["detail"] = detail
    receiver, queues, clock = Receiver(), Queues(), Clock(__import__("time").time())
    make(receiver, queues, clock).handle([record(9, body=json.dumps(body))], plenty)
    (sent,) = verify_all(receiver)
    assert set(sent) == {"type", "timestamp", "data"}
    assert set(sent["data"]) <= allowed
    assert sent["data"] == body["detail"]
    headers = receiver.posts[0][2]
    assert set(headers) == {
        "content-type",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }


def test_settings_refuse_plain_http_to_a_remote_host():
    from teams_connect.config import ConfigError

    env = {
        "APP_WEBHOOK_URL": "http://app.example.com/hooks",
        "APP_WEBHOOK_SECRET_ARN": "arn",
        "APP_WEBHOOK_QUEUE_URL": "q",
        "APP_WEBHOOK_DEAD_LETTER_URL": "d",
    }
    with pytest.raises(ConfigError, match="https"):
        AppWebhookSettings.from_env(env)
    assert (
        AppWebhookSettings.from_env({**env, "APP_WEBHOOK_URL": "http://127.0.0.1:8000/webhooks"}).clock_scale
        == 1
    )
    with pytest.raises(ConfigError, match="SCALE"):
        AppWebhookSettings.from_env({**env, "APP_WEBHOOK_URL": URL, "APP_WEBHOOK_CLOCK_SCALE": "0"})
