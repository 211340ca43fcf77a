"""A local stand-in for API Gateway HTTP API: template.yaml routes -> payload 2.0 events -> real handlers.

`sam local start-api` needs a container engine, so this serves the routes of template.yaml itself: each
HTTP request becomes the event API Gateway (HTTP API, payload format 2.0, stage `$default`) would
deliver, the function's real `lambda_handler(event, context)` runs in-process, and its result becomes
the HTTP response the way API Gateway maps it.

Handler modules are imported lazily (first request), once, under a unique module name each (they are
all called app.py), with `layers/core` on sys.path as the Lambda layer's `python/` directory would be.
The functions' environment must be in os.environ before the first request (local/stack.py does that).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.util
import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from local.template import LOCAL_PSEUDO_PARAMETERS, ROOT, Route, Template, http_routes, load_template

LOG = logging.getLogger("local.gateway")

Handler = Callable[[dict[str, Any], Any], Any]
HandlerLoader = Callable[[Route], Handler]

ACCOUNT_ID = str(LOCAL_PSEUDO_PARAMETERS["AWS::AccountId"])
REGION = str(LOCAL_PSEUDO_PARAMETERS["AWS::Region"])
STACK_NAME = str(LOCAL_PSEUDO_PARAMETERS["AWS::StackName"])
API_ID = "localapi01"

NOT_FOUND = b'{"message":"Not Found"}'
INTERNAL_ERROR = b'{"message":"Internal Server Error"}'

# Bodies of these media types reach the function as text; everything else (also form posts, as
# HTTP APIs do) arrives base64-encoded with isBase64Encoded = true.
_TEXT_MEDIA_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|ecmascript|x-javascript))$"
)


# --------------------------------------------------------------------------- Lambda context


@dataclass
class LambdaContext:
    """What the Python Lambda runtime passes as `context` (awslambdaric's LambdaContext)."""

    function_name: str
    memory_limit_in_mb: str  # a string in the real runtime too
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self.log_stream_name = self.log_stream_name or f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]local"

    def restart_clock(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def make_context(route: Route) -> LambdaContext:
    name = f"{STACK_NAME}-{route.function_logical_id}"
    return LambdaContext(
        function_name=name,
        memory_limit_in_mb=str(route.memory_size),
        invoked_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
        aws_request_id=str(uuid.uuid4()),
        timeout_seconds=route.timeout,
    )


# --------------------------------------------------------------------------- invocation

# Lambda never gives one execution environment two events at once, and the handlers rely on it:
# Powertools' event handler keeps the current event in a class attribute (`BaseRouter.current_event`)
# shared by every resolver of the process. All functions run in this one process (one "environment"),
# so invocations run one at a time; HTTP, moto and the emulator stay concurrent.
_INVOKE_LOCK = threading.Lock()
# How long a request may wait for the environment before the gateway gives up (API Gateway's own
# integration limit is 30 s).
QUEUE_LIMIT_SECONDS = 29


def _one_at_a_time(
    handler: Handler, event: dict[str, Any], context: LambdaContext, started: Callable[[], None]
) -> Any:
    """Run the handler once the environment is free. Lambda would have run a concurrent request in
    another environment at once, so time spent waiting here is not the function's: its timeout (and
    `get_remaining_time_in_millis`) count from when it starts (`started` is called then)."""
    with _INVOKE_LOCK:
        context.restart_clock()
        started()
        return handler(event, context)


# --------------------------------------------------------------------------- handler loading


class ModuleHandlerLoader:
    """Imports `functions/<dir>/<module>.py` once per function, lazily, thread-safe."""

    def __init__(self, root: Path = ROOT, layer_dirs: tuple[Path, ...] | None = None) -> None:
        self.root = root
        self.layer_dirs = layer_dirs if layer_dirs is not None else (root / "layers" / "core",)
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._lock = threading.Lock()

    def __call__(self, route: Route) -> Handler:
        key = (route.code_uri, route.handler)
        with self._lock:
            if key not in self._handlers:
                self._handlers[key] = self._load(route)
            return self._handlers[key]

    def _load(self, route: Route) -> Handler:
        for layer in self.layer_dirs:
            if str(layer) not in sys.path:
                sys.path.insert(0, str(layer))
        module_path, _, attribute = route.handler.rpartition(".")
        code_dir = (self.root / route.code_uri).resolve()
        source = code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
        slug = re.sub(r"\W", "_", f"{code_dir.name}_{module_path}")
        module_name = f"teams_connect_local_functions.{slug}"
        spec = importlib.util.spec_from_file_location(module_name, source)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {source}")
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        # As in Lambda, the function's own directory is importable while the module initialises.
        sys.path.insert(0, str(code_dir))
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            sys.path.remove(str(code_dir))
        handler = getattr(module, attribute)
        if not callable(handler):
            raise TypeError(f"{route.handler} in {source} is not callable")
        return handler  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- request -> event


@dataclass(frozen=True)
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]


