"""The local stack's own control API (no auth; local use only), on its own port (`Stack.control_url`).

- `GET  /_local/health`
- `GET  /_local/schedules`: the scheduled functions of template.yaml, their local interval and runs
- `POST /_local/schedules/{function}/invoke`: run one now (e.g. `RevokeSweeperFunction`) → its result
- `POST /_local/sweep`: run the revoke sweeper now → `{"function", "result": {"revoked", "kept", "failed"}}`
- `GET  /_local/clock`, `POST /_local/clock {"advance_seconds": n}`: time passes for the functions, moto
  and the Nylas emulator at once (local/clock.py; only under `python -m local.run`)
- `GET  /_local/streams`: each table stream poller's batches and idle polls (polls that found nothing):
  once `idle_polls` has grown twice after a caller's last write, every event of it was published
- `GET|POST|DELETE /_local/faults`: AWS faults for the next N calls (local/aws_faults.py):
  `{"service": "dynamodb"|"secretsmanager"|"events", "operation": "PutItem"|…|"*",
  "kind": "throttling"|"internal"|"timeout", "count": n, "delay_ms"?: n}`

A function that raises answers 502 `{"error": "function_error", "type": <exception class>}`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local import clock
from local.aws_faults import FaultBook
from local.scheduler import REVOKE_SWEEPER, FunctionError, Scheduler
from local.streams import POLLERS


def _error(status: int, message: str, code: str = "invalid_request") -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _integer(body: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def create_control_app(scheduler: Scheduler, faults: FaultBook) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_schedules(request: Request) -> Response:
        return JSONResponse({"schedules": scheduler.describe()})

    async def run(function: str) -> Response:
        if function not in scheduler.functions:
            return _error(404, f"no scheduled function {function[:80]!r}", "not_found")
        try:
            result = await asyncio.to_thread(scheduler.invoke_now, function)
        except FunctionError as exc:
            return JSONResponse({"error": "function_error", "type": str(exc)}, status_code=502)
        return JSONResponse({"function": function, "result": result})

    async def invoke(request: Request) -> Response:
        return await run(request.path_params["function"])

    async def sweep(request: Request) -> Response:
        return await run(REVOKE_SWEEPER)

    async def list_streams(request: Request) -> Response:
        return JSONResponse({"streams": {table: p.describe() for table, p in list(POLLERS.items())}})

    async def get_clock(request: Request) -> Response:
        return JSONResponse(
            {"installed": clock.installed(), "offset_seconds": clock.offset(), "now": clock.now()}
        )

    async def advance_clock(request: Request) -> Response:
        if not clock.installed():
            return _error(
                409, "the clock is not controllable in this process (python -m local.run installs it)"
            )
        try:
            seconds = _integer(await _object(request), "advance_seconds")
            if seconds is None or not 1 <= seconds <= 10 * 365 * 86400:
                raise ValueError("advance_seconds must be an integer from 1 to 315360000")
        except ValueError as exc:
            return _error(400, str(exc))
        # Off the loop: the jump waits for a step in progress that must see one time line (clock.steady).
        offset = await asyncio.to_thread(clock.advance, seconds)
        return JSONResponse({"offset_seconds": offset, "now": clock.now()})

    async def add_fault(request: Request) -> Response:
        try:
            body = await _object(request)
            fault = faults.arm(
                str(body.get("service", "")),
                str(body.get("operation", "*")),
                str(body.get("kind", "")),
                _integer(body, "count", 1) or 0,
                _integer(body, "delay_ms"),
            )
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse({"fault": fault.to_json()}, status_code=201)

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": faults.pending(), "fired": dict(faults.fired)})

    async def clear_faults(request: Request) -> Response:
        return JSONResponse({"cleared": faults.clear()})

    return Starlette(
        routes=[
            Route("/_local/health", health, methods=["GET"]),
            Route("/_local/schedules", list_schedules, methods=["GET"]),
            Route("/_local/schedules/{function}/invoke", invoke, methods=["POST"]),
            Route("/_local/sweep", sweep, methods=["POST"]),
            Route("/_local/streams", list_streams, methods=["GET"]),
            Route("/_local/clock", get_clock, methods=["GET"]),
            Route("/_local/clock", advance_clock, methods=["POST"]),
            Route("/_local/faults", add_fault, methods=["POST"]),
            Route("/_local/faults", list_faults, methods=["GET"]),
            Route("/_local/faults", clear_faults, methods=["DELETE"]),
        ]
    )
