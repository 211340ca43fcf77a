"""Grant lifecycle through the local stack: the emulator delivers signed webhooks to the gateway, the
record changes, the grants table's stream reaches the publisher, the local EventBridge delivers the
event to the demo app (`GET <demo>/events`). Every test runs per flavour (beta has no webhooks: it
gets Grant Connected / Disconnected only)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for[T](probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def events_of(stack: StackUrls, user: str) -> list[dict[str, Any]]:
    events = httpx.get(f"{stack.demo}/events", timeout=5).json()["events"]
    # Tenant Admin Consented events name no user (docs/lifecycle.md).
    return [e for e in events if e["detail"].get("user_id") == user]


def wait_event(stack: StackUrls, user: str, detail_type: str, count: int = 1) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = [e for e in events_of(stack, user) if e["detail_type"] == detail_type]
        return found if len(found) >= count else None

    return wait_for(probe, f"{count} x {detail_type} for {user}")


def wait_status(api: httpx.Client, user: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/v1/grants/{user}").json()
        return body if body.get("status") == status else None

    return wait_for(probe, f"status {status} for {user}")


def connect(browser: Browser, api: httpx.Client, user: str, email: str) -> dict[str, Any]:
    result = browser.run(user, email=email)
    assert result.final is not None
    assert "status=connected" in result.final.headers["location"]
    grant: dict[str, Any] = api.get(f"/v1/grants/{user}").json()
    return grant


def control(stack: StackUrls, path: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{stack.emulator}/_emulator/{path}", json=body, timeout=10)
    assert answer.status_code < 300, answer.text


def test_expire_and_reconnect(stack: StackUrls, browser: Browser, api: httpx.Client) -> None:
    user, email = unique("u"), f"{unique('ada')}@contoso.example"
    grant = connect(browser, api, user, email)
    connected = wait_event(stack, user, "Grant Connected")[0]["detail"]
    assert connected["grant_id"] == grant["grant_id"]
    assert connected["email"] == email
    assert connected["status"] == "valid"
    assert len(connected["event_id"]) == 32
    if stack.flavour == "beta":  # no webhooks: disconnect is the other event beta users get
        assert api.delete(f"/v1/grants/{user}").status_code == 204
        gone = wait_event(stack, user, "Grant Disconnected")[0]["detail"]
        assert (gone["grant_id"], gone["status"]) == (grant["grant_id"], "disconnected")
        return
    time.sleep(1.1)  # Nylas times are whole seconds: the expiry comes after the connection
    control(stack, f"grants/{grant['grant_id']}/status", {"status": "invalid"})
    expired = wait_status(api, user, "expired")
    assert expired["grant_id"] == grant["grant_id"]
    assert expired["status_changed_at"] >= grant["status_changed_at"]
    event = wait_event(stack, user, "Grant Expired")[0]["detail"]
    assert (event["status"], event["grant_id"]) == ("expired", grant["grant_id"])
    connect(browser, api, user, email)
    back = wait_status(api, user, "valid")
    assert back["grant_id"] == grant["grant_id"]
    wait_event(stack, user, "Grant Reconnected")
    types = [e["detail_type"] for e in events_of(stack, user)]
    assert types == ["Grant Connected", "Grant Expired", "Grant Reconnected"]
    assert len({e["detail"]["event_id"] for e in events_of(stack, user)}) == 3


def test_forged_and_unsigned_webhooks_are_refused(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    user = unique("u")
    grant = connect(browser, api, user, f"{unique('bo')}@contoso.example")
    body = (
        '{"specversion":"1.0","type":"grant.expired","source":"/nylas/system","id":"forged-1",'
        f'"time":{int(time.time()) + 5},"data":{{"object":{{"grant_id":"{grant["grant_id"]}"}}}}}}'
    )
    for headers in ({}, {"x-nylas-signature": "0" * 64}):
        answer = httpx.post(
            f"{stack.gateway}/nylas/webhooks",
            content=body,
            headers={"content-type": "application/json", **headers},
            timeout=10,
        )
        assert answer.status_code == 401
    assert httpx.get(f"{stack.gateway}/nylas/webhooks", params={"challenge": "abc"}).text == "abc"
    assert httpx.get(f"{stack.gateway}/nylas/webhooks").status_code == 400
    time.sleep(0.5)
    assert api.get(f"/v1/grants/{user}").json()["status"] == "valid"
    assert [e["detail_type"] for e in events_of(stack, user)] == ["Grant Connected"]


def test_out_of_order_and_duplicate_deliveries_change_nothing(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    if stack.flavour == "beta":  # no webhook destination exists for beta
        assert (
            httpx.get(
                f"{stack.emulator}/v3/webhooks", headers={"authorization": "Bearer local-nylas-api-key"}
            ).json()["data"]
            == []
        )
        return
    user = unique("u")
    grant = connect(browser, api, user, f"{unique('cy')}@contoso.example")
    wait_event(stack, user, "Grant Connected")
    time.sleep(1.1)
    control(stack, "webhooks/faults", {"hold": True, "duplicate": 2})
    control(stack, f"grants/{grant['grant_id']}/status", {"status": "invalid"})
    control(stack, "clock", {"advance_seconds": 2})
    control(stack, f"grants/{grant['grant_id']}/status", {"status": "valid"})
    control(stack, "webhooks/release", {"order": "reverse"})  # valid, valid, expired, expired

    def delivered() -> int | None:
        sent = httpx.get(f"{stack.emulator}/_emulator/webhooks/deliveries").json()["deliveries"]
        mine = [d for d in sent if d["grant_id"] == grant["grant_id"] and d["type"] != "grant.created"]
        return len(mine) if len(mine) >= 4 else None

    wait_for(delivered, "the four held deliveries")
    time.sleep(1.0)  # let the stream publish whatever it would
    record = api.get(f"/v1/grants/{user}").json()
    assert record["status"] == "valid"  # the older grant.expired, delivered last, did not win
    assert [e["detail_type"] for e in events_of(stack, user)] == ["Grant Connected"]


def test_revoked_at_nylas(stack: StackUrls, browser: Browser, api: httpx.Client) -> None:
    user = unique("u")
    grant = connect(browser, api, user, f"{unique('di')}@contoso.example")
    wait_event(stack, user, "Grant Connected")
    if stack.flavour == "beta":
        return_code = api.delete(f"/v1/grants/{user}").status_code
        assert return_code == 204
        wait_event(stack, user, "Grant Disconnected")
        return
    time.sleep(1.1)
    deleted = httpx.delete(
        f"{stack.emulator}/v3/grants/{grant['grant_id']}",
        headers={"authorization": "Bearer local-nylas-api-key"},
        timeout=10,
    )
    assert deleted.status_code == 200
    assert wait_status(api, user, "revoked")["grant_id"] == grant["grant_id"]
    assert wait_event(stack, user, "Grant Revoked")[0]["detail"]["status"] == "revoked"


def test_a_failed_publish_is_retried_and_nothing_is_lost(
    stack: StackUrls, browser: Browser, api: httpx.Client
) -> None:
    """EventBridge refuses the next entries (as after a crash between the write and the publish): the
    write is in the stream, the batch is retried, the event arrives once the bus takes it again."""
    user = unique("u")
    assert httpx.post(f"{stack.eventbridge}/_local/fail-next", json={"count": 2}).status_code == 200
    connect(browser, api, user, f"{unique('ed')}@contoso.example")
    events = wait_event(stack, user, "Grant Connected")
    assert len(events) == 1
    assert api.delete(f"/v1/grants/{user}").status_code == 204
    wait_event(stack, user, "Grant Disconnected")