def compile_route(route: Route) -> CompiledRoute:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", route.path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name.endswith("+"):
                regex += f"(?P<{name[:-1]}>.+)"
            else:
                regex += f"(?P<{name}>[^/]+)"
        else:
            regex += re.escape(part)
    return CompiledRoute(route, re.compile(f"^{regex}$"))


def _request_time(now: datetime) -> str:
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _request_id() -> str:
    # API Gateway's request ids look like "JKJaXmPLvHcESHA=".
    return base64.b64encode(secrets.token_bytes(10)).decode()


def build_event(
    *,
    route: Route,
    method: str,
    raw_path: str,
    raw_query: str,
    header_pairs: list[tuple[str, str]],
    body: bytes,
    path_parameters: Mapping[str, str],
    source_ip: str,
    protocol: str,
    domain_name: str,
) -> dict[str, Any]:
    """The HTTP API payload 2.0 event for one request."""
    headers: dict[str, str] = {}
    cookie_values: list[str] = []
    for name, value in header_pairs:
        lower = name.lower()
        if lower == "cookie":
            cookie_values.append(value)
            continue
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    cookies = [c.strip() for value in cookie_values for c in value.split(";") if c.strip()]

    now = datetime.now(UTC)
    route_key = route.route_key
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if raw_query:
        query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": _request_id(),
        "routeKey": route_key,
        "stage": "$default",
        "time": _request_time(now),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if body:
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        text: str | None = None
        if _TEXT_MEDIA_TYPES.match(media_type):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None:
            event["body"] = text
            event["isBase64Encoded"] = False
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    if path_parameters:
        event["pathParameters"] = {k: unquote(v) for k, v in path_parameters.items()}
    return event


# --------------------------------------------------------------------------- result -> response


