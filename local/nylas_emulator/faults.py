"""The outer ASGI middleware: request ids, per-route call counters, injected faults, and the catch-all.

For every HTTP request it

1. assigns a request id (``request.state.request_id``) and adds ``X-Request-Id`` to every response;
2. finds the route *template* the request matches (e.g. ``POST /v3/grants/{grant_id}/events``) and, for
   non-control routes, counts the call (also when a fault then fires);
3. applies the first matching fault (``POST /_emulator/faults``): wait ``delay_ms``, then either drop the
   connection, answer ``status`` with the fault's (or a Nylas-shaped default) body, or, with no status,
   let the request through;
4. turns any unexpected exception into a Nylas-shaped 500 without details.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ERROR_URI, V3_TYPE_BY_STATUS, v3_error_body
from .state import Fault, Store

CONTROL_PREFIX = "/_emulator/"
log = logging.getLogger("nylas_emulator")


class DropConnection(Exception):
    """Raised after a deliberately broken response start: the server closes the socket without a reply."""


class _HideDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


def install_log_filter() -> None:
    """Keep uvicorn from logging a traceback for every deliberately dropped connection."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in logger.filters):
        logger.addFilter(_HideDrops())


def route_template(scope: Scope) -> str | None:
    """The path template of the route that fully matches ``scope`` (method included), else ``None``."""
    app = scope.get("app")
    for route in getattr(app, "routes", []):
        if isinstance(route, Route):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
    return None


def default_fault_body(status: int, path: str, request_id: str) -> Any:
    """A body shaped like the surface the route belongs to."""
    if path in ("/v3/connect/token", "/v3/connect/revoke"):
        error = {429: "slow_down", 503: "temporarily_unavailable"}.get(
            status, "server_error" if status >= 500 else "invalid_request"
        )
        return {
            "error": error,
            "error_code": status,
            "error_description": f"Injected fault: HTTP {status}",
            "error_uri": ERROR_URI,
        }
    if path.startswith("/connect/"):
        return {
            "message": f"Injected fault: HTTP {status}",
            "type": V3_TYPE_BY_STATUS.get(status, "api_error"),
        }
    return v3_error_body(request_id, status, message=f"Injected fault: HTTP {status}")


class EmulatorMiddleware:
    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        template = route_template(scope)
        fault: Fault | None = None
        if template is not None and not template.startswith(CONTROL_PREFIX):
            self.store.count_call(f"{scope['method']} {template}")
            fault = self.store.take_fault(scope["method"], template)
        try:
            if fault is not None:
                if fault.delay_ms and fault.status is None and not fault.drop:
                    # A slow Nylas that still does the work: the request was received in full before
                    # the wait, so a client that gave up meanwhile (a timed-out create) does not undo it.
                    receive = await _buffered(receive)
                if fault.delay_ms:
                    await asyncio.sleep(fault.delay_ms / 1000)
                if fault.drop:
                    await _drop(send)
                if fault.status is not None:
                    await _send_fault(fault, template or "", request_id, send_with_id)
                    return
            await self.app(scope, receive, send_with_id)
        except DropConnection:
            raise
        except Exception:
            if started:
                raise
            log.exception("unhandled error (request id %s)", request_id)
            body = v3_error_body(request_id, 500, "internal_error", "Internal error in the Nylas emulator")
            await _send_json(send_with_id, 500, body, {})


async def _buffered(receive: Receive) -> Receive:
    """Read the whole request body now; the app then reads it from memory."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return replay


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    header_list += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


async def _send_fault(fault: Fault, template: str, request_id: str, send: Send) -> None:
    assert fault.status is not None
    body = fault.body if fault.body is not None else default_fault_body(fault.status, template, request_id)
    await _send_json(send, fault.status, body, fault.headers)


async def _drop(send: Send) -> None:
    """Close the connection without sending a single byte.

    The response start carries an illegal header value, so the server (uvicorn: h11 or httptools) marks the
    response as started, refuses to serialise it, and - when the app then raises - closes the socket. The
    client sees the connection close with no response (httpx: ``RemoteProtocolError``).
    """
    with contextlib.suppress(Exception):  # the server refusing the header is the point
        await send({"type": "http.response.start", "status": 500, "headers": [(b"x-drop", b"\n")]})
    raise DropConnection
