"""Every sample event under events/<function>/ is an HTTP API 2.0 event for a route of template.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import pytest
from local.gateway import compile_route
from local.template import ROOT, Route, http_routes, load_template

EVENTS = ROOT / "events"
EXPECTED = {
    "create_session": {"ok", "missing_user_id", "bad_return_to", "no_auth"},
    "connect_start": {"ok", "unknown_session"},
    "connect_callback": {"v3_success", "v3_denied", "beta_success", "missing_state"},
    "get_grant": {"ok", "not_found"},
    "list_grants": {"ok", "bad_cursor"},
    "delete_grant": {"ok"},
    "create_meeting": {"ok", "idempotent", "invalid_times", "no_auth"},
    "get_meeting": {"ok"},
    "update_meeting": {"ok"},
    "delete_meeting": {"ok"},
    "nylas_webhooks": {"challenge", "grant_expired_signed", "missing_signature"},
    "create_admin_consent": {"ok", "no_auth"},
    "admin_consent_start": {"ok", "unknown_link"},
    "admin_consent_callback": {"accepted", "cancelled"},
    "get_tenant": {"ok", "not_found"},
    "connect_script": {"ok"},
    "session_status": {"not_found"},
}


def _routes_by_dir() -> dict[str, list[Route]]:
    by_dir: dict[str, list[Route]] = {}
    for route in http_routes(load_template()):
        by_dir.setdefault(Path(route.code_uri).name, []).append(route)
    return by_dir


ROUTES_BY_DIR = _routes_by_dir()
# Only the functions behind HTTP routes get API Gateway events (others, e.g. a custom resource, differ).
HTTP_EVENT_FILES = sorted(p for d in ROUTES_BY_DIR for p in (EVENTS / d).glob("*.json"))


def test_every_scenario_has_an_event() -> None:
    assert set(ROUTES_BY_DIR) == set(EXPECTED)
    for function_dir, scenarios in EXPECTED.items():
        assert {p.stem for p in (EVENTS / function_dir).glob("*.json")} >= scenarios


@pytest.mark.parametrize("path", HTTP_EVENT_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_event_is_a_payload_2_0_event_of_its_route(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    routes = {r.route_key: r for r in ROUTES_BY_DIR[path.parent.name]}
    assert event["version"] == "2.0"
    assert event["routeKey"] in routes, f"{event['routeKey']} is not a route of functions/{path.parent.name}"
    route = routes[event["routeKey"]]

    match = compile_route(route).pattern.match(event["rawPath"])
    assert match, f"rawPath {event['rawPath']} does not match {route.path}"
    if match.groupdict():
        assert event["pathParameters"] == {k: unquote(v) for k, v in match.groupdict().items()}
    else:
        assert "pathParameters" not in event

    raw_query = event["rawQueryString"]
    assert isinstance(raw_query, str)
    if raw_query:
        joined: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        assert event["queryStringParameters"] == joined
    else:
        assert "queryStringParameters" not in event

    headers = event["headers"]
    assert all(name == name.lower() for name in headers)
    assert "cookie" not in headers
    assert all(isinstance(c, str) and "=" in c for c in event.get("cookies", []))
    assert isinstance(event["isBase64Encoded"], bool)
    if "body" in event:
        assert isinstance(event["body"], str)

    ctx = event["requestContext"]
    assert ctx["routeKey"] == event["routeKey"]
    assert ctx["stage"] == "$default"
    assert ctx["http"]["method"] == route.method
    assert ctx["http"]["path"] == event["rawPath"]
    for key in ("accountId", "apiId", "domainName", "domainPrefix", "requestId", "time", "timeEpoch"):
        assert ctx[key], key
    for key in ("protocol", "sourceIp", "userAgent"):
        assert key in ctx["http"], key
