"""The emulator's /v3/webhooks: CRUD, the challenge during create, rotate-secret, signed deliveries on
grant changes, retries, and the delivery faults (duplicate, out of order, delayed)."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from local.nylas_emulator.webhooks import dispatcher_of
from local.stack import bind_socket, serve_app, socket_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.emulator.conftest import Emu

GRANT_TRIGGERS = ["grant.created", "grant.updated", "grant.deleted", "grant.expired"]


@dataclass
class Receiver:
    """A webhook endpoint: answers the challenge, records signed POSTs, fails when told."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    challenge_ok: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notes(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for headers, body in self.received:
                raw = gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body
                out.append(json.loads(raw))
            return out

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            notes = self.notes()
            if len(notes) >= count:
                return notes
            time.sleep(0.02)
        raise AssertionError(f"expected {count} deliveries, got {self.notes()}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    async def hook(request: Request) -> Response:
        if request.method == "GET":
            value = request.query_params.get("challenge", "")
            return PlainTextResponse(value if rec.challenge_ok else "nope")
        body = await request.body()
        with rec.lock:
            if rec.fail_next > 0:
                rec.fail_next -= 1
                return Response(status_code=503)
            rec.received.append((dict(request.headers), body))
        return Response(status_code=200)

    sock = bind_socket("127.0.0.1", 0)
    served = serve_app(Starlette(routes=[Route("/hook", hook, methods=["GET", "POST"])]), sock, name="hook")
    rec.url = socket_url(sock) + "/hook"
    yield rec
    served.stop()


@pytest.fixture
def hooked(emu: Emu, receiver: Receiver) -> tuple[Emu, Receiver, dict[str, Any]]:
    with receiver.lock:
        receiver.received.clear()
        receiver.fail_next = 0
        receiver.challenge_ok = True
    dispatcher_of(emu.server.store).retry_delays = (0.05, 0.1)
    emu.setup_v3()
    r = emu.api.post("/v3/webhooks", json={"trigger_types": GRANT_TRIGGERS, "webhook_url": receiver.url})
    assert r.status_code == 200, r.text
    return emu, receiver, r.json()["data"]


def deliveries(emu: Emu, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found: list[dict[str, Any]] = emu.anon.get("/_emulator/webhooks/deliveries").json()["deliveries"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def signed_by(secret: str) -> Callable[[dict[str, str], bytes], bool]:
    def check(headers: dict[str, str], body: bytes) -> bool:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get("x-nylas-signature", ""), expected)

    return check


def test_create_answers_200_with_the_secret_once(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, created = hooked
    assert created["webhook_url"] == receiver.url
    assert created["status"] == "active"
    assert len(created["webhook_secret"]) >= 32
    listed = emu.api.get("/v3/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "webhook_secret" not in listed[0]
    one = emu.api.get(f"/v3/webhooks/{created['id']}").json()["data"]
    assert "webhook_secret" not in one
    assert one["trigger_types"] == GRANT_TRIGGERS


def test_create_fails_when_the_url_fails_the_challenge(emu: Emu, receiver: Receiver) -> None:
    receiver.challenge_ok = False
    r = emu.api.post("/v3/webhooks", json={"trigger_types": ["grant.expired"], "webhook_url": receiver.url})
    assert r.status_code == 400
    assert "unable.verify.webhook_url" in r.json()["error"]["message"]
    receiver.challenge_ok = True
    dead = emu.api.post(
        "/v3/webhooks", json={"trigger_types": ["grant.expired"], "webhook_url": "http://127.0.0.1:9/x"}
    )
    assert dead.status_code == 400
    assert emu.api.get("/v3/webhooks").json()["data"] == []


def test_validation_and_auth(emu: Emu, receiver: Receiver) -> None:
    assert emu.anon.get("/v3/webhooks").status_code == 401
    bad = emu.api.post("/v3/webhooks", json={"trigger_types": ["grant.nope"], "webhook_url": receiver.url})
    assert bad.status_code == 400
    assert emu.api.post("/v3/webhooks", json={"webhook_url": receiver.url}).status_code == 400
    assert emu.api.get("/v3/webhooks/nope").status_code == 404


def test_update_rotate_and_delete(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, _, created = hooked
    wid = created["id"]
    paused = emu.api.put(f"/v3/webhooks/{wid}", json={"status": "pause"}).json()["data"]
    assert paused["status"] == "pause"
    assert paused["trigger_types"] == GRANT_TRIGGERS  # empty fields do not overwrite
    assert emu.api.put(f"/v3/webhooks/{wid}", json={"status": "active"}).json()["data"]["status"] == "active"
    rotated = emu.api.post(f"/v3/webhooks/rotate-secret/{wid}")
    assert rotated.status_code == 200
    assert rotated.json()["data"]["webhook_secret"] != created["webhook_secret"]
    # The SDK's wrong path does not exist (nylas-lifecycle.md §1.5).
    assert emu.api.put(f"/v3/webhooks/{wid}/rotate-secret").status_code in (404, 405)
    assert emu.api.delete(f"/v3/webhooks/{wid}").status_code == 200
    assert emu.api.get(f"/v3/webhooks/{wid}").status_code == 404


def test_grant_changes_are_delivered_signed(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, created = hooked
    grant_id = emu.connect("ada@contoso.example")["grant_id"]
    emu.connect("ada@contoso.example")  # re-authentication: same grant
    assert (
        emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"}).status_code == 200
    )
    assert emu.api.delete(f"/v3/grants/{grant_id}").status_code == 200
    notes = receiver.wait_for(4)
    assert [n["type"] for n in notes] == ["grant.created", "grant.updated", "grant.expired", "grant.deleted"]
    assert {n["data"]["object"]["grant_id"] for n in notes} == {grant_id}
    assert notes[0]["data"]["object"]["scope"]
    assert notes[1]["data"]["object"]["reauthentication_flag"] is True
    assert all(isinstance(n["time"], int) and n["source"] == "/nylas/system" for n in notes)
    assert len({n["id"] for n in notes}) == 4
    check = signed_by(created["webhook_secret"])
    assert all(check(h, b) for h, b in receiver.received)


def test_rotation_signs_with_the_new_secret_at_once(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, created = hooked
    new = emu.api.post(f"/v3/webhooks/rotate-secret/{created['id']}").json()["data"]["webhook_secret"]
    emu.connect("ada@contoso.example")
    receiver.wait_for(1)
    headers, body = receiver.received[0]
    assert signed_by(new)(headers, body)
    assert not signed_by(created["webhook_secret"])(headers, body)


def test_compressed_delivery_is_signed_over_the_gzip_bytes(
    hooked: tuple[Emu, Receiver, dict[str, Any]],
) -> None:
    emu, receiver, created = hooked
    emu.api.put(f"/v3/webhooks/{created['id']}", json={"compressed_delivery": True})
    emu.connect("ada@contoso.example")
    receiver.wait_for(1)
    headers, body = receiver.received[0]
    assert headers["content-encoding"] == "gzip"
    assert body[:2] == b"\x1f\x8b"
    assert signed_by(created["webhook_secret"])(headers, body)


def test_failed_deliveries_are_retried_with_the_same_id(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, _ = hooked
    receiver.fail_next = 2
    emu.connect("ada@contoso.example")
    notes = receiver.wait_for(1)
    sent = deliveries(emu, 3)
    assert [d["status"] for d in sent] == [503, 503, 200]
    assert [d["attempt"] for d in sent] == [1, 2, 3]
    assert {d["id"] for d in sent} == {notes[0]["id"]}
    assert notes[0]["webhook_delivery_attempt"] == 3


def test_at_most_three_attempts(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, _ = hooked
    receiver.fail_next = 5
    emu.connect("ada@contoso.example")
    sent = deliveries(emu, 3)
    time.sleep(0.3)  # no fourth attempt comes
    assert [d["status"] for d in deliveries(emu, 4, timeout=0)] == [503, 503, 503]
    assert len(sent) == 3
    assert receiver.notes() == []


def test_duplicate_fault_sends_the_same_notification_twice(
    hooked: tuple[Emu, Receiver, dict[str, Any]],
) -> None:
    emu, receiver, _ = hooked
    assert emu.anon.post("/_emulator/webhooks/faults", json={"duplicate": 1}).status_code == 200
    emu.connect("ada@contoso.example")
    notes = receiver.wait_for(2)
    assert notes[0] == notes[1]


def test_hold_and_reverse_release_deliver_out_of_order(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, _ = hooked
    grant_id = emu.connect("ada@contoso.example")["grant_id"]
    receiver.wait_for(1)
    emu.anon.post("/_emulator/webhooks/faults", json={"hold": True})
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 5})
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"})
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 5})
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "valid"})
    time.sleep(0.2)
    assert len(receiver.notes()) == 1  # held
    assert emu.anon.post("/_emulator/webhooks/release", json={"order": "reverse"}).json()["released"] == 2
    notes = receiver.wait_for(3)
    assert [n["type"] for n in notes[1:]] == ["grant.updated", "grant.expired"]
    assert notes[1]["time"] > notes[2]["time"]


def test_delay_fault_and_manual_send(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, receiver, _ = hooked
    grant_id = emu.connect("ada@contoso.example")["grant_id"]
    receiver.wait_for(1)
    emu.anon.post("/_emulator/webhooks/faults", json={"delay_ms": 300})
    started = time.monotonic()
    r = emu.anon.post(
        "/_emulator/webhooks/send", json={"trigger_type": "grant.expired", "grant_id": grant_id}
    )
    assert r.status_code == 202
    receiver.wait_for(2)
    assert time.monotonic() - started >= 0.3
    assert (
        emu.anon.post(
            "/_emulator/webhooks/send", json={"trigger_type": "x", "grant_id": grant_id}
        ).status_code
        == 400
    )


def test_reset_forgets_destinations(hooked: tuple[Emu, Receiver, dict[str, Any]]) -> None:
    emu, _, _ = hooked
    emu.anon.post("/_emulator/reset")
    assert emu.api.get("/v3/webhooks").json()["data"] == []
