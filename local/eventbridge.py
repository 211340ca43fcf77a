"""A local stand-in for Amazon EventBridge's PutEvents (AWS JSON 1.1), for the local stack.

botocore's `events` client is pointed here with `AWS_ENDPOINT_URL_EVENTBRIDGE`; every entry for the
configured bus is kept (`events`) and handed to the targets, the way a rule on `source: teams-connect`
would deliver it (the demo app is the target locally). Entries for another bus are refused per entry
(`ResourceNotFoundException`), as EventBridge does for a bus that does not exist.

`fail_next(n)` (or `POST /_local/fail-next {"count": n}`) makes the next n entries fail
(`InternalFailure`), to show that the publisher retries and loses nothing. With a `faults` book
(local/aws_faults.py, armed through the stack's `POST /_local/faults`), a whole `PutEvents` call can
also be throttled, fail with a 500 or time out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.aws_faults import FaultBook

LOG = logging.getLogger("local.eventbridge")
Target = Callable[[dict[str, Any]], None]  # {"detail_type", "detail", "source", "id"}


@dataclass
class LocalEventBridge:
    bus: str = "default"
    targets: list[Target] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    faults: FaultBook | None = None
    _failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures = count

    def put_events(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        delivered: list[dict[str, Any]] = []
        with self._lock:
            for entry in entries:
                bus = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
                if bus != self.bus:
                    results.append(
                        {"ErrorCode": "ResourceNotFoundException", "ErrorMessage": f"no bus {bus}"}
                    )
                    continue
                if self._failures > 0:
                    self._failures -= 1
                    results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "injected failure"})
                    continue
                try:
                    detail = json.loads(str(entry.get("Detail") or "{}"))
                except ValueError:
                    results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is not JSON"})
                    continue
                event = {
                    "id": str(uuid.uuid4()),
                    "source": entry.get("Source"),
                    "detail_type": entry.get("DetailType"),
                    "detail": detail,
                }
                self.events.append(event)
                delivered.append(event)
                results.append({"EventId": event["id"]})
        for event in delivered:
            for target in self.targets:
                try:
                    target(event)
                except Exception:  # a target's failure is EventBridge's retry business, not the caller's
                    LOG.exception("local EventBridge target failed")
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    async def asgi_endpoint(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if target != "AWSEvents.PutEvents":
            return JSONResponse(
                {"__type": "UnknownOperationException", "message": f"{target[:64]} is not emulated"}, 400
            )
        fault = self.faults.take("events", "PutEvents") if self.faults is not None else None
        if fault is not None:
            if fault.delay_ms:
                await asyncio.sleep(fault.delay_ms / 1000)
            if fault.kind != "timeout":
                status, headers, content = fault.response()
                return Response(content, status_code=status, headers=headers)
        try:
            body = json.loads(await request.body())
            entries = body["Entries"]
            if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
                raise ValueError("1 to 10 entries")
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"__type": "ValidationException", "message": str(exc)[:200]}, 400)
        answer = self.put_events(entries)
        return Response(json.dumps(answer), media_type="application/x-amz-json-1.1")

    async def fail_next_endpoint(self, request: Request) -> Response:
        try:
            count = int((await request.json())["count"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": 'expected {"count": n}'}, 400)
        self.fail_next(max(0, min(count, 1000)))
        return JSONResponse({"fail_next": count})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self.asgi_endpoint, methods=["POST"]),
                Route("/_local/fail-next", self.fail_next_endpoint, methods=["POST"]),
            ]
        )
