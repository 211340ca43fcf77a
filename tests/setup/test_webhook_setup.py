"""The webhook destination setup (v3) against the Nylas emulator: ordering (challenge first), create,
idempotence, secret storage and rotation, re-activation, teardown; beta has none."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from local.nylas_emulator.config import EmulatorConfig
from local.nylas_emulator.server import serve_in_thread
from local.nylas_emulator.webhooks import dispatcher_of
from local.stack import bind_socket, serve_app, socket_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from teams_connect.setup import (
    DEFAULT_SCOPES,
    GRANT_TRIGGERS,
    Credentials,
    SetupError,
    SetupSpec,
    WebhookSpec,
    ensure_webhook_side,
    probe_challenge,
    teardown_webhook_side,
)

from .fakes import AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, CALLBACK

CONFIG = EmulatorConfig()
CREDS = Credentials(
    nylas_client_id=CONFIG.client_id,
    nylas_api_key=CONFIG.api_key,
    azure_client_id=AZURE_CLIENT_ID,
    azure_client_secret=AZURE_CLIENT_SECRET,
)
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tc/webhook-AbCdEf"
quick_probe = functools.partial(probe_challenge, attempts=2, delay=0.0)


class DictStore:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def read(self, arn: str) -> dict[str, Any]:
        return dict(self.values.get(arn, {}))

    def write(self, arn: str, value: dict[str, Any]) -> None:
        self.writes += 1
        self.values[arn] = dict(value)


@pytest.fixture
def emulator() -> Iterator[Any]:
    server = serve_in_thread(CONFIG, port=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def route() -> Iterator[dict[str, Any]]:
    """Our /nylas/webhooks stand-in: answers the challenge only while `serving` is true."""
    state: dict[str, Any] = {"serving": True}

    async def hook(request: Request) -> PlainTextResponse:
        if not state["serving"]:
            return PlainTextResponse('{"message":"Not Found"}', status_code=404)
        return PlainTextResponse(request.query_params.get("challenge", ""))

    sock = bind_socket("127.0.0.1", 0)
    served = serve_app(
        Starlette(routes=[Route("/nylas/webhooks", hook, methods=["GET", "POST"])]), sock, name="wh"
    )
    state["url"] = socket_url(sock) + "/nylas/webhooks"
    yield state
    served.stop()


def v3(url: str, flavour: str = "v3") -> SetupSpec:
    return SetupSpec(
        flavour="v3" if flavour == "v3" else "beta",
        base_url=url,
        tenant="common",
        callback_url=CALLBACK,
        scopes=DEFAULT_SCOPES[flavour],
    )


def emulated_secret(emulator: Any) -> str:
    hooks = list(dispatcher_of(emulator.store).webhooks.values())
    assert len(hooks) == 1
    return hooks[0].secret


def test_nothing_is_created_until_the_route_answers_the_challenge(
    emulator: Any, route: dict[str, Any]
) -> None:
    route["serving"] = False
    store = DictStore()
    try:
        with pytest.raises(SetupError, match="does not answer the challenge"):
            ensure_webhook_side(
                v3(emulator.url), CREDS, WebhookSpec(route["url"], ARN), store, probe=quick_probe
            )
    finally:
        route["serving"] = True
    assert dispatcher_of(emulator.store).webhooks == {}
    assert store.writes == 0
    # Without our probe Nylas's own challenge fails the create call: same end, nothing stored.
    route["serving"] = False
    try:
        with pytest.raises(SetupError):
            ensure_webhook_side(
                v3(emulator.url), CREDS, WebhookSpec(route["url"], ARN), store, probe=lambda _url: None
            )
    finally:
        route["serving"] = True
    assert dispatcher_of(emulator.store).webhooks == {}
    assert store.writes == 0


def test_create_stores_the_secret_then_nothing_changes(emulator: Any, route: dict[str, Any]) -> None:
    store = DictStore()
    target = WebhookSpec(route["url"], ARN)
    first = ensure_webhook_side(v3(emulator.url), CREDS, target, store, probe=quick_probe)
    assert [(a.kind, a.outcome) for a in first.actions] == [
        ("webhook", "created"),
        ("webhook secret", "updated"),
    ]
    stored = store.values[ARN]
    assert stored["webhook_secret"] == emulated_secret(emulator)
    hooks = list(dispatcher_of(emulator.store).webhooks.values())
    assert hooks[0].trigger_types == list(GRANT_TRIGGERS)
    assert stored["webhook_id"] == hooks[0].id
    assert all(stored["webhook_secret"] not in line for line in first.lines())
    second = ensure_webhook_side(v3(emulator.url), CREDS, target, store, probe=quick_probe)
    assert [a.outcome for a in second.actions] == ["unchanged", "unchanged"]
    assert not second.changed
    assert store.writes == 1


def test_rotation_stores_the_new_secret_and_keeps_the_previous(emulator: Any, route: dict[str, Any]) -> None:
    store = DictStore()
    target = WebhookSpec(route["url"], ARN)
    ensure_webhook_side(v3(emulator.url), CREDS, target, store, probe=quick_probe)
    old = store.values[ARN]["webhook_secret"]
    report = ensure_webhook_side(v3(emulator.url), CREDS, target, store, rotate=True, probe=quick_probe)
    detail = "rotated; previous accepted 3600 s more"
    assert ("webhook secret", "updated", detail) in [(a.kind, a.outcome, a.detail) for a in report.actions]
    assert store.values[ARN]["webhook_secret"] == emulated_secret(emulator) != old
    assert store.values[ARN]["previous_webhook_secret"] == old
    # Security review 3, G3: the rotated-out secret is accepted for an overlap only.
    assert 0 < store.values[ARN]["previous_expires_at"] - time.time() <= 3600


def test_rotation_with_retire_previous_keeps_no_previous_secret_and_keeps_other_keys(
    emulator: Any, route: dict[str, Any]
) -> None:
    store = DictStore()
    target = WebhookSpec(route["url"], ARN)
    ensure_webhook_side(v3(emulator.url), CREDS, target, store, probe=quick_probe)
    store.values[ARN]["registered_callback_urls"] = ["https://app.example.com/connect/callback"]
    report = ensure_webhook_side(
        v3(emulator.url), CREDS, target, store, rotate=True, retire_previous=True, probe=quick_probe
    )
    assert "previous secret retired" in " ".join(a.detail for a in report.actions)
    assert set(store.values[ARN]) == {"webhook_id", "webhook_secret", "registered_callback_urls"}
    calls = httpx.get(f"{emulator.url}/_emulator/calls").json()["calls"]
    assert calls.get("POST /v3/webhooks/rotate-secret/{id}") == 1


def test_a_lost_secret_is_recovered_by_rotation_and_a_paused_destination_reactivated(
    emulator: Any, route: dict[str, Any]
) -> None:
    target = WebhookSpec(route["url"], ARN)
    ensure_webhook_side(v3(emulator.url), CREDS, target, DictStore(), probe=quick_probe)
    webhook = next(iter(dispatcher_of(emulator.store).webhooks.values()))
    webhook.status = "pause"
    webhook.trigger_types = ["grant.created"]
    fresh = DictStore()  # e.g. a new stack's empty secret
    report = ensure_webhook_side(v3(emulator.url), CREDS, target, fresh, probe=quick_probe)
    assert [(a.kind, a.outcome) for a in report.actions] == [
        ("webhook", "updated"),
        ("webhook secret", "updated"),
    ]
    assert "status" in report.actions[0].detail
    assert webhook.status == "active"
    assert webhook.trigger_types == list(GRANT_TRIGGERS)
    assert fresh.values[ARN]["webhook_secret"] == webhook.secret
    assert "previous_webhook_secret" not in fresh.values[ARN]


def test_teardown_and_beta(emulator: Any, route: dict[str, Any]) -> None:
    target = WebhookSpec(route["url"], ARN)
    ensure_webhook_side(v3(emulator.url), CREDS, target, DictStore(), probe=quick_probe)
    gone = teardown_webhook_side(v3(emulator.url), CREDS, route["url"])
    assert [a.outcome for a in gone.actions] == ["deleted"]
    assert dispatcher_of(emulator.store).webhooks == {}
    beta = ensure_webhook_side(v3(emulator.url, "beta"), CREDS, target, DictStore(), probe=quick_probe)
    assert [(a.outcome, a.detail) for a in beta.actions] == [("absent", "beta has no webhooks")]
