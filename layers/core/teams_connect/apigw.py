"""The API Gateway HTTP API (payload format 2.0) event and proxy answer, without the Powertools
event handler: the lean handlers parse the event dict themselves and answer plain dicts.

The JSON rules are those of the backend API (web.parse_json_body): `Content-Type:
application/json`, at most 16 KiB, UTF-8, no duplicate keys, no NaN/Infinity, no JSON bomb.
Every error answer goes through errors.to_http, the one mapping from an error to HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from teams_connect.errors import ConnectError, InvalidRequest, PayloadTooLarge, error_headers, to_http
from teams_connect.observability import logger

MAX_BODY_BYTES = 16 * 1024
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    raw_path: str
    headers: Mapping[str, str]  # lower-case names
    path_params: Mapping[str, str]  # percent-decoded exactly once (strict UTF-8)
    raw_query: str
    body: str
    is_base64: bool

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json_body(self) -> Any:
        """Strict JSON body, or `InvalidRequest` / `PayloadTooLarge` before anything else happens."""
        media = (self.header("content-type") or "").split(";", 1)[0].strip().lower()
        if media != "application/json":
            raise InvalidRequest("Content-Type must be application/json.")
        if self.is_base64:
            if len(self.body) > MAX_BODY_BYTES * 4 // 3 + 4:
                raise PayloadTooLarge()
            try:
                data = base64.b64decode(self.body, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest("The body is not valid base64.") from None
        else:
            data = self.body.encode("utf-8", "surrogatepass")
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        try:
            return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InvalidRequest("The body is not valid JSON.") from None


def _reject(_: str) -> Any:
    raise ValueError("non-standard JSON constant")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _path_param(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("The path is not valid UTF-8.") from None


def parse_event(event: Mapping[str, Any]) -> ApiRequest:
    """The fields of a payload 2.0 event the backend API uses. API Gateway joins repeated headers
    with commas and lower-cases their names; `pathParameters` are already decoded once by it, so the
    segments of `rawPath` are what we decode (as web.path_param does)."""
    http = (event.get("requestContext") or {}).get("http") or {}
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    raw_params = event.get("pathParameters") or {}
    return ApiRequest(
        method=str(http.get("method") or "").upper(),
        raw_path=str(event.get("rawPath") or ""),
        headers=headers,
        path_params={str(k): str(v) for k, v in raw_params.items()},
        raw_query=str(event.get("rawQueryString") or ""),
        body=str(event.get("body") or ""),
        is_base64=bool(event.get("isBase64Encoded")),
    )


def raw_path_params(request: ApiRequest, template: str) -> dict[str, str]:
    """Path parameters matched against `rawPath` (still percent-encoded), decoded exactly once.

    `template` is the route, e.g. `/v1/users/{user_id}/meetings/{meeting_id}`. A path that does not
    have the template's shape is an invalid request (API Gateway would not have routed it)."""
    names = template.strip("/").split("/")
    parts = request.raw_path.strip("/").split("/")
    if len(parts) != len(names):
        raise InvalidRequest("The path does not match the route.")
    params: dict[str, str] = {}
    for name, part in zip(names, parts, strict=True):
        if name.startswith("{") and name.endswith("}"):
            params[name[1:-1]] = _path_param(part)
        elif name != part:
            raise InvalidRequest("The path does not match the route.")
    return params


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**API_HEADERS, "Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def no_content() -> dict[str, Any]:
    return {"statusCode": 204, "headers": dict(API_HEADERS), "body": "", "isBase64Encoded": False}


def error_answer(error: BaseException) -> dict[str, Any]:
    if not isinstance(error, ConnectError):
        logger.exception("unhandled error")
    status, body = to_http(error)
    return json_answer(status, body, error_headers(error))


def handle(event: Mapping[str, Any], route: Callable[[ApiRequest], dict[str, Any]]) -> dict[str, Any]:
    """Run one route: every exception becomes the contract's JSON error (never a stack trace)."""
    try:
        return route(parse_event(event))
    except Exception as exc:
        return error_answer(exc)


def deadline_from(context: Any, *, margin: float = 1.0, cap: float = 25.0) -> float:
    """A `time.monotonic()` deadline below the Lambda timeout and API Gateway's 30 s."""
    get_remaining: Callable[[], int] | None = getattr(context, "get_remaining_time_in_millis", None)
    budget = cap
    if callable(get_remaining):
        try:
            budget = min(cap, get_remaining() / 1000 - margin)
        except (TypeError, ValueError):
            budget = cap
    return time.monotonic() + max(budget, 0.5)
