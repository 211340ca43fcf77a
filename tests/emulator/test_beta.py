"""The beta Integrations surface: Basic auth, integrations, hosted auth + consent, grants."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.emulator.conftest import CALLBACK, CLIENT_ID, CLIENT_SECRET, Emu, basic, integration_body, query_of

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

BETA_ROUTES = [
    ("POST", "/connect/integrations"),
    ("GET", "/connect/integrations"),
    ("GET", "/connect/integrations/microsoft"),
    ("PATCH", "/connect/integrations/microsoft"),
    ("DELETE", "/connect/integrations/microsoft"),
    ("POST", "/connect/auth"),
    ("GET", "/connect/grants"),
    ("GET", "/connect/grants/g1"),
    ("DELETE", "/connect/grants/g1"),
]


def assert_beta_error(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "type"}
    assert response.headers["x-request-id"]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(("method", "path"), BETA_ROUTES)
@pytest.mark.parametrize(
    "auth",
    [
        None,
        basic(CLIENT_ID, "wrong"),
        basic("wrong", CLIENT_SECRET),
        basic(CLIENT_ID, CLIENT_SECRET + "\n"),  # the docs' `echo | base64` pitfall
        "Basic !!!notbase64",
        f"Bearer {CLIENT_SECRET}",
        basic(CLIENT_ID, "")[:-4],
    ],
)
def test_every_beta_route_needs_basic_auth(emu: Emu, method: str, path: str, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    r = emu.anon.request(method, path, headers=headers, json={})
    body = assert_beta_error(r, 401)
    assert body["type"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Basic")


def test_integration_lifecycle(emu: Emu) -> None:
    r = emu.beta.post("/connect/integrations", json=integration_body())
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True
    data = body["data"]
    assert (data["id"], data["provider"], data["name"]) == ("microsoft", "microsoft", "Teams integration")
    assert data["redirect_uris"] == [CALLBACK]
    assert data["expires_in"] == 1209600
    assert "client_secret" not in data["settings"]
    listed = emu.beta.get("/connect/integrations").json()
    assert [i["id"] for i in listed["data"]] == ["microsoft"]
    assert (listed["limit"], listed["offset"]) == (10, 0)
    assert emu.beta.get("/connect/integrations/microsoft").json()["data"]["name"] == "Teams integration"
    patched = emu.beta.patch(
        "/connect/integrations/microsoft",
        json={"name": "renamed", "settings": {"tenant": GUID}, "expires_in": 3600, "scope": ["User.Read"]},
    )
    assert patched.json()["success"] is True
    assert patched.json()["data"]["settings"]["tenant"] == GUID
    assert (patched.json()["data"]["name"], patched.json()["data"]["expires_in"]) == ("renamed", 3600)
    assert emu.beta.delete("/connect/integrations/microsoft").json() == {"success": True}
    assert_beta_error(emu.beta.get("/connect/integrations/microsoft"), 404)
    assert_beta_error(emu.beta.delete("/connect/integrations/microsoft"), 404)
    assert_beta_error(emu.beta.patch("/connect/integrations/microsoft", json={}), 404)


def test_expires_in_defaults_to_14_days(emu: Emu) -> None:
    body = integration_body()
    del body["expires_in"]
    assert emu.beta.post("/connect/integrations", json=body).json()["data"]["expires_in"] == 1209600


def test_one_integration_per_provider(emu: Emu) -> None:
    emu.setup_beta()
    assert_beta_error(emu.beta.post("/connect/integrations", json=integration_body()), 409)


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": None},
        {"provider": "google"},
        {"settings": None},
        {"settings": {"client_id": "a", "tenant": "common"}},
        {"settings": {"client_id": "a", "client_secret": "b", "tenant": "consumers"}},
        {"settings": {"client_id": "a", "client_secret": "b"}},
        {"redirect_uris": []},
        {"redirect_uris": "https://a.example/cb"},
        {"redirect_uris": ["ftp://a.example/cb"]},
        {"redirect_uris": None},
        {"expires_in": 60},
        {"expires_in": 315360000},
        {"expires_in": "3600"},
        {"scope": "User.Read"},
    ],
)
def test_integration_validation(emu: Emu, overrides: dict[str, Any]) -> None:
    body = {k: v for k, v in integration_body(**overrides).items() if v is not None}
    assert_beta_error(emu.beta.post("/connect/integrations", json=body), 400)


def test_integration_expires_in_bounds_are_exclusive(emu: Emu) -> None:
    assert emu.beta.post("/connect/integrations", json=integration_body(expires_in=61)).status_code == 200
    emu.beta.delete("/connect/integrations/microsoft")
    assert (
        emu.beta.post("/connect/integrations", json=integration_body(expires_in=315359999)).status_code == 200
    )


def test_hosted_auth_allow(emu: Emu) -> None:
    emu.setup_beta()
    data = emu.beta_login(account_id="v2-account", login_hint="max@contoso.com", state="st-1")
    assert data["url"] == f"{emu.url}/connect/login?id={data['id']}"
    assert isinstance(data["expires_at"], int)
    assert data["request"]["account_id"] == "v2-account"
    assert data["request"]["redirect_uri"] == CALLBACK
    page = emu.anon.get(str(data["url"]))
    assert page.status_code == 200
    assert "Nylas emulator" in page.text
    assert 'action="/connect/login"' in page.text
    assert 'value="max@contoso.com"' in page.text
    r = emu.consent(str(data["url"]), email="max@contoso.com")
    assert r.status_code == 302
    query = query_of(r.headers["location"])
    assert r.headers["location"].startswith(CALLBACK + "?")
    assert query["success"] == "true"
    assert (query["provider"], query["email"], query["state"]) == ("microsoft", "max@contoso.com", "st-1")
    grant = emu.beta.get(f"/connect/grants/{query['grant_id']}").json()
    assert grant["success"] is True
    g = grant["data"]
    assert (g["id"], g["email"], g["provider"], g["grant_status"]) == (
        query["grant_id"],
        "max@contoso.com",
        "microsoft",
        "valid",
    )
    assert g["account_id"] == "v2-account"
    assert g["state"] == "st-1"
    assert "OnlineMeetings.ReadWrite" in g["scope"]
    assert isinstance(g["created_at"], int)
    assert isinstance(g["updated_at"], int)


def test_hosted_auth_deny_and_no_state(emu: Emu) -> None:
    emu.setup_beta()
    data = emu.beta_login()
    r = emu.consent(str(data["url"]), email="max@contoso.com", decision="deny")
    query = query_of(r.headers["location"])
    assert query["success"] == "false"
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert "state" not in query
    assert "grant_id" not in query
    data = emu.beta_login(state="s2")
    r = emu.consent(str(data["url"]), email="max@contoso.com", decision="deny")
    assert query_of(r.headers["location"])["state"] == "s2"


def test_login_ids_expire_and_are_single_use(emu: Emu) -> None:
    emu.setup_beta()
    data = emu.beta_login(expires_in=120)
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 121})
    page = emu.anon.get(str(data["url"]))
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/html")
    post = emu.anon.post(
        "/connect/login", data={"id": data["id"], "email": "a@contoso.com", "decision": "allow"}
    )
    assert post.status_code == 400
    data = emu.beta_login()
    assert emu.consent(str(data["url"]), email="a@contoso.com").status_code == 302
    assert emu.anon.get(str(data["url"])).status_code == 400
    assert emu.anon.get("/connect/login", params={"id": "unknown"}).status_code == 400


@pytest.mark.parametrize(
    "overrides",
    [
        {"provider": "google"},
        {"provider": None},
        {"redirect_uri": "https://elsewhere.example/cb"},
        {"redirect_uri": None},
        {"expires_in": 10},
        {"expires_in": 10**9},
        {"login_hint": "nope"},
        {"state": "s" * 257},
        {"scope": "User.Read"},
        {"account_id": 42},
        {"grant_id": "no-such-grant"},
    ],
)
def test_hosted_auth_validation(emu: Emu, overrides: dict[str, Any]) -> None:
    emu.setup_beta()
    body = {"provider": "microsoft", "redirect_uri": CALLBACK, **overrides}
    r = emu.beta.post("/connect/auth", json={k: v for k, v in body.items() if v is not None})
    assert_beta_error(r, 400)


def test_hosted_auth_needs_an_integration(emu: Emu) -> None:
    assert_beta_error(
        emu.beta.post("/connect/auth", json={"provider": "microsoft", "redirect_uri": CALLBACK}), 400
    )


def test_grants_are_shared_with_v3_one_per_email_and_deletable(emu: Emu) -> None:
    emu.setup_beta()
    emu.setup_v3()
    v3 = emu.connect("max@contoso.com")
    data = emu.beta_login()
    r = emu.consent(str(data["url"]), email="max@contoso.com")
    grant_id = query_of(r.headers["location"])["grant_id"]
    assert grant_id == v3["grant_id"]
    listed = emu.beta.get("/connect/grants").json()
    assert listed["success"] is True
    assert [g["id"] for g in listed["data"]] == [grant_id]
    assert emu.beta.delete(f"/connect/grants/{grant_id}").json() == {"success": True}
    assert_beta_error(emu.beta.get(f"/connect/grants/{grant_id}"), 404)
    gone = emu.beta.delete(f"/connect/grants/{grant_id}")
    assert_beta_error(gone, 404)
    assert gone.json()["type"] == "grant.not_found"  # what revoke counts as "already gone"
    assert emu.api.get(f"/v3/grants/{grant_id}").status_code == 404
    r = emu.consent(str(emu.beta_login()["url"]), email="max@contoso.com")
    assert query_of(r.headers["location"])["grant_id"] != grant_id


def test_the_login_page_escapes_its_inputs(emu: Emu) -> None:
    emu.setup_beta()
    data = emu.beta_login(scope=["<img src=x onerror=alert(1)>"], login_hint="o'neil@contoso.com")
    page = emu.anon.get(str(data["url"]))
    assert "<img" not in page.text
    assert "o&#x27;neil@contoso.com" in page.text
    assert re.search(r'name="id" value="[A-Za-z0-9_-]+"', page.text)
