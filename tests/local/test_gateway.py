"""The local API gateway: HTTP request -> HTTP API payload 2.0 event -> handler -> HTTP response.

Runs a real uvicorn server (as `make run` does) on fake handler modules in a temporary project root.
"""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from local.gateway import build_response, create_app
from local.stack import bind_socket, serve_app, socket_url

ECHO_APP = """
import base64, json, os

import fake_layer

IMPORTED_WITH_ENV = os.environ.get("FAKE_GATEWAY_ENV")
IMPORT_COUNT = fake_layer.bump()


def lambda_handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if event["rawPath"] == "/boom":
        raise RuntimeError("handler failure")
    if mode == "plain":
        return {"plain": True}
    if mode == "str":
        return "just a string"
    if mode == "binary":
        body = base64.b64encode(bytes(range(256))).decode()
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": body, "isBase64Encoded": True}
    if mode == "cookies":
        return {"statusCode": 302, "headers": {"location": "https://example.com/next"},
                "cookies": ["a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]}
    if mode == "multi":
        return {"statusCode": 200, "multiValueHeaders": {"x-multi": ["one", "two"]}, "body": ""}
    if mode == "bad":
        return {"statusCode": "not a status"}
    ctx = {
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "remaining": context.get_remaining_time_in_millis(),
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "context": ctx, "env": IMPORTED_WITH_ENV,
                                "imports": IMPORT_COUNT})}
"""

OTHER_APP = """
def lambda_handler(event, context):
    return {"statusCode": 200, "body": "other"}
"""

FAKE_LAYER = """
COUNT = 0

def bump():
    global COUNT
    COUNT += 1
    return COUNT
"""


def _function(code_uri: str, events: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": code_uri,
            "Events": {
                name: {"Type": "HttpApi", "Properties": {"Method": method, "Path": path}}
                for name, (method, path) in events.items()
            },
        },
    }


TEMPLATE: dict[str, Any] = {
    "Globals": {"Function": {"Handler": "app.lambda_handler", "Timeout": 7, "MemorySize": 256}},
    "Resources": {
        "EchoFunction": _function(
            "functions/echo/",
            {
                "Get": ("GET", "/items/{item_id}"),
                "Post": ("POST", "/items"),
                "Boom": ("GET", "/boom"),
            },
        ),
        "OtherFunction": _function("functions/other/", {"Other": ("GET", "/other")}),
        "NotHttp": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
    },
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name, source in (("echo", ECHO_APP), ("other", OTHER_APP)):
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / "app.py").write_text(textwrap.dedent(source))
    (root / "layers" / "core").mkdir(parents=True)
    (root / "layers" / "core" / "fake_layer.py").write_text(FAKE_LAYER)
    return root


@pytest.fixture(scope="module")
def gateway(root: Path) -> Iterator[httpx.Client]:
    mp = pytest.MonkeyPatch()
    mp.setenv("FAKE_GATEWAY_ENV", "set-before-import")
    sock = bind_socket("127.0.0.1", 0)
    served = serve_app(create_app(TEMPLATE, root=root), sock, name="test-gateway")
    try:
        with httpx.Client(base_url=socket_url(sock), timeout=10.0) as client:
            yield client
    finally:
        served.stop()
        mp.undo()


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_event_shape_and_context(gateway: httpx.Client) -> None:
    data = _echo(gateway.get("/items/abc", headers={"user-agent": "pytest-agent"}))
    event = data["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{item_id}"
    assert event["rawPath"] == "/items/abc"
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert event["pathParameters"] == {"item_id": "abc"}
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    ctx = event["requestContext"]
    assert ctx["stage"] == "$default"
    assert ctx["routeKey"] == "GET /items/{item_id}"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/items/abc",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "pytest-agent",
    }
    for key in ("accountId", "apiId", "domainName", "domainPrefix", "requestId", "time", "timeEpoch"):
        assert ctx[key]
    context = data["context"]
    assert context["function_name"].endswith("EchoFunction")
    assert context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"].endswith(":function:" + context["function_name"])
    assert 0 < context["remaining"] <= 7000
    assert context["aws_request_id"]


