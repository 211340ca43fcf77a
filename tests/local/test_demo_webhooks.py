"""The demo app's app-webhook receiver: verification with the official `standardwebhooks` package,
the last 200 deliveries kept verbatim at GET /webhooks, and POST /webhooks/fail refusing deliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from local.demo import WebhookInbox, create_app
from local.stack import bind_socket, serve_app, socket_url
from standardwebhooks import Webhook

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[str, WebhookInbox]]:
    inbox = WebhookInbox(secret=SECRET)
    sock = bind_socket("127.0.0.1", 0)
    served = serve_app(
        create_app("http://127.0.0.1:9", "key", socket_url(sock), webhooks=inbox), sock, name="demo"
    )
    try:
        yield socket_url(sock), inbox
    finally:
        served.stop()


def signed(body: str, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def test_verified_deliveries_are_kept_verbatim(demo):
    url, _ = demo
    body = json.dumps({"type": "grant.connected", "timestamp": "t", "data": {"user_id": "verbatim-1"}})
    assert httpx.post(f"{url}/webhooks", content=body, headers=signed(body, "id-1")).status_code == 200
    forged = signed(body, "id-2", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    assert httpx.post(f"{url}/webhooks", content=body, headers=forged).status_code == 400
    kept = httpx.get(f"{url}/webhooks").json()["deliveries"]
    mine = [d for d in kept if d["headers"]["webhook-id"] in ("id-1", "id-2")]
    assert [(d["verified"], d["status"]) for d in mine] == [(True, 200), (False, 400)]
    assert mine[0]["body"] == body
    assert mine[0]["headers"]["webhook-signature"].startswith("v1,")


def test_fail_refuses_the_next_deliveries_with_retry_after(demo):
    url, _ = demo
    order = {"count": 2, "status": 429, "retry_after": 30}
    assert httpx.post(f"{url}/webhooks/fail", json=order).status_code == 200
    body = json.dumps({"type": "grant.expired", "data": {}})
    answers = [httpx.post(f"{url}/webhooks", content=body, headers=signed(body, f"f-{n}")) for n in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "30"
    for bad in (
        {"count": -1},
        {"count": 1, "status": 200},
        {"status": 503},
        {"count": 1, "retry_after": "x"},
    ):
        assert httpx.post(f"{url}/webhooks/fail", json=bad).status_code == 400


def test_only_the_last_200_are_kept(demo):
    url, inbox = demo
    for n in range(WebhookInbox.KEEP + 5):
        inbox.receive({"webhook-id": f"bulk-{n}"}, b"{}")
    kept = httpx.get(f"{url}/webhooks").json()["deliveries"]
    assert len(kept) == 200
    assert kept[-1]["headers"]["webhook-id"] == f"bulk-{WebhookInbox.KEEP + 4}"
    assert kept[0]["headers"]["webhook-id"] == "bulk-5"


def test_a_delivery_signed_after_the_stack_clock_moved_is_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's clock (local/clock.py) moves when a test makes time pass; the sender signs with it,
    so the demo must judge `webhook-timestamp` by it too (the chaos campaign saw every delivery after a
    jump refused with 400 and dead-lettered)."""
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 7 * 3600)  # the stack's clock, 7 h ahead
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"type": "grant.connected", "timestamp": "x", "data": {}}'
    signed_at = datetime.fromtimestamp(time.time(), UTC)
    headers = {
        "webhook-id": "evt-1",
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(secret).sign("evt-1", signed_at, body),
        "content-type": "application/json",
    }
    inbox = WebhookInbox(secret)
    assert inbox.receive(headers, body.encode()) == (200, {})
    assert inbox.all()[-1]["verified"] is True


def test_the_stack_clock_does_not_jump_inside_a_delivery() -> None:
    """A jump (POST /_local/clock) waits for the delivery batch in progress: signed before a 15-minute
    jump and verified after it, a delivery was refused and dead-lettered (a chaos campaign finding)."""
    import threading
    import time

    from local import clock

    before = clock.offset()
    jumped = threading.Event()

    def jump() -> None:
        clock.advance(901)
        jumped.set()

    with clock.steady():  # what the local queue poller holds around one batch
        seen = clock.now()
        jumper = threading.Thread(target=jump)
        jumper.start()
        time.sleep(0.3)
        assert not jumped.is_set()
        assert clock.now() - seen < 60  # the delivery's time line has no jump
    jumper.join(timeout=5)
    assert jumped.is_set()
    assert clock.offset() == before + 901
