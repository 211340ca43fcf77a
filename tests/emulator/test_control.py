"""The control API under /_emulator/: reset, faults (status, body, headers, delay, drop), counters, state."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import AZURE, CLIENT_ID, Emu


def test_health(emu: Emu) -> None:
    r = emu.anon.get("/_emulator/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["public_url"] == emu.url


def test_reset_forgets_everything_but_the_config(emu: Emu) -> None:
    emu.setup_v3()
    emu.setup_beta()
    emu.connect("max@contoso.com")
    emu.fault(method="GET", path="/v3/grants", status=503, count=5)
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 1000})
    assert emu.anon.post("/_emulator/reset").json()["reset"] is True
    state = emu.anon.get("/_emulator/state").json()["state"]
    assert (state["grants"], state["connectors"], state["redirect_uris"], state["integrations"]) == (
        [],
        [],
        [],
        [],
    )
    assert state["faults"] == []
    assert state["clock_offset_seconds"] == 0
    assert emu.calls() == {}
    assert emu.api.get("/v3/grants").status_code == 200, "API key (config) survives, fault is gone"


def test_fault_with_status_default_body_then_normal(emu: Emu) -> None:
    r = emu.fault(method="GET", path="/v3/grants", status=503, count=2)
    assert r.status_code == 201
    assert r.json()["fault"]["remaining"] == 2
    for _ in range(2):
        failed = emu.api.get("/v3/grants")
        assert failed.status_code == 503
        body = failed.json()
        assert set(body) == {"request_id", "error"}
        assert body["request_id"] == failed.headers["x-request-id"]
        assert body["error"]["type"] == "service_unavailable"
    assert emu.api.get("/v3/grants").status_code == 200
    assert emu.calls()["GET /v3/grants"] == 3, "calls are counted even when a fault fired"


def test_fault_with_body_headers_and_template_path(emu: Emu) -> None:
    body = {"request_id": "r", "error": {"type": "rate_limit_error", "message": "slow down"}}
    emu.fault(
        method="DELETE", path="/v3/grants/{grant_id}", status=429, body=body, headers={"Retry-After": "1"}
    )
    r = emu.api.delete("/v3/grants/any-id")
    assert r.status_code == 429
    assert r.json() == body
    assert r.headers["retry-after"] == "1"
    assert r.headers["x-request-id"]
    assert emu.api.delete("/v3/grants/any-id").status_code == 404
    assert emu.calls()["DELETE /v3/grants/{grant_id}"] == 2


def test_fault_default_bodies_follow_the_surface(emu: Emu) -> None:
    emu.fault(method="POST", path="/v3/connect/token", status=500)
    emu.fault(method="GET", path="/connect/grants/{grant_id}", status=502)
    token = emu.anon.post("/v3/connect/token", json={})
    assert token.status_code == 500
    assert set(token.json()) == {"error", "error_code", "error_description", "error_uri"}
    beta = emu.beta.get("/connect/grants/x")
    assert beta.status_code == 502
    assert set(beta.json()) == {"message", "type"}


def test_fault_only_matches_its_method(emu: Emu) -> None:
    emu.fault(method="post", path="/v3/connectors", status=500)
    assert emu.api.get("/v3/connectors").status_code == 200
    assert (
        emu.api.post("/v3/connectors", json={"provider": "microsoft", "settings": AZURE}).status_code == 500
    )
    assert (
        emu.api.post("/v3/connectors", json={"provider": "microsoft", "settings": AZURE}).status_code == 201
    )


def test_delay_fault(emu: Emu) -> None:
    emu.fault(method="GET", path="/v3/grants", delay_ms=300)
    started = time.monotonic()
    r = emu.api.get("/v3/grants")
    assert r.status_code == 200
    assert time.monotonic() - started >= 0.3
    emu.fault(method="GET", path="/v3/grants", delay_ms=2000)
    with pytest.raises(httpx.ReadTimeout):
        emu.api.get("/v3/grants", timeout=0.2)


def test_delay_then_status(emu: Emu) -> None:
    emu.fault(method="GET", path="/v3/connectors", delay_ms=200, status=504)
    started = time.monotonic()
    assert emu.api.get("/v3/connectors").status_code == 504
    assert time.monotonic() - started >= 0.2


def test_drop_fault_closes_the_connection_without_a_response(emu: Emu) -> None:
    emu.fault(method="POST", path="/v3/connect/token", drop=True, count=2)
    with httpx.Client(base_url=emu.url, timeout=5) as fresh:
        for _ in range(2):
            # A dropped connection reads as EOF or as a reset, depending on timing.
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                fresh.post("/v3/connect/token", json={})
        assert fresh.post("/v3/connect/token", json={}).status_code == 400
    assert emu.calls()["POST /v3/connect/token"] == 3


def test_drop_on_a_browser_route(emu: Emu) -> None:
    emu.fault(method="GET", path="/v3/connect/auth", drop=True)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        emu.anon.get("/v3/connect/auth", params={"client_id": CLIENT_ID})


@pytest.mark.parametrize(
    "body",
    [
        {"path": "/v3/grants", "status": 500},
        {"method": "GET", "status": 500},
        {"method": "GET", "path": "/v3/grants/abc", "status": 500},  # a concrete path, not the template
        {"method": "PUT", "path": "/v3/grants", "status": 500},  # no such route
        {"method": "FETCH", "path": "/v3/grants", "status": 500},
        {"method": "GET", "path": "/_emulator/calls", "status": 500},  # control routes cannot fail
        {"method": "GET", "path": "/v3/grants", "status": 99},
        {"method": "GET", "path": "/v3/grants", "status": 600},
        {"method": "GET", "path": "/v3/grants", "status": "500"},
        {"method": "GET", "path": "/v3/grants"},  # nothing to do
        {"method": "GET", "path": "/v3/grants", "status": 500, "count": 0},
        {"method": "GET", "path": "/v3/grants", "status": 500, "delay_ms": -1},
        {"method": "GET", "path": "/v3/grants", "status": 500, "drop": "yes"},
        {"method": "GET", "path": "/v3/grants", "status": 500, "headers": {"Bad Header": "x"}},
        {"method": "GET", "path": "/v3/grants", "status": 500, "headers": {"X-Ok": "line\nbreak"}},
        {"method": "GET", "path": "/v3/grants", "status": 500, "headers": ["Retry-After"]},
    ],
)
def test_fault_validation(emu: Emu, body: dict[str, Any]) -> None:
    r = emu.fault(**body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]
    assert emu.anon.get("/_emulator/faults").json()["faults"] == []


def test_list_and_clear_faults(emu: Emu) -> None:
    emu.fault(method="GET", path="/v3/grants", status=500, count=3)
    emu.fault(method="GET", path="/connect/grants", status=500)
    faults = emu.anon.get("/_emulator/faults").json()["faults"]
    assert [(f["method"], f["path"], f["remaining"]) for f in faults] == [
        ("GET", "/v3/grants", 3),
        ("GET", "/connect/grants", 1),
    ]
    assert emu.anon.delete("/_emulator/faults").json()["cleared"] == 2
    assert emu.api.get("/v3/grants").status_code == 200


def test_grant_status_control(emu: Emu) -> None:
    emu.setup_v3()
    grant_id = emu.connect("max@contoso.com")["grant_id"]
    r = emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"})
    assert r.json()["grant"]["grant_status"] == "invalid"
    assert emu.api.get(f"/v3/grants/{grant_id}").json()["data"]["grant_status"] == "invalid"
    assert emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "valid"}).status_code == 200
    assert emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "gone"}).status_code == 400
    assert emu.anon.post("/_emulator/grants/nope/status", json={"status": "valid"}).status_code == 404


def test_calls_count_route_templates_not_control_routes(emu: Emu) -> None:
    emu.api.get("/v3/grants/a")
    emu.api.get("/v3/grants/b")
    emu.beta.get("/connect/grants")
    emu.anon.get("/emulator/consent", params={"id": "x"})
    emu.anon.get("/_emulator/state")
    emu.anon.get("/nope")
    assert emu.calls() == {
        "GET /v3/grants/{grant_id}": 2,
        "GET /connect/grants": 1,
        "GET /emulator/consent": 1,
    }
    assert emu.anon.delete("/_emulator/calls").json()["calls"] == {}
    assert emu.calls() == {}


def test_state_dump_masks_secrets(emu: Emu) -> None:
    emu.setup_v3()
    emu.setup_beta()
    tokens = emu.connect("max@contoso.com", access_type="offline")
    r = emu.anon.get("/_emulator/state")
    text = r.text
    state = r.json()["state"]
    assert state["connectors"][0]["settings"]["client_secret"] == "********"
    assert state["integrations"][0]["settings"]["client_secret"] == "********"
    assert AZURE["client_secret"] not in text
    assert str(tokens["access_token"]) not in text
    assert str(tokens["refresh_token"]) not in text
    assert state["grants"][0]["id"] == tokens["grant_id"]
    assert state["grants"][0]["verified"] is True
    assert state["tokens"] == 2


def test_clock_validation(emu: Emu) -> None:
    assert emu.anon.post("/_emulator/clock", json={"advance_seconds": 0}).status_code == 400
    assert emu.anon.post("/_emulator/clock", json={}).status_code == 400
    r = emu.anon.post("/_emulator/clock", json={"advance_seconds": 30})
    assert r.json()["clock_offset_seconds"] == 30
