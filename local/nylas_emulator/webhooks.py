"""v3 webhook destinations and signed deliveries (nylas-lifecycle.md §1).

API (Bearer API key):
- ``POST /v3/webhooks``: ``{trigger_types*, webhook_url*, description, notification_email_addresses,
  compressed_delivery}`` → 200 with ``webhook_secret`` (shown only here and on rotate). The challenge
  runs during the call: a ``GET <webhook_url>?challenge=<random>`` that must answer 200 with exactly the
  value within 10 s, else 400 ``unable.verify.webhook_url``.
- ``GET /v3/webhooks``, ``GET|PUT|DELETE /v3/webhooks/{id}`` (no secret in these answers; PUT is a
  partial update, ``status`` ``active``|``pause``; re-activation runs the challenge again).
- ``POST /v3/webhooks/rotate-secret/{id}``: a new secret, the old one stops at once.

Deliveries: a grant change (consent → ``grant.created`` or, re-authentication, ``grant.updated``;
``DELETE /v3/grants/{id}`` → ``grant.deleted``; the control call that sets a grant ``invalid`` →
``grant.expired``, ``valid`` → ``grant.updated``) is POSTed to every active destination subscribed to
the trigger, signed ``x-nylas-signature: hex(HMAC-SHA256(secret, body))`` (gzip with
``Content-Encoding: gzip`` when ``compressed_delivery``). A non-200 answer or a timeout is retried: 3
attempts in all (Nylas: over 10-20 minutes; here after ``retry_delays`` seconds), the same ``id`` each
time.

Control (``/_emulator/webhooks/...``, no auth): ``faults`` (``duplicate``: each notification twice;
``hold``: keep notifications until ``release``, which sends them in ``fifo`` or ``reverse`` order, i.e.
out of order; ``delay_ms``: wait before each send), ``release``, ``deliveries`` (what was sent and the
answers; ``pending``: how many are still queued, being sent or held) and ``send`` (emit a trigger
for an existing grant, e.g. to replay).
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .common import config_of, require_api_key, store_of, v3_fail, v3_json
from .errors import NylasError, request_id_of
from .faults import CONTROL_PREFIX
from .state import Grant, Store, new_id
from .validation import Fields, is_http_url, json_object

log = logging.getLogger("nylas_emulator.webhooks")

TRIGGERS = (
    "grant.created",
    "grant.updated",
    "grant.deleted",
    "grant.expired",
    "event.created",
    "event.updated",
    "event.deleted",
)
CODES = {"grant.created": 25012, "grant.updated": 25014, "grant.deleted": 25013, "grant.expired": 25009}
CHALLENGE_TIMEOUT = 10.0
DEFAULT_RETRY_DELAYS = (1.0, 2.0)  # Nylas: 3 attempts over 10-20 minutes; scaled down locally


@dataclass
class Webhook:
    id: str
    webhook_url: str
    trigger_types: list[str]
    secret: str = field(repr=False)
    description: str = ""
    notification_email_addresses: list[str] = field(default_factory=list)
    compressed_delivery: bool = False
    status: str = "active"
    created_at: int = 0
    updated_at: int = 0
    status_updated_at: int = 0

    def to_v3(self, *, with_secret: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "trigger_types": list(self.trigger_types),
            "webhook_url": self.webhook_url,
            "status": self.status,
            "notification_email_addresses": list(self.notification_email_addresses),
            "compressed_delivery": self.compressed_delivery,
            "status_updated_at": self.status_updated_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if with_secret:
            data["webhook_secret"] = self.secret
        return data


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    webhook_id: str = field(compare=False)
    notification: dict[str, Any] = field(compare=False)
    attempt: int = field(compare=False, default=1)


@dataclass
class DeliveryFaults:
    duplicate: int = 0  # next N notifications are sent twice
    hold: bool = False  # keep notifications until release
    delay_ms: int = 0  # wait before each send


class Dispatcher:
    """Queues notifications and POSTs them from one background thread, with retries."""

    def __init__(self, store: Store, retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS) -> None:
        self.store = store
        self.retry_delays = retry_delays
        self.webhooks: dict[str, Webhook] = {}
        self.faults = DeliveryFaults()
        self.held: list[tuple[str, dict[str, Any]]] = []
        self.deliveries: list[dict[str, Any]] = []
        self._queue: list[_Queued] = []
        self._seq = itertools.count()
        self._cond = threading.Condition(store.lock)
        self._thread: threading.Thread | None = None
        self.in_flight = 0  # popped from the queue, being sent
        self.post: Callable[[str, bytes, dict[str, str]], int] = _post

    def pending(self) -> int:
        """Notifications not yet answered for good: queued (retries included), being sent, or held."""
        with self._cond:
            return len(self._queue) + self.in_flight + len(self.held)

    def reset(self) -> None:
        with self._cond:
            self.webhooks.clear()
            self.faults = DeliveryFaults()
            self.held.clear()
            self.deliveries.clear()
            self._queue.clear()

    # -- emitting ------------------------------------------------------------------------------
    def emit(self, trigger: str, grant: Grant, **extra: Any) -> None:
        """One notification of `trigger` about `grant` to every subscribed active destination."""
        with self._cond:
            targets = [
                w for w in self.webhooks.values() if w.status == "active" and trigger in w.trigger_types
            ]
            if not targets:
                return
            obj: dict[str, Any] = {
                "code": CODES.get(trigger, 0),
                "grant_id": grant.id,
                "integration_id": "microsoft",
                "provider": grant.provider,
                "email": grant.email,
            }
            if trigger == "grant.created":
                obj["scope"] = list(grant.scope)
                obj["login_id"] = new_id()
            if trigger == "grant.expired":
                obj["grant_updated_at"] = grant.updated_at
            obj.update(extra)
            note = {
                "specversion": "1.0",
                "type": trigger,
                "source": "/nylas/system",
                "id": new_id(),
                "time": self.store.now_int(),
                "webhook_delivery_attempt": 1,
                "data": {"application_id": "emulator-application", "object": obj},
            }
            copies = 2 if self.faults.duplicate > 0 else 1
            if self.faults.duplicate > 0:
                self.faults.duplicate -= 1
            for webhook in targets:
                for _ in range(copies):
                    if self.faults.hold:
                        self.held.append((webhook.id, note))
                    else:
                        self._enqueue(webhook.id, note, delay=self.faults.delay_ms / 1000)

    def release(self, order: str) -> int:
        with self._cond:
            held = list(reversed(self.held)) if order == "reverse" else list(self.held)
            self.held.clear()
            self.faults.hold = False
            for index, (webhook_id, note) in enumerate(held):
                self._enqueue(webhook_id, note, delay=index * 0.05)  # keeps the chosen order
            return len(held)

    def _enqueue(self, webhook_id: str, note: dict[str, Any], *, delay: float, attempt: int = 1) -> None:
        heapq.heappush(
            self._queue, _Queued(time.monotonic() + delay, next(self._seq), webhook_id, note, attempt)
        )
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="nylas-emulator-webhooks", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    # -- sending -------------------------------------------------------------------------------
    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            with self._cond:
                if not self._queue:
                    if time.monotonic() - idle_since > 5:
                        self._thread = None
                        return
                    self._cond.wait(0.5)
                    continue
                wait = self._queue[0].due - time.monotonic()
                if wait > 0:
                    self._cond.wait(min(wait, 0.5))
                    continue
                item = heapq.heappop(self._queue)
                webhook = self.webhooks.get(item.webhook_id)
                if webhook is None or webhook.status != "active":
                    continue
                note = {**item.notification, "webhook_delivery_attempt": item.attempt}
                body = json.dumps(note, separators=(",", ":")).encode()
                headers = {"content-type": "application/json", "user-agent": "Nylas-Emulator-Webhooks"}
                if webhook.compressed_delivery:
                    body = gzip.compress(body)
                    headers["content-encoding"] = "gzip"
                headers["x-nylas-signature"] = sign(webhook.secret, body)
                url = webhook.webhook_url
                self.in_flight += 1
            try:
                status = self.post(url, body, headers)
            finally:
                with self._cond:
                    self.in_flight -= 1
            with self._cond:
                self.deliveries.append(
                    {
                        "webhook_id": item.webhook_id,
                        "id": note["id"],
                        "type": note["type"],
                        "grant_id": note["data"]["object"]["grant_id"],
                        "time": note["time"],
                        "attempt": item.attempt,
                        "status": status,
                    }
                )
                if status != 200 and item.attempt <= len(self.retry_delays):
                    self._enqueue(
                        item.webhook_id,
                        item.notification,
                        delay=self.retry_delays[item.attempt - 1],
                        attempt=item.attempt + 1,
                    )
            idle_since = time.monotonic()


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    try:
        return httpx.post(url, content=body, headers=headers, timeout=10.0).status_code
    except httpx.HTTPError as exc:
        log.info("webhook delivery to %s failed: %s", url, type(exc).__name__)
        return 0


def dispatcher_of(store: Store) -> Dispatcher:
    """The store's dispatcher (created once; `Store.reset` forgets its state through `reset`)."""
    with store.lock:
        found = getattr(store, "webhook_dispatcher", None)
        if found is None:
            found = Dispatcher(store)
            store.webhook_dispatcher = found  # type: ignore[attr-defined]
        assert isinstance(found, Dispatcher)
        return found