def _json_response(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def build_response(result: Any) -> Response:
    """Map a handler's return value as HTTP API (payload 2.0) does."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway assumes 200, JSON, and the returned value as the body.
        body = result if isinstance(result, str) else json.dumps(result)
        return _json_response(200, body.encode("utf-8"))

    status = result["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {status!r}")
    raw_body = result.get("body")
    if raw_body is None:
        content = b""
    elif result.get("isBase64Encoded"):
        content = base64.b64decode(str(raw_body), validate=True)
    else:
        content = (raw_body if isinstance(raw_body, str) else json.dumps(raw_body)).encode("utf-8")

    response = Response(content, status_code=status)
    raw = [(k, v) for k, v in response.raw_headers if k == b"content-length"]
    for name, value in (result.get("headers") or {}).items():
        raw.append((str(name).lower().encode("latin-1"), str(value).encode("latin-1")))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            raw.append((str(name).lower().encode("latin-1"), str(value).encode("latin-1")))
    for cookie in result.get("cookies") or []:
        raw.append((b"set-cookie", str(cookie).encode("latin-1")))
    response.raw_headers = raw
    return response


# --------------------------------------------------------------------------- the app


class Gateway:
    def __init__(
        self,
        routes: list[Route],
        loader: HandlerLoader,
        *,
        domain_name: str | None = None,
    ) -> None:
        self.routes = [compile_route(route) for route in routes]
        self.loader = loader
        self.domain_name = domain_name

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        for compiled in self.routes:
            if compiled.route.method != method:
                continue
            found = compiled.pattern.match(raw_path)
            if found:
                return compiled.route, found.groupdict()
        return None

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        raw_path = scope.get("raw_path", b"").decode("latin-1") or request.url.path
        raw_path = raw_path.split("?", 1)[0]
        matched = self.match(request.method, raw_path)
        if matched is None:
            return _json_response(404, NOT_FOUND)
        route, path_parameters = matched

        server = scope.get("server") or ("127.0.0.1", 0)
        client = scope.get("client") or ("127.0.0.1", 0)
        header_pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        # What API Gateway itself adds; taken from the connection, never from the request's headers.
        forwarded_for = [v for k, v in header_pairs if k.lower() == "x-forwarded-for"]
        header_pairs = [(k, v) for k, v in header_pairs if k.lower() not in _GATEWAY_SET_HEADERS]
        header_pairs += [
            ("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"),
            ("x-forwarded-for", ", ".join([*forwarded_for, str(client[0])])),
            ("x-forwarded-port", str(server[1])),
            ("x-forwarded-proto", scope.get("scheme", "http")),
        ]
        try:
            body = await request.body()
        except Exception:  # client went away
            return _json_response(400, b'{"message":"Bad Request"}')
        event = build_event(
            route=route,
            method=request.method,
            raw_path=raw_path,
            raw_query=scope.get("query_string", b"").decode("latin-1"),
            header_pairs=header_pairs,
            body=body,
            path_parameters=path_parameters,
            source_ip=str(client[0]),
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            domain_name=self.domain_name or str(server[0]),
        )
        response = await self.invoke(route, event)
        # The path only: query strings carry OAuth codes and state, which stay out of logs.
        LOG.info("%s %s -> %s", request.method, raw_path, response.status_code)
        return response

    async def invoke(self, route: Route, event: dict[str, Any]) -> Response:
        context = make_context(route)
        try:
            handler = await asyncio.to_thread(self.loader, route)
            loop = asyncio.get_running_loop()
            started: asyncio.Future[None] = loop.create_future()

            def mark_started() -> None:
                if not started.done():
                    started.set_result(None)

            def signal_start() -> None:
                loop.call_soon_threadsafe(mark_started)

            running = asyncio.ensure_future(
                asyncio.to_thread(_one_at_a_time, handler, event, context, signal_start)
            )
            # The timeout counts from the start of the invocation, not from the queue before it.
            await asyncio.wait_for(asyncio.shield(started), QUEUE_LIMIT_SECONDS)
            result = await asyncio.wait_for(running, route.timeout)
        except TimeoutError:
            # A Lambda timeout is a function error: HTTP API answers 500 (503 is its own 30 s limit).
            LOG.error(
                "%s: task timed out after %s s (request %s)",
                route.route_key,
                route.timeout,
                context.aws_request_id,
            )
            return _json_response(500, INTERNAL_ERROR)
        except Exception:
            LOG.exception("%s: the handler raised (request %s)", route.route_key, context.aws_request_id)
            return _json_response(500, INTERNAL_ERROR)
        try:
            return build_response(result)
        except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
            LOG.exception(
                "%s: malformed handler response (request %s)", route.route_key, context.aws_request_id
            )
            return _json_response(500, INTERNAL_ERROR)


_GATEWAY_SET_HEADERS = {"x-amzn-trace-id", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}


def create_app(
    template: Template | None = None,
    *,
    loader: HandlerLoader | None = None,
    root: Path = ROOT,
    domain_name: str | None = None,
) -> Starlette:
    """The Starlette app serving every HttpApi route of the template."""
    routes = http_routes(template if template is not None else load_template(root / "template.yaml"))
    gateway = Gateway(routes, loader or ModuleHandlerLoader(root), domain_name=domain_name)
    # No routes of Starlette's own: every method and path (also one whose decoded form holds CR/LF,
    # which a Mount's pattern would not match) reaches the gateway, which answers 404 as HTTP API does.
    app = Starlette(routes=[])
    app.router.default = gateway.asgi
    app.state.gateway = gateway
    return app