def test_handler_module_loaded_once_after_env_with_layer_on_path(gateway: httpx.Client) -> None:
    first = _echo(gateway.get("/items/1"))
    second = _echo(gateway.get("/items/2"))
    assert first["env"] == "set-before-import"
    assert first["imports"] == second["imports"] == 1
    # Both functions are called app.py; each gets its own module.
    other = gateway.get("/other")
    assert (other.status_code, other.text) == (200, "other")


def test_query_string_duplicates_joined_and_raw_kept(gateway: httpx.Client) -> None:
    raw = "a=1&a=2&b=x%20y&empty=&a=3"
    event = _echo(gateway.get(f"/items/q?{raw}"))["event"]
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {"a": "1,2,3", "b": "x y", "empty": ""}


def test_path_parameters_are_url_decoded(gateway: httpx.Client) -> None:
    event = _echo(gateway.get("/items/user%20one%2Fx"))["event"]
    assert event["rawPath"] == "/items/user%20one%2Fx"
    assert event["pathParameters"] == {"item_id": "user one/x"}


def test_headers_lowercased_and_repeats_joined_cookies_listed(gateway: httpx.Client) -> None:
    headers = [
        ("X-Custom", "one"),
        ("x-custom", "two"),
        ("Cookie", "tc_abc=nonce1; other=2"),
        ("Authorization", "Bearer k"),
    ]
    event = _echo(gateway.get("/items/h", headers=headers))["event"]
    assert event["headers"]["x-custom"] == "one,two"
    assert event["headers"]["authorization"] == "Bearer k"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["tc_abc=nonce1", "other=2"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["x-forwarded-proto"] == "http"


def test_no_cookies_key_without_cookie_header(gateway: httpx.Client) -> None:
    assert "cookies" not in _echo(gateway.get("/items/c"))["event"]


def test_json_body_is_text(gateway: httpx.Client) -> None:
    event = _echo(gateway.post("/items", json={"user_id": "u1"}))["event"]
    assert event["routeKey"] == "POST /items"
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"user_id": "u1"}


def test_binary_body_is_base64(gateway: httpx.Client) -> None:
    payload = bytes(range(256))
    response = gateway.post("/items", content=payload, headers={"content-type": "application/octet-stream"})
    event = _echo(response)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_base64_response_body_is_decoded(gateway: httpx.Client) -> None:
    response = gateway.get("/items/b?mode=binary")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == bytes(range(256))


def test_cookies_become_one_set_cookie_header_each(gateway: httpx.Client) -> None:
    response = gateway.get("/items/c?mode=cookies")
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/next"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/; HttpOnly", "b=2; Path=/; Secure"]


def test_multi_value_headers(gateway: httpx.Client) -> None:
    response = gateway.get("/items/m?mode=multi")
    assert response.headers.get_list("x-multi") == ["one", "two"]


def test_plain_results_are_200_json(gateway: httpx.Client) -> None:
    plain = gateway.get("/items/p?mode=plain")
    assert (plain.status_code, plain.headers["content-type"], plain.json()) == (
        200,
        "application/json",
        {"plain": True},
    )
    text = gateway.get("/items/s?mode=str")
    assert (text.status_code, text.text) == (200, "just a string")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("GET", "/items"), ("DELETE", "/items/1"), ("PUT", "/items"), ("GET", "/items/a/b")],
)
def test_unmatched_route_is_404_not_found(gateway: httpx.Client, method: str, path: str) -> None:
    response = gateway.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_handler_exception_is_500(gateway: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    response = gateway.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
    assert "handler failure" in caplog.text


def test_malformed_handler_result_is_500(gateway: httpx.Client) -> None:
    response = gateway.get("/items/x?mode=bad")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_build_response_without_body() -> None:
    response = build_response({"statusCode": 204})
    assert response.status_code == 204
    assert response.body == b""