# --------------------------------------------------------------------------- v3 API


async def _challenge(url: str) -> None:
    value = secrets.token_urlsafe(24)
    try:
        async with httpx.AsyncClient(timeout=CHALLENGE_TIMEOUT) as http:
            answer = await http.get(url, params={"challenge": value})
    except httpx.HTTPError as exc:
        raise NylasError(400, "70005", f"unable.verify.webhook_url : {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise NylasError(
            400, "70005", f"unable.verify.webhook_url : status is not ok, got {answer.status_code}"
        )
    if answer.text != value:
        raise NylasError(400, "70005", "unable.verify.webhook_url : challenge mismatch")


def _triggers(fields: Fields, *, required: bool) -> list[str] | None:
    triggers = fields.str_list("trigger_types", required=required, max_items=50, max_len=64)
    if triggers is None:
        return None
    if not triggers:
        raise v3_fail(400, "trigger_types must not be empty")
    unknown = [t for t in triggers if t not in TRIGGERS]
    if unknown:
        raise v3_fail(400, f"Unknown trigger type '{unknown[0]}'")
    return list(dict.fromkeys(triggers))


def _url(fields: Fields, *, required: bool) -> str | None:
    url = fields.string("webhook_url", required=required, max_len=2048)
    if url is not None and not is_http_url(url):
        raise v3_fail(400, "webhook_url must be an absolute http(s) URL")
    return url


