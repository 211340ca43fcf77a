"""One route per function: an API Gateway HTTP API (payload 2.0) event in, the response dict out.

Why not Powertools' `APIGatewayHttpResolver`: importing `aws_lambda_powertools.event_handler` loads
every resolver of the package (AppSync, Bedrock, ALB, OpenAPI, …; ≈ 110 ms of a cold start here)
for functions that each serve exactly one route. This module reads the event as API Gateway sends it
and keeps what the resolver gave us: the route match on `rawPath` (same segment characters), one
place where exceptions become the contract's answers (`web.api_error` / `web.browser_error`),
404 for anything else, and the Powertools Logger / Metrics / Tracer decorators.

The lean handler pattern (every function behind the HTTP API follows it):

    from teams_connect.http import apigw, web
    from teams_connect.config import get_settings
    from teams_connect.domain.flow import build_flow

    flow = build_flow(get_settings(), with_nylas=False)   # clients once per container, no I/O

    @apigw.api_route("GET", "/v1/grants/{user_id}")        # or apigw.browser_route(...)
    def lambda_handler(request: apigw.Request) -> web.Response:
        flow.authenticate(request.header("authorization"))
        ...
        return web.json_response(200, {...})

`lambda_handler` is then the `(event, context) -> dict` function Lambda calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from teams_connect import snapstart
from teams_connect.http import web
from teams_connect.observability import logger, metrics, tracer

# Powertools' segment characters for `<name>` (event_handler.api_gateway._NAMED_GROUP_BOUNDARY_PATTERN).
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

snapstart.register_hooks()  # SnapStart: after-restore hooks must be registered at init


@dataclass(frozen=True)
class Request:
    """The parts of an HTTP API 2.0 event a handler reads. `path_params` are as matched in `rawPath`
    (still percent-encoded: decode with `web.path_param`)."""

    method: str
    raw_path: str
    raw_query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: tuple[str, ...] = ()
    body: str = ""
    is_base64_encoded: bool = False
    path_params: Mapping[str, str] = field(default_factory=dict)
    context: Any = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def compile_path(template: str) -> re.Pattern[str]:
    """`/v1/grants/{user_id}` → a regex with one named group per placeholder."""
    parts = _PLACEHOLDER.split(template)
    regex = "".join(
        f"(?P<{part}>{_SEGMENT})" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")


def parse_event(event: Mapping[str, Any], context: Any = None) -> tuple[str, str, Request]:
    """Method, raw path and the request of an HTTP API 2.0 event (header names lower-cased)."""
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or "").upper()
    raw_path = str(event.get("rawPath") or http.get("path") or "")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    request = Request(
        method=method,
        raw_path=raw_path,
        raw_query=str(event.get("rawQueryString") or ""),
        headers=headers,
        cookies=tuple(str(c) for c in event.get("cookies") or ()),
        body=str(event.get("body") or ""),
        is_base64_encoded=bool(event.get("isBase64Encoded")),
        context=context,
    )
    return method, raw_path, request


Handler = Callable[[Request], "web.Response"]
LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _route(
    method: str,
    path: str,
    on_error: Callable[[BaseException], web.Response],
    not_found: Callable[[], web.Response],
) -> Callable[[Handler], LambdaHandler]:
    pattern = compile_path(path)
    wanted = method.upper()

    def decorate(handler: Handler) -> LambdaHandler:
        def dispatch(event: dict[str, Any], context: Any) -> dict[str, Any]:
            try:
                got_method, raw_path, request = parse_event(event, context)
                found = pattern.match(raw_path)
                if got_method != wanted or found is None:
                    return not_found().to_result()
                request = _with_params(request, found.groupdict())
                response = handler(request)
            except Exception as error:
                response = on_error(error)
            return response.to_result()

        wrapped = logger.inject_lambda_context(
            correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
        )(metrics.log_metrics(tracer.capture_lambda_handler(dispatch, capture_response=False)))
        wrapped.__name__ = getattr(handler, "__name__", "lambda_handler")
        wrapped.__doc__ = handler.__doc__
        return wrapped  # type: ignore[no-any-return]

    return decorate


def _with_params(request: Request, params: dict[str, str]) -> Request:
    if not params:
        return request
    return Request(
        method=request.method,
        raw_path=request.raw_path,
        raw_query=request.raw_query,
        headers=request.headers,
        cookies=request.cookies,
        body=request.body,
        is_base64_encoded=request.is_base64_encoded,
        path_params=params,
        context=request.context,
    )


def api_route(method: str, path: str) -> Callable[[Handler], LambdaHandler]:
    """A backend-API route: every failure is the contract's JSON error, other routes a JSON 404."""
    return _route(method, path, web.api_error, web.api_not_found)


def browser_route(method: str, path: str) -> Callable[[Handler], LambdaHandler]:
    """A browser route: failures redirect to `return_to` or render the small HTML page."""
    return _route(method, path, web.browser_error, web.browser_not_found)
