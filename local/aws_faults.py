"""Injected AWS faults for the local stack: throttling, 5xx and timeouts of DynamoDB, Secrets Manager
and EventBridge, armed for the next N matching calls (the control route `POST /_local/faults`).

moto serves DynamoDB and Secrets Manager through a WSGI app; `FaultyMotoServer` puts `FaultMiddleware`
in front of it, which reads the operation from `X-Amz-Target` (`DynamoDB_20120810.PutItem`,
`secretsmanager.GetSecretValue`) and answers an armed fault in the service's own JSON error shape, so
the functions' botocore clients see what AWS would send (and retry it as they would: standard mode
retries throttling and 5xx up to 3 attempts in all). The local EventBridge checks the same book for
`PutEvents`.

- `throttling`: 400 with the service's throttling code (`ProvisionedThroughputExceededException`,
  `ThrottlingException`).
- `internal`: 500 (`InternalServerError`, `InternalServiceError`, `InternalException`).
- `timeout`: the call waits `delay_ms` (default 5500: longer than the functions' 5 s read timeout)
  and is then served: the caller gave up, but the write may still have happened, as with a real
  timeout.

`operation: "*"` matches the data-plane operations the functions use (`DATA_PLANE`), never the
inspection calls (Scan, DescribeTable) or the tables' streams.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

KINDS = ("throttling", "internal", "timeout")
DEFAULT_TIMEOUT_DELAY_MS = 5500
_TARGET_PREFIX = {"DynamoDB_20120810": "dynamodb", "secretsmanager": "secretsmanager", "AWSEvents": "events"}
DATA_PLANE = {
    "dynamodb": frozenset(
        {
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "TransactWriteItems",
            "TransactGetItems",
            "BatchGetItem",
            "BatchWriteItem",
        }
    ),
    "secretsmanager": frozenset({"GetSecretValue"}),
    "events": frozenset({"PutEvents"}),
}
_ERRORS: dict[str, dict[str, tuple[int, str]]] = {
    "dynamodb": {
        "throttling": (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"),
        "internal": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
    },
    "secretsmanager": {"throttling": (400, "ThrottlingException"), "internal": (500, "InternalServiceError")},
    "events": {"throttling": (400, "ThrottlingException"), "internal": (500, "InternalException")},
}
_CONTENT_TYPE = {"dynamodb": "application/x-amz-json-1.0"}


@dataclass
class AwsFault:
    service: str
    operation: str
    kind: str
    remaining: int
    delay_ms: int = 0

    def matches(self, service: str, operation: str) -> bool:
        if self.service != service or self.remaining <= 0:
            return False
        return operation in DATA_PLANE[service] if self.operation == "*" else operation == self.operation

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "kind": self.kind,
            "remaining": self.remaining,
            "delay_ms": self.delay_ms,
        }

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, code = _ERRORS[self.service][self.kind]
        body = json.dumps({"__type": code, "message": f"Injected fault: {self.kind}"}).encode()
        content_type = _CONTENT_TYPE.get(self.service, "application/x-amz-json-1.1")
        return status, {"Content-Type": content_type, "x-amzn-ErrorType": code.rsplit("#", 1)[-1]}, body


class FaultBook:
    """The armed faults (thread-safe) and how many fired, per service/kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[AwsFault] = []
        self.fired: dict[str, int] = {}

    def arm(
        self, service: str, operation: str, kind: str, count: int = 1, delay_ms: int | None = None
    ) -> AwsFault:
        if service not in DATA_PLANE:
            raise ValueError(f"service must be one of {', '.join(DATA_PLANE)}")
        if operation != "*" and operation not in DATA_PLANE[service]:
            raise ValueError(f"operation must be '*' or one of {', '.join(sorted(DATA_PLANE[service]))}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if not 1 <= count <= 1000:
            raise ValueError("count must be 1 to 1000")
        if delay_ms is not None and not 0 <= delay_ms <= 60000:
            raise ValueError("delay_ms must be 0 to 60000")
        if kind == "timeout":
            delay = DEFAULT_TIMEOUT_DELAY_MS if delay_ms is None else delay_ms
        else:
            delay = delay_ms or 0
        fault = AwsFault(service, operation, kind, count, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, service: str, operation: str) -> AwsFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, operation):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    key = f"{service}:{fault.kind}"
                    self.fired[key] = self.fired.get(key, 0) + 1
                    return fault
            return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear(self) -> int:
        with self._lock:
            cleared = len(self._faults)
            self._faults.clear()
            return cleared


def operation_of(target: str) -> tuple[str, str] | None:
    """`X-Amz-Target` → (service, operation), for the services faults apply to."""
    prefix, _, operation = target.partition(".")
    service = _TARGET_PREFIX.get(prefix)
    return (service, operation) if service and operation else None


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FaultMiddleware:
    def __init__(self, app: WsgiApp, book: FaultBook) -> None:
        self.app = app
        self.book = book

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        found = operation_of(str(environ.get("HTTP_X_AMZ_TARGET", "")))
        fault = self.book.take(*found) if found else None
        if fault is None:
            return self.app(environ, start_response)
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000)
        if fault.kind == "timeout":
            return self.app(environ, start_response)
        status, headers, body = fault.response()
        reason = "Bad Request" if status == 400 else "Internal Server Error"
        start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]


class FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with `FaultMiddleware` in front of its app."""

    def __init__(self, book: FaultBook, ip_address: str = "127.0.0.1", port: int = 5000) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self.book = book

    def _server_entry(self) -> None:
        app = FaultMiddleware(DomainDispatcherApplication(create_backend_app), self.book)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()