async def _fields(request: Request) -> Fields:
    return Fields(await json_object(request, config_of(request).max_body_bytes, v3_fail), v3_fail)


def _find(request: Request) -> Webhook:
    webhook = dispatcher_of(store_of(request)).webhooks.get(request.path_params["id"])
    if webhook is None:
        raise NylasError(404, "not_found_error", f"Webhook '{request.path_params['id'][:64]}' not found")
    return webhook


async def create_webhook(request: Request) -> Response:
    require_api_key(request)
    fields = await _fields(request)
    triggers = _triggers(fields, required=True)
    url = _url(fields, required=True)
    assert triggers is not None
    assert url is not None
    dispatcher = dispatcher_of(store_of(request))
    with store_of(request).lock:
        if any(w.webhook_url == url for w in dispatcher.webhooks.values()):
            raise v3_fail(400, "A webhook with this webhook_url already exists")
    emails = fields.str_list("notification_email_addresses", max_items=20, max_len=320)
    await _challenge(url)
    now = store_of(request).now_int()
    webhook = Webhook(
        id=new_id(),
        webhook_url=url,
        trigger_types=triggers,
        secret=secrets.token_hex(32),
        description=fields.string("description", max_len=1024) or "",
        notification_email_addresses=emails or [],
        compressed_delivery=bool(fields.boolean("compressed_delivery")),
        created_at=now,
        updated_at=now,
        status_updated_at=now,
    )
    with store_of(request).lock:
        dispatcher.webhooks[webhook.id] = webhook
    return v3_json(request, webhook.to_v3(with_secret=True))


