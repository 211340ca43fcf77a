"""App webhooks end to end through the local stack (`make run` in a subprocess): grants table stream →
publisher → local EventBridge → the template's rule → moto's SQS FIFO queue → the real delivery
function (SQS event source with partial batch responses) → the demo app's `/webhooks`, which verifies
with the official `standardwebhooks` package. The delivery's clock is compressed 14400 times: the 24 h
retry budget passes in 6 s, a backoff step is at least 1 s."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks import Webhook
from tools import app_webhooks as tool

from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls, running_stack

SCALE = 14400
BUDGET_REAL_SECONDS = 86400 / SCALE
GRANT_FIELDS = {"event_id", "user_id", "grant_id", "email", "status", "occurred_at", "metadata"}


@pytest.fixture(scope="module")
def stack() -> Iterator[StackUrls]:
    with running_stack("v3", env={"TC_APP_WEBHOOK_CLOCK_SCALE": str(SCALE)}) as urls:
        yield urls


@pytest.fixture(scope="module")
def ready(stack: StackUrls) -> dict[str, str]:
    """The template's queues, as the stack created them in moto."""
    urls = {q.rsplit("/", 1)[-1]: q for q in aws(stack, "sqs").list_queues()["QueueUrls"]}
    return {
        "queue": urls["AppWebhookQueue.fifo"],
        "dead": urls["AppWebhookDeadLetters.fifo"],
        "rule_dead": urls["AppWebhookRuleDeadLetters"],
    }


