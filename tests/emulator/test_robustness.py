"""Bad input anywhere gives a Nylas-shaped 4xx, never a 5xx or a traceback; the catch-all gives a bare 500."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local.nylas_emulator import EmulatorConfig, create_app
from starlette.routing import Route

from tests.emulator.conftest import CALLBACK, Emu

JSON_ROUTES = [
    ("api", "POST", "/v3/connectors"),
    ("api", "PATCH", "/v3/connectors/microsoft"),
    ("api", "POST", "/v3/applications/redirect-uris"),
    ("api", "PATCH", "/v3/applications/redirect-uris/{uri_id}"),
    ("api", "PATCH", "/v3/grants/{grant_id}"),
    ("api", "POST", "/v3/grants/{grant_id}/events?calendar_id=primary"),
    ("anon", "POST", "/v3/connect/token"),
    ("beta", "POST", "/connect/integrations"),
    ("beta", "PATCH", "/connect/integrations/microsoft"),
    ("beta", "POST", "/connect/auth"),
    ("anon", "POST", "/_emulator/faults"),
    ("anon", "POST", "/_emulator/clock"),
    ("anon", "POST", "/_emulator/grants/{grant_id}/status"),
]
FIELD_NAMES = [
    "provider", "settings", "scope", "name", "url", "platform", "when", "title", "conferencing",
    "participants",
    "grant_type", "client_id", "client_secret", "code", "redirect_uri", "code_verifier", "refresh_token",
    "redirect_uris", "expires_in", "account_id", "login_hint", "state", "status", "method", "path", "count",
    "delay_ms", "headers", "advance_seconds", "tenant", "start_time", "end_time", "autocreate", "details",
]  # fmt: skip
QUERY_ROUTES = [
    ("anon", "/v3/connect/auth"),
    ("api", "/v3/grants"),
    ("api", "/v3/connectors"),
    ("api", "/v3/connect/tokeninfo"),
    ("api", "/v3/grants/{grant_id}/events"),
    ("beta", "/connect/grants"),
    ("beta", "/connect/integrations"),
    ("anon", "/emulator/consent"),
    ("anon", "/connect/login"),
]
QUERY_NAMES = [
    "client_id", "redirect_uri", "response_type", "provider", "state", "scope", "login_hint", "access_type",
    "code_challenge", "code_challenge_method", "prompt", "limit", "offset", "email", "grant_status",
    "sort_by", "order_by", "since", "before", "id", "id_token", "access_token", "calendar_id",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
json_bodies = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), json_values, max_size=6)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def seeded(emu: Emu) -> dict[str, str]:
    """A connector, redirect URI, grant and integration, so fuzzed ids reach the deeper validation code."""
    emu.setup_v3()
    emu.setup_beta()
    grant_id = str(emu.connect("max@contoso.com")["grant_id"])
    uri_id = emu.api.get("/v3/applications/redirect-uris").json()["data"][0]["id"]
    return {"grant_id": grant_id, "uri_id": uri_id}


def _client(emu: Emu, name: str) -> httpx.Client:
    client = getattr(emu, name)
    assert isinstance(client, httpx.Client)
    return client


def _assert_not_5xx(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    assert response.headers["x-request-id"]
    if (
        response.headers.get("content-type", "").startswith("application/json")
        and response.status_code >= 400
    ):
        body = response.json()
        assert ("error" in body) or ({"message", "type"} <= set(body)), body


@FUZZ
@given(route=st.sampled_from(JSON_ROUTES), body=json_bodies)
def test_fuzzed_json_objects_never_5xx(emu: Emu, seeded: dict[str, str], route, body) -> None:
    client, method, path = route
    response = _client(emu, client).request(method, path.format(**seeded), json=body)
    _assert_not_5xx(response)
    if path == "/_emulator/faults" and response.status_code < 300:
        emu.anon.delete("/_emulator/faults")  # an accepted fault must not hit the next example


@FUZZ
@given(
    route=st.sampled_from(JSON_ROUTES),
    raw=st.binary(max_size=300) | json_values.map(json.dumps).map(str.encode),
)
def test_fuzzed_raw_bodies_never_5xx(emu: Emu, seeded: dict[str, str], route, raw: bytes) -> None:
    client, method, path = route
    if path == "/_emulator/faults":
        return
    content_type = "application/json" if len(raw) % 3 else "application/x-www-form-urlencoded"
    response = _client(emu, client).request(
        method, path.format(**seeded), content=raw, headers={"content-type": content_type}
    )
    _assert_not_5xx(response)


@FUZZ
@given(
    route=st.sampled_from(QUERY_ROUTES),
    params=st.lists(
        st.tuples(st.sampled_from(QUERY_NAMES) | st.text(max_size=6), st.text(max_size=300)), max_size=8
    ),
)
def test_fuzzed_query_strings_never_5xx(emu: Emu, seeded: dict[str, str], route, params) -> None:
    client, path = route
    response = _client(emu, client).get(path.format(**seeded), params=params)
    _assert_not_5xx(response)


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'"text"', "application/json", 400),
        (b"", "application/json", 400),
        (b'{"a": NaN}', "application/json", 400),
        (b"\xff\xfe{}", "application/json", 400),
        (b"[" * 100000 + b"]" * 100000, "application/json", 413),
        (b"[" * 30000 + b"]" * 30000, "application/json", 400),  # deep nesting
        (b'{"provider": "microsoft"}', "text/plain", 415),
        (b'{"provider": "microsoft"}', "", 415),
        (b"provider=microsoft", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_bodies_are_nylas_shaped_4xx(
    emu: Emu, content: bytes, content_type: str, status: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = emu.api.post("/v3/connectors", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"request_id", "error"}
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_oversized_chunked_body_is_413(emu: Emu) -> None:
    def chunks():
        for _ in range(80):
            yield b" " * 1024

    r = emu.api.post("/v3/connectors", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_oversized_bodies_on_each_surface(emu: Emu) -> None:
    big = json.dumps({"name": "x" * 70000})
    headers = {"content-type": "application/json"}
    assert emu.anon.post("/v3/connect/token", content=big, headers=headers).status_code == 413
    assert set(emu.anon.post("/v3/connect/token", content=big, headers=headers).json()) >= {
        "error",
        "error_code",
    }
    assert emu.beta.post("/connect/integrations", content=big, headers=headers).status_code == 413
    form = {"id": "x", "email": "a" * 70000, "decision": "allow"}
    assert emu.anon.post("/emulator/consent", data=form).status_code == 413


def test_invalid_content_length_is_400(emu: Emu) -> None:
    with httpx.Client(base_url=emu.url) as raw:
        request = raw.build_request("POST", "/v3/connectors", content=b"{}")
        request.headers["content-length"] = "abc"
        request.headers["authorization"] = emu.api.headers["authorization"]
        try:
            response = raw.send(request)
        except httpx.HTTPError:
            return  # the server may also refuse it at the protocol level: still not a 5xx
        assert response.status_code == 400


def test_repeated_form_fields_and_a_valid_redirect_round_trip(emu: Emu) -> None:
    emu.setup_v3()
    consent_url = emu.start()
    login_id = consent_url.split("id=")[1]
    body = f"id={login_id}&email=a%40contoso.com&email=b%40contoso.com&decision=allow"
    r = emu.anon.post(
        "/emulator/consent", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 400
    assert emu.consent(consent_url, email="a@contoso.com").headers["location"].startswith(CALLBACK)


def test_catch_all_answers_a_bare_nylas_shaped_500() -> None:
    app = create_app(EmulatorConfig())

    async def boom(request):
        raise RuntimeError("secret internal detail")

    app.router.routes.append(Route("/v3/boom", boom))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
            return await client.get("/v3/boom")

    r = asyncio.run(call())
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"request_id", "error"}
    assert body["error"]["type"] == "internal_error"
    assert "secret internal detail" not in r.text
    assert "Traceback" not in r.text
    assert r.headers["x-request-id"] == body["request_id"]