async def list_webhooks(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        data = [w.to_v3() for w in dispatcher_of(store_of(request)).webhooks.values()]
    return v3_json(request, data)


async def get_webhook(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        return v3_json(request, _find(request).to_v3())


async def update_webhook(request: Request) -> Response:
    require_api_key(request)
    fields = await _fields(request)
    webhook = _find(request)
    triggers = _triggers(fields, required=False)
    url = _url(fields, required=False)
    status = fields.string("status", max_len=16)
    if status is not None and status not in ("active", "pause"):
        raise v3_fail(400, "status must be 'active' or 'pause'")
    if (status == "active" and webhook.status != "active") or (
        url is not None and url != webhook.webhook_url
    ):
        await _challenge(url or webhook.webhook_url)
    now = store_of(request).now_int()
    with store_of(request).lock:
        if triggers is not None:
            webhook.trigger_types = triggers
        if url is not None:
            webhook.webhook_url = url
        description = fields.string("description", max_len=1024)
        if description is not None:
            webhook.description = description
        if fields.has("compressed_delivery"):
            webhook.compressed_delivery = bool(fields.boolean("compressed_delivery"))
        if status is not None and status != webhook.status:
            webhook.status = status
            webhook.status_updated_at = now
        webhook.updated_at = now
        return v3_json(request, webhook.to_v3())


async def delete_webhook(request: Request) -> Response:
    require_api_key(request)
    webhook = _find(request)
    with store_of(request).lock:
        dispatcher_of(store_of(request)).webhooks.pop(webhook.id, None)
    return v3_json(request, {"status": "success"})


async def rotate_secret(request: Request) -> Response:
    require_api_key(request)
    webhook = _find(request)
    with store_of(request).lock:
        webhook.secret = secrets.token_hex(32)
        webhook.updated_at = store_of(request).now_int()
        return v3_json(request, webhook.to_v3(with_secret=True))


# --------------------------------------------------------------------------- control


def _control(request: Request, body: dict[str, Any], status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({**body, "request_id": request_id_of(request)}, status_code=status)


async def set_faults(request: Request) -> Response:
    fields = await _fields(request)
    dispatcher = dispatcher_of(store_of(request))
    with store_of(request).lock:
        faults = dispatcher.faults
        duplicate = fields.integer("duplicate", lo=0, hi=1000)
        if duplicate is not None:
            faults.duplicate = duplicate
        hold = fields.boolean("hold")
        if hold is not None:
            faults.hold = hold
        delay = fields.integer("delay_ms", lo=0, hi=600000)
        if delay is not None:
            faults.delay_ms = delay
        return _control(request, {"faults": vars(faults).copy()})


async def release(request: Request) -> Response:
    fields = await _fields(request)
    order = fields.string("order", max_len=16) or "fifo"
    if order not in ("fifo", "reverse"):
        raise v3_fail(400, "order must be 'fifo' or 'reverse'")
    return _control(request, {"released": dispatcher_of(store_of(request)).release(order)})


async def deliveries(request: Request) -> Response:
    with store_of(request).lock:
        dispatcher = dispatcher_of(store_of(request))
        return _control(request, {"deliveries": list(dispatcher.deliveries), "pending": dispatcher.pending()})


async def send(request: Request) -> Response:
    fields = await _fields(request)
    trigger = fields.req_string("trigger_type", max_len=64)
    if trigger not in CODES:
        raise v3_fail(400, f"trigger_type must be one of {', '.join(CODES)}")
    grant_id = fields.req_string("grant_id", max_len=256)
    store = store_of(request)
    with store.lock:
        grant = store.grants.get(grant_id)
        if grant is None:
            raise NylasError(404, "grant.not_found", f"Grant '{grant_id[:64]}' not found")
        dispatcher_of(store).emit(trigger, grant)
    return _control(request, {"sent": trigger}, status=202)


def routes() -> list[Route]:
    p = CONTROL_PREFIX
    return [
        Route("/v3/webhooks", create_webhook, methods=["POST"]),
        Route("/v3/webhooks", list_webhooks, methods=["GET"]),
        Route("/v3/webhooks/rotate-secret/{id}", rotate_secret, methods=["POST"]),
        Route("/v3/webhooks/{id}", get_webhook, methods=["GET"]),
        Route("/v3/webhooks/{id}", update_webhook, methods=["PUT"]),
        Route("/v3/webhooks/{id}", delete_webhook, methods=["DELETE"]),
        Route(f"{p}webhooks/faults", set_faults, methods=["POST"]),
        Route(f"{p}webhooks/release", release, methods=["POST"]),
        Route(f"{p}webhooks/deliveries", deliveries, methods=["GET"]),
        Route(f"{p}webhooks/send", send, methods=["POST"]),
    ]