def aws(stack: StackUrls, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack.moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def secret(stack: StackUrls) -> str:
    secrets = aws(stack, "secretsmanager")
    value = json.loads(secrets.get_secret_value(SecretId="teams-connect/local/app-webhook")["SecretString"])
    return "whsec_" + str(value["secret"])


@pytest.fixture
def browser(stack: StackUrls) -> Iterator[Browser]:
    with Browser(stack) as b:
        yield b


@pytest.fixture
def api(stack: StackUrls) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.gateway, headers={"authorization": f"Bearer {stack.api_key}"}, timeout=15.0
    ) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for[T](probe: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def deliveries(stack: StackUrls, user: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{stack.demo}/webhooks", timeout=5).json()["deliveries"]
    return [d for d in found if json.loads(d["body"]).get("data", {}).get("user_id") == user]


def refuse(stack: StackUrls, count: int, status: int, retry_after: int | None = None) -> None:
    body: dict[str, Any] = {"count": count, "status": status}
    if retry_after is not None:
        body["retry_after"] = retry_after
    assert httpx.post(f"{stack.demo}/webhooks/fail", json=body, timeout=5).status_code == 200


def connect(browser: Browser, user: str, metadata: dict[str, str] | None = None) -> None:
    email = f"{user}@contoso.example"
    result = (
        browser.run(user, email=email)
        if metadata is None
        else browser.run(user, email=email, metadata=metadata)
    )
    assert result.final is not None
    assert "status=connected" in result.final.headers["location"]


def delivered(stack: StackUrls, user: str, kind: str) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        ok = [
            d for d in deliveries(stack, user) if json.loads(d["body"])["type"] == kind and d["status"] == 200
        ]
        return ok or None

    return wait_for(probe, f"{kind} delivered for {user}")


def test_a_connection_is_delivered_signed_with_its_event_id_and_metadata(stack, browser, secret):
    user = unique("u")
    connect(browser, user, metadata={"org": "acme", "workspace.id": "w-7"})
    (delivery,) = delivered(stack, user, "grant.connected")
    assert delivery["verified"] is True
    body = Webhook(secret).verify(delivery["body"], delivery["headers"])  # the official verifier, again
    assert body["data"]["metadata"] == {"org": "acme", "workspace.id": "w-7"}
    assert set(body["data"]) == {
        "event_id",
        "user_id",
        "grant_id",
        "email",
        "status",
        "occurred_at",
        "metadata",
    }
    events = httpx.get(f"{stack.demo}/events", timeout=5).json()["events"]
    (event,) = [e for e in events if e["detail"]["user_id"] == user]
    assert delivery["headers"]["webhook-id"] == event["detail"]["event_id"]
    assert body["data"] == event["detail"]


def test_refused_deliveries_are_retried_with_the_same_id_and_body(stack, browser, api):
    user = unique("u")
    connect(browser, user)
    delivered(stack, user, "grant.connected")
    refuse(stack, 2, 503)
    assert api.delete(f"/v1/grants/{user}").status_code == 204
    delivered(stack, user, "grant.disconnected")
    attempts = [d for d in deliveries(stack, user) if json.loads(d["body"])["type"] == "grant.disconnected"]
    assert [d["status"] for d in attempts] == [503, 503, 200]
    assert len({d["headers"]["webhook-id"] for d in attempts}) == 1
    assert len({d["body"] for d in attempts}) == 1
    assert all(d["verified"] for d in attempts)
    stamps = [int(d["headers"]["webhook-timestamp"]) for d in attempts]
    assert stamps == sorted(stamps)


def test_retry_after_is_honoured(stack, browser, api):
    user = unique("u")
    connect(browser, user)
    delivered(stack, user, "grant.connected")
    refuse(stack, 1, 429, retry_after=3 * SCALE)  # 3 s of real time on the compressed clock
    began = time.monotonic()
    assert api.delete(f"/v1/grants/{user}").status_code == 204
    delivered(stack, user, "grant.disconnected")
    assert time.monotonic() - began >= 2.5  # the backoff alone would be 1 s


def test_a_4xx_goes_to_the_dead_letter_queue_at_once_and_is_redriven(stack, browser, api, ready):
    user = unique("u")
    connect(browser, user)
    delivered(stack, user, "grant.connected")
    refuse(stack, 1, 410)
    assert api.delete(f"/v1/grants/{user}").status_code == 204
    sqs = aws(stack, "sqs")

    def dead_letter() -> dict[str, Any] | None:
        got = sqs.receive_message(
            QueueUrl=ready["dead"], MessageAttributeNames=["All"], VisibilityTimeout=0, WaitTimeSeconds=1
        ).get("Messages")
        return got[0] if got else None

    message = wait_for(dead_letter, "the dead letter")
    time.sleep(1.0)  # a retry would have come by now on this clock
    attempts = [d for d in deliveries(stack, user) if json.loads(d["body"])["type"] == "grant.disconnected"]
    assert [d["status"] for d in attempts] == [410]
    envelope = json.loads(message["Body"])
    assert envelope["detail-type"] == "Grant Disconnected"
    assert envelope["detail"]["user_id"] == user
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["reason"] == "refused"
    assert attributes["last_outcome"] == "http_410"
    assert attributes["webhook_id"] == attempts[0]["headers"]["webhook-id"]
    moved = tool.redrive(sqs, queue_url=ready["queue"], dead_letter_urls=[ready["dead"], ready["rule_dead"]])
    assert sum(m.count for m in moved) >= 1
    (ok,) = delivered(stack, user, "grant.disconnected")
    assert ok["headers"]["webhook-id"] == attempts[0]["headers"]["webhook-id"]


def test_after_the_retry_budget_the_event_is_kept_in_the_dead_letter_queue(stack, browser, api, ready):
    user = unique("u")
    connect(browser, user)
    delivered(stack, user, "grant.connected")
    refuse(stack, 1000, 503)
    try:
        assert api.delete(f"/v1/grants/{user}").status_code == 204
        sqs = aws(stack, "sqs")

        def dead_letter() -> dict[str, Any] | None:
            got = sqs.receive_message(
                QueueUrl=ready["dead"], MessageAttributeNames=["All"], VisibilityTimeout=0, WaitTimeSeconds=1
            ).get("Messages")
            return got[0] if got else None

        message = wait_for(dead_letter, "the dead letter", timeout=BUDGET_REAL_SECONDS + 20)
    finally:
        refuse(stack, 0, 503)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["reason"] == "retry budget spent"
    attempts = [d for d in deliveries(stack, user) if json.loads(d["body"])["type"] == "grant.disconnected"]
    assert len(attempts) >= 3
    assert {d["status"] for d in attempts} == {503}
    assert int(attributes["attempts"]) == len(attempts)
    tool.redrive(sqs, queue_url=ready["queue"], dead_letter_urls=[ready["dead"]])
    delivered(stack, user, "grant.disconnected")


def test_the_events_of_a_grant_arrive_in_the_order_they_happened(stack, browser, api):
    user = unique("u")
    connect(browser, user)
    time.sleep(1.1)  # Nylas times are whole seconds: the expiry comes after the connection
    grant = api.get(f"/v1/grants/{user}").json()
    refuse(stack, 2, 500)  # the receiver fails for a while in the middle of the sequence
    answer = httpx.post(
        f"{stack.emulator}/_emulator/grants/{grant['grant_id']}/status",
        json={"status": "invalid"},
        timeout=10,
    )
    assert answer.status_code < 300
    wait_for(lambda: api.get(f"/v1/grants/{user}").json().get("status") == "expired" or None, "expired")
    connect(browser, user)
    wait_for(lambda: api.get(f"/v1/grants/{user}").json().get("status") == "valid" or None, "valid")
    assert api.delete(f"/v1/grants/{user}").status_code == 204
    delivered(stack, user, "grant.disconnected")
    order = [json.loads(d["body"])["type"] for d in deliveries(stack, user) if d["status"] == 200]
    assert order == ["grant.connected", "grant.expired", "grant.reconnected", "grant.disconnected"]
