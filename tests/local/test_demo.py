"""The demo SaaS page against a fake teams-connect backend (no handlers, no emulator)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from local.demo import EventLog, create_app
from local.eventbridge import LocalEventBridge
from local.stack import bind_socket, serve_app, socket_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CALLS: list[tuple[str, str, str, Any]] = []
EVENTS = EventLog()


async def sessions(request: Request) -> Response:
    body = await request.json()
    CALLS.append(("POST", request.url.path, request.headers.get("authorization", ""), body))
    return JSONResponse(
        {"session_id": "s1", "connect_url": "http://127.0.0.1:9/connect/start?session=s1"}, 201
    )


async def grant(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    raw_path = request.scope["raw_path"].decode()  # as sent, percent-encoding kept
    CALLS.append((request.method, raw_path, request.headers.get("authorization", ""), None))
    if request.method == "DELETE":
        return Response(status_code=204)
    if user_id == "nobody":
        return JSONResponse({"error": {"code": "grant_not_found", "message": "none"}}, 404)
    return JSONResponse({"user_id": user_id, "email": "<b>alex</b>@contoso.example", "provider": "microsoft"})


@pytest.fixture(scope="module")
def demo() -> Iterator[httpx.Client]:
    api_sock, demo_sock = bind_socket("127.0.0.1", 0), bind_socket("127.0.0.1", 0)
    api = Starlette(
        routes=[
            Route("/v1/sessions", sessions, methods=["POST"]),
            Route("/v1/grants/{user_id:path}", grant, methods=["GET", "DELETE"]),
        ]
    )
    served_api = serve_app(api, api_sock, name="fake-api")
    demo_url = socket_url(demo_sock)
    app = create_app(socket_url(api_sock), "k-123", demo_url, EVENTS)
    served_demo = serve_app(app, demo_sock, name="demo")
    try:
        with httpx.Client(base_url=demo_url, timeout=10.0) as client:
            yield client
    finally:
        served_demo.stop()
        served_api.stop()


def test_index_has_the_form(demo: httpx.Client) -> None:
    page = demo.get("/")
    assert page.status_code == 200
    for element_id in ('id="user-id"', 'id="connect"', 'value="demo-user"'):
        assert element_id in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_connect_creates_a_session_server_side_and_redirects(demo: httpx.Client) -> None:
    CALLS.clear()
    response = demo.post("/connect", data={"user_id": "user 1"})
    assert response.status_code == 303
    assert response.headers["location"] == "http://127.0.0.1:9/connect/start?session=s1"
    method, path, auth, body = CALLS[0]
    assert (method, path, auth) == ("POST", "/v1/sessions", "Bearer k-123")
    assert body["user_id"] == "user 1"
    return_to = urlsplit(body["return_to"])
    assert f"{return_to.scheme}://{return_to.netloc}" == str(demo.base_url).rstrip("/")
    assert return_to.path == "/return"
    assert parse_qs(return_to.query) == {"user_id": ["user 1"]}


def test_return_connected_shows_the_mailbox_escaped(demo: httpx.Client) -> None:
    page = demo.get("/return", params={"status": "connected", "user_id": "<u>"})
    assert 'id="result"' in page.text
    assert '<span id="mailbox">&lt;b&gt;alex&lt;/b&gt;@contoso.example</span>' in page.text
    assert 'id="disconnect"' in page.text
    assert "<u>" not in page.text
    assert CALLS[-1][1] == "/v1/grants/%3Cu%3E"


def test_return_error_shows_the_code_escaped(demo: httpx.Client) -> None:
    page = demo.get("/return", params={"status": "error", "error": "<script>x</script>", "user_id": "u"})
    assert "Connection failed" in page.text
    assert '<span id="error-code">&lt;script&gt;x&lt;/script&gt;</span>' in page.text


def test_disconnect_deletes_the_grant(demo: httpx.Client) -> None:
    CALLS.clear()
    page = demo.post("/disconnect", data={"user_id": "u/1"})
    assert page.status_code == 200
    assert "Disconnected" in page.text
    assert CALLS == [("DELETE", "/v1/grants/u%2F1", "Bearer k-123", None)]


def test_events_arrive_through_the_local_eventbridge_and_are_listed_oldest_first(demo: httpx.Client) -> None:
    bus = LocalEventBridge(bus="apps", targets=[EVENTS.add])
    detail = {
        "event_id": "e1",
        "user_id": "<img src=x>",
        "grant_id": "g",
        "email": "a@b",
        "status": "expired",
        "occurred_at": "2027-01-01T00:00:00Z",
    }
    entry = {"Source": "teams-connect", "DetailType": "Grant Expired", "EventBusName": "apps"}
    bus.fail_next(1)
    first = bus.put_events([entry | {"Detail": json.dumps(detail)}])
    assert first["FailedEntryCount"] == 1  # injected: nothing delivered
    answer = bus.put_events(
        [
            entry | {"Detail": json.dumps(detail)},
            entry | {"Detail": json.dumps(detail | {"event_id": "e2"}), "DetailType": "Grant Reconnected"},
            entry | {"Detail": "{}", "EventBusName": "other"},
        ]
    )
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][2]["ErrorCode"] == "ResourceNotFoundException"
    listed = demo.get("/events").json()["events"]
    assert [(e["detail_type"], e["detail"]["event_id"]) for e in listed[-2:]] == [
        ("Grant Expired", "e1"),
        ("Grant Reconnected", "e2"),
    ]
    page = demo.get("/events/live")
    assert "<img src=x>" not in page.text
    assert "&lt;img src=x&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert demo.get("/events/live.js").headers["content-type"].startswith("text/javascript")
