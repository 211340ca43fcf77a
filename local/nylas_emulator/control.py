"""Control API under ``/_emulator/`` (no auth; local use only). See README.md for curl examples.

- ``GET    /_emulator/health``                   liveness
- ``POST   /_emulator/reset``                    forget all state, counters, faults and clock offset
- ``POST   /_emulator/faults``                   inject a fault for the next N calls of one route template
- ``GET    /_emulator/faults``                   pending faults
- ``DELETE /_emulator/faults``                   remove all faults
- ``POST   /_emulator/grants/{grant_id}/status`` ``{"status": "valid"|"invalid"}``
- ``GET    /_emulator/calls``                    call counts per route template
- ``DELETE /_emulator/calls``                    reset the counts
- ``GET    /_emulator/state``                    debugging dump, secrets masked
- ``POST   /_emulator/clock``                    ``{"advance_seconds": n}``: move the emulator's clock forward
- ``/_emulator/webhooks/{faults,release,deliveries,send}``: webhook delivery faults (webhooks.py)

Setting a grant's status sends Nylas's notification to the webhook destinations: ``invalid`` →
``grant.expired``, ``valid`` → ``grant.updated``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .common import config_of, store_of, v3_fail
from .errors import NylasError, request_id_of
from .faults import CONTROL_PREFIX
from .state import Fault
from .validation import Fields, json_object
from .webhooks import dispatcher_of

HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
HEADER_VALUE_RE = re.compile(r"^[\t\x20-\x7e]{0,1024}$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _json(request: Request, body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({**body, "request_id": request_id_of(request)}, status_code=status)


async def _body(request: Request) -> Fields:
    return Fields(await json_object(request, config_of(request).max_body_bytes, v3_fail), v3_fail)


def emulated_routes(request: Request) -> dict[str, set[str]]:
    """Route template → methods, for every non-control route."""
    routes: dict[str, set[str]] = {}
    for route in request.app.routes:
        if isinstance(route, Route) and not route.path.startswith(CONTROL_PREFIX):
            routes.setdefault(route.path, set()).update(route.methods or ())
    return routes


async def health(request: Request) -> Response:
    return _json(
        request, {"status": "ok", "service": "nylas-emulator", "public_url": config_of(request).base_url}
    )


async def reset(request: Request) -> Response:
    store_of(request).reset()
    return _json(request, {"reset": True})


async def add_fault(request: Request) -> Response:
    fields = await _body(request)
    method = fields.req_string("method", max_len=16).upper()
    path = fields.req_string("path", max_len=256)
    routes = emulated_routes(request)
    if method not in METHODS:
        raise v3_fail(400, f"method must be one of {', '.join(METHODS)}")
    if path not in routes or method not in routes[path]:
        known = ", ".join(f"{m} {p}" for p, ms in sorted(routes.items()) for m in sorted(ms) if m != "HEAD")
        raise v3_fail(400, f"No route '{method} {path}'; path must be a route template. Known: {known}")
    count = fields.integer("count", lo=1, hi=100000) or 1
    status = fields.integer("status", lo=100, hi=599)
    delay_ms = fields.integer("delay_ms", lo=0, hi=600000) or 0
    drop = bool(fields.boolean("drop"))
    headers = fields.str_map("headers", max_items=20, max_len=1024) or {}
    for name, value in headers.items():
        if not HEADER_NAME_RE.fullmatch(name) or not HEADER_VALUE_RE.fullmatch(value):
            raise v3_fail(400, f"Invalid header '{name[:64]}'")
    if status is None and not drop and not delay_ms:
        raise v3_fail(400, "A fault needs a status, a delay_ms or drop=true")
    fault = Fault(
        method=method,
        path=path,
        remaining=count,
        status=status,
        body=fields.data.get("body"),
        headers=headers,
        delay_ms=delay_ms,
        drop=drop,
    )
    store = store_of(request)
    with store.lock:
        store.faults.append(fault)
    return _json(request, {"fault": fault.to_json()}, status=201)


async def list_faults(request: Request) -> Response:
    store = store_of(request)
    with store.lock:
        return _json(request, {"faults": [f.to_json() for f in store.faults]})


async def clear_faults(request: Request) -> Response:
    store = store_of(request)
    with store.lock:
        cleared = len(store.faults)
        store.faults.clear()
    return _json(request, {"cleared": cleared})


async def set_grant_status(request: Request) -> Response:
    fields = await _body(request)
    status = fields.req_string("status", max_len=16)
    if status not in ("valid", "invalid"):
        raise v3_fail(400, "status must be 'valid' or 'invalid'")
    store = store_of(request)
    grant_id = request.path_params["grant_id"]
    with store.lock:
        grant = store.grants.get(grant_id)
        if grant is None:
            raise NylasError(404, "grant.not_found", f"Grant '{grant_id}' not found")
        changed = grant.grant_status != status
        grant.grant_status = status
        grant.updated_at = store.now_int()
        if changed:  # Nylas tells the application: grant.expired, or grant.updated when it is back
            dispatcher_of(store).emit("grant.expired" if status == "invalid" else "grant.updated", grant)
        return _json(request, {"grant": grant.to_v3()})


async def get_calls(request: Request) -> Response:
    store = store_of(request)
    with store.lock:
        return _json(request, {"calls": dict(sorted(store.calls.items()))})


async def clear_calls(request: Request) -> Response:
    store = store_of(request)
    with store.lock:
        store.calls.clear()
    return _json(request, {"calls": {}})


async def get_state(request: Request) -> Response:
    return _json(request, {"state": store_of(request).snapshot()})


async def advance_clock(request: Request) -> Response:
    fields = await _body(request)
    seconds = fields.integer("advance_seconds", required=True, lo=1, hi=10 * 365 * 86400)
    assert seconds is not None
    store = store_of(request)
    store.advance(seconds)
    return _json(request, {"now": store.now_int(), "clock_offset_seconds": store.clock_offset})


def routes() -> list[Route]:
    p = CONTROL_PREFIX
    return [
        Route(f"{p}health", health, methods=["GET"]),
        Route(f"{p}reset", reset, methods=["POST"]),
        Route(f"{p}faults", add_fault, methods=["POST"]),
        Route(f"{p}faults", list_faults, methods=["GET"]),
        Route(f"{p}faults", clear_faults, methods=["DELETE"]),
        Route(f"{p}grants/{{grant_id}}/status", set_grant_status, methods=["POST"]),
        Route(f"{p}calls", get_calls, methods=["GET"]),
        Route(f"{p}calls", clear_calls, methods=["DELETE"]),
        Route(f"{p}state", get_state, methods=["GET"]),
        Route(f"{p}clock", advance_clock, methods=["POST"]),
    ]
