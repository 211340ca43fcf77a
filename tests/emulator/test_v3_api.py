"""v3 management API: grants, connectors, redirect URIs, events; API-key auth; request ids; OpenAPI shapes."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from tests.emulator.conftest import AZURE, CALLBACK, Emu, query_of
from tests.emulator.openapi import assert_matches, component_validator
from tests.emulator.test_v3_auth import assert_v3_error

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
HOUR = 3600
WHEN = {"start_time": 1_900_000_000, "end_time": 1_900_000_000 + HOUR}
TEAMS = {"provider": "Microsoft Teams", "autocreate": {}}


def test_schema_check_can_fail() -> None:
    with pytest.raises(jsonschema.ValidationError):
        component_validator("GrantObject").validate(
            {"id": "x", "provider": "microsoft"}
        )  # no scope/created_at
    with pytest.raises(jsonschema.ValidationError):
        assert_matches(
            "/v3/connectors", "post", 201, {"request_id": "r", "data": {"provider": "x", "name": "n", "z": 1}}
        )


# -- auth and request ids -------------------------------------------------------------------------------
V3_ROUTES = [
    ("GET", "/v3/grants"),
    ("GET", "/v3/grants/g1"),
    ("PATCH", "/v3/grants/g1"),
    ("DELETE", "/v3/grants/g1"),
    ("POST", "/v3/grants/g1/events?calendar_id=primary"),
    ("GET", "/v3/grants/g1/events?calendar_id=primary"),
    ("GET", "/v3/grants/g1/events/e1?calendar_id=primary"),
    ("PUT", "/v3/grants/g1/events/e1?calendar_id=primary"),
    ("DELETE", "/v3/grants/g1/events/e1?calendar_id=primary"),
    ("POST", "/v3/connectors"),
    ("GET", "/v3/connectors"),
    ("GET", "/v3/connectors/microsoft"),
    ("PATCH", "/v3/connectors/microsoft"),
    ("DELETE", "/v3/connectors/microsoft"),
    ("GET", "/v3/applications/redirect-uris"),
    ("POST", "/v3/applications/redirect-uris"),
    ("GET", "/v3/applications/redirect-uris/x"),
    ("PATCH", "/v3/applications/redirect-uris/x"),
    ("DELETE", "/v3/applications/redirect-uris/x"),
    ("POST", "/v3/connect/revoke?token=x"),
    ("GET", "/v3/connect/tokeninfo?id_token=x"),
]


@pytest.mark.parametrize(("method", "path"), V3_ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic dGVzdDp0ZXN0", "Bearer", "test-api-key"])
def test_every_v3_route_needs_the_api_key(emu: Emu, method: str, path: str, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    r = emu.anon.request(method, path, headers=headers, json={})
    body = assert_v3_error(r, 401, "unauthorized")
    assert_matches("/v3/grants", "get", 401, body)


def test_request_id_header_and_body_agree(emu: Emu) -> None:
    r1, r2 = emu.api.get("/v3/grants"), emu.api.get("/v3/grants")
    assert r1.json()["request_id"] == r1.headers["x-request-id"]
    assert r1.headers["x-request-id"] != r2.headers["x-request-id"]
    for response in (emu.anon.get("/nope"), emu.anon.get("/_emulator/health"), emu.api.put("/v3/grants")):
        assert response.headers["x-request-id"]
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_unknown_route_and_wrong_method_are_nylas_shaped(emu: Emu) -> None:
    assert_v3_error(emu.api.get("/v3/nothing-here"), 404, "not_found_error")
    r = emu.api.put("/v3/grants")
    assert_v3_error(r, 405)
    assert "GET" in r.headers["allow"]


# -- grants ---------------------------------------------------------------------------------------------
def test_grant_after_exchange(emu: Emu) -> None:
    emu.setup_v3()
    tokens = emu.connect("max@contoso.com", state="initial-state")
    r = emu.api.get(f"/v3/grants/{tokens['grant_id']}")
    assert r.status_code == 200
    assert_matches("/v3/grants/{grantId}", "get", 200, r.json())
    grant = r.json()["data"]
    assert grant["id"] == tokens["grant_id"]
    assert (grant["email"], grant["provider"], grant["grant_status"]) == (
        "max@contoso.com",
        "microsoft",
        "valid",
    )
    assert grant["state"] == "initial-state"
    assert isinstance(grant["created_at"], int)
    assert grant["scope"] == str(tokens["scope"]).split(" ")


def test_one_grant_per_email_and_reauth_keeps_the_id(emu: Emu) -> None:
    emu.setup_v3()
    first = emu.connect("max@contoso.com", state="first")
    emu.anon.post(f"/_emulator/grants/{first['grant_id']}/status", json={"status": "invalid"})
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 100})
    second = emu.connect("MAX@contoso.com", state="second", scope="openid Calendars.ReadWrite")
    assert second["grant_id"] == first["grant_id"]
    grant = emu.api.get(f"/v3/grants/{first['grant_id']}").json()["data"]
    assert grant["grant_status"] == "valid"
    assert grant["state"] == "first", "state is the initial state"
    assert grant["scope"] == ["openid", "Calendars.ReadWrite"]
    assert grant["updated_at"] >= grant["created_at"] + 100
    assert len(emu.api.get("/v3/grants").json()["data"]) == 1
    other = emu.connect("someone@contoso.com")
    assert other["grant_id"] != first["grant_id"]


def test_delete_is_permanent(emu: Emu) -> None:
    emu.setup_v3()
    first = emu.connect("max@contoso.com")
    r = emu.api.delete(f"/v3/grants/{first['grant_id']}")
    assert r.status_code == 200
    assert set(r.json()) == {"request_id"}
    assert_matches("/v3/grants/{grantId}", "delete", 200, r.json())
    body = assert_v3_error(emu.api.get(f"/v3/grants/{first['grant_id']}"), 404, "grant.not_found")
    assert_matches("/v3/grants/{grantId}", "get", 404, body)
    assert_v3_error(emu.api.delete(f"/v3/grants/{first['grant_id']}"), 404, "grant.not_found")
    assert first["grant_id"] not in str(emu.anon.get("/_emulator/state").json())
    again = emu.connect("max@contoso.com")
    assert again["grant_id"] != first["grant_id"]


def test_list_grants_filters_and_pages(emu: Emu) -> None:
    emu.setup_v3()
    ids = []
    for i in range(3):
        ids.append(emu.connect(f"user{i}@contoso.com")["grant_id"])
        emu.anon.post("/_emulator/clock", json={"advance_seconds": 10})
    emu.anon.post(f"/_emulator/grants/{ids[1]}/status", json={"status": "invalid"})
    r = emu.api.get("/v3/grants", params={"limit": 2})
    assert_matches("/v3/grants", "get", 200, r.json())
    assert (r.json()["limit"], r.json()["offset"]) == (2, 0)
    assert [g["id"] for g in r.json()["data"]] == [ids[2], ids[1]]  # newest first
    assert [g["id"] for g in emu.api.get("/v3/grants", params={"offset": 2}).json()["data"]] == [ids[0]]
    asc = emu.api.get("/v3/grants", params={"order_by": "asc"}).json()["data"]
    assert [g["id"] for g in asc] == ids
    assert [
        g["id"] for g in emu.api.get("/v3/grants", params={"email": "USER0@contoso.com"}).json()["data"]
    ] == [ids[0]]
    invalid = emu.api.get("/v3/grants", params={"grant_status": "invalid"}).json()["data"]
    assert [g["id"] for g in invalid] == [ids[1]]
    assert emu.api.get("/v3/grants", params={"provider": "google"}).json()["data"] == []
    for params in (
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
        {"offset": "-1"},
        {"grant_status": "gone"},
    ):
        assert_v3_error(emu.api.get("/v3/grants", params=params), 400)


def test_list_grants_by_creation_window_is_inclusive_at_both_ends(emu: Emu) -> None:
    """The OpenAPI: `since` is created_at >= since, `before` is created_at <= before (what the revoke
    sweeper lists for a lost code exchange, with provider and asc paging)."""
    emu.setup_v3()
    ids = []
    for i in range(3):
        ids.append(emu.connect(f"window{i}@contoso.com")["grant_id"])
        emu.anon.post("/_emulator/clock", json={"advance_seconds": 10})
    created = {g["id"]: g["created_at"] for g in emu.api.get("/v3/grants").json()["data"]}
    window = {
        "since": created[ids[1]],
        "before": created[ids[2]],
        "provider": "microsoft",
        "sort_by": "created_at",
        "order_by": "asc",
    }
    found = emu.api.get("/v3/grants", params=window)
    assert_matches("/v3/grants", "get", 200, found.json())
    assert [g["id"] for g in found.json()["data"]] == ids[1:]
    paged = emu.api.get("/v3/grants", params={**window, "limit": 1, "offset": 1}).json()["data"]
    assert [g["id"] for g in paged] == [ids[2]]
    assert emu.api.get("/v3/grants", params={**window, "before": created[ids[1]] - 1}).json()["data"] == []


def test_patch_grant(emu: Emu) -> None:
    emu.setup_v3()
    grant_id = emu.connect("max@contoso.com")["grant_id"]
    r = emu.api.patch(f"/v3/grants/{grant_id}", json={"scope": ["Mail.Read"], "settings": {"a": "b"}})
    assert r.status_code == 200
    assert_matches("/v3/grants/{grantId}", "patch", 200, r.json())
    assert r.json()["data"]["scope"] == ["Mail.Read"]
    assert_v3_error(emu.api.patch(f"/v3/grants/{grant_id}", json={"scope": "Mail.Read"}), 400)
    assert_v3_error(emu.api.patch("/v3/grants/nope", json={}), 404, "grant.not_found")


# -- connectors -----------------------------------------------------------------------------------------
def test_connector_lifecycle(emu: Emu) -> None:
    r = emu.api.post(
        "/v3/connectors", json={"provider": "microsoft", "settings": AZURE, "scope": ["User.Read"]}
    )
    assert r.status_code == 201
    assert_matches("/v3/connectors", "post", 201, r.json())
    data = r.json()["data"]
    assert data["provider"] == "microsoft"
    assert data["settings"] == {"client_id": "azure-app-id", "tenant": "common"}, "the secret is never echoed"
    assert data["scope"] == ["User.Read"]
    listed = emu.api.get("/v3/connectors")
    assert_matches("/v3/connectors", "get", 200, listed.json())
    assert [c["provider"] for c in listed.json()["data"]] == ["microsoft"]
    got = emu.api.get("/v3/connectors/microsoft")
    assert_matches("/v3/connectors/{provider}", "get", 200, got.json())
    patched = emu.api.patch(
        "/v3/connectors/microsoft", json={"settings": {"tenant": GUID}, "scope": ["a", "b"]}
    )
    assert patched.status_code == 200
    assert_matches("/v3/connectors/{provider}", "patch", 200, patched.json())
    assert patched.json()["data"]["settings"] == {"client_id": "azure-app-id", "tenant": GUID}
    assert patched.json()["data"]["scope"] == ["a", "b"]
    deleted = emu.api.delete("/v3/connectors/microsoft")
    assert deleted.status_code == 200
    assert_matches("/v3/connectors/{provider}", "delete", 200, deleted.json())
    assert_v3_error(emu.api.get("/v3/connectors/microsoft"), 404)
    assert_v3_error(emu.api.delete("/v3/connectors/microsoft"), 404)
    assert_v3_error(emu.api.patch("/v3/connectors/microsoft", json={}), 404)


def test_one_connector_per_provider(emu: Emu) -> None:
    emu.setup_v3(redirect=False)
    r = emu.api.post("/v3/connectors", json={"provider": "microsoft", "settings": AZURE})
    body = assert_v3_error(r, 400)
    assert_matches("/v3/connectors", "post", 400, body)
    assert "already exists" in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"provider": "microsoft"},
        {"provider": "microsoft", "settings": {"client_id": "a"}},
        {"provider": "microsoft", "settings": {"client_id": "a", "client_secret": 5}},
        {"provider": "microsoft", "settings": {**AZURE, "tenant": "consumers"}},
        {"provider": "microsoft", "settings": {**AZURE, "tenant": "not-a-guid"}},
        {"provider": "microsoft", "settings": AZURE, "scope": "User.Read"},
        {"provider": "myspace", "settings": AZURE},
        {"provider": ["microsoft"], "settings": AZURE},
    ],
)
def test_connector_validation(emu: Emu, body: dict[str, Any]) -> None:
    assert_v3_error(emu.api.post("/v3/connectors", json=body), 400, "invalid_request_error")


@pytest.mark.parametrize("tenant", ["common", "organizations", GUID])
def test_connector_tenants(emu: Emu, tenant: str) -> None:
    r = emu.api.post(
        "/v3/connectors", json={"provider": "microsoft", "settings": {**AZURE, "tenant": tenant}}
    )
    assert r.json()["data"]["settings"]["tenant"] == tenant


def test_deleting_the_connector_invalidates_its_grants(emu: Emu) -> None:
    emu.setup_v3()
    grant_id = emu.connect("max@contoso.com")["grant_id"]
    emu.api.delete("/v3/connectors/microsoft")
    assert emu.api.get(f"/v3/grants/{grant_id}").json()["data"]["grant_status"] == "invalid"


# -- redirect URIs --------------------------------------------------------------------------------------
def test_redirect_uri_lifecycle(emu: Emu) -> None:
    r = emu.api.post("/v3/applications/redirect-uris", json={"url": CALLBACK, "platform": "web"})
    assert r.status_code == 200
    assert_matches("/v3/applications/redirect-uris", "post", 200, r.json())
    uri_id = r.json()["data"]["id"]
    listed = emu.api.get("/v3/applications/redirect-uris")
    # The OpenAPI gives this list `success` + `data` (no request_id); the emulator sends both.
    assert_matches("/v3/applications/redirect-uris", "get", 200, listed.json())
    assert listed.json()["success"] is True
    assert [u["url"] for u in listed.json()["data"]] == [CALLBACK]
    got = emu.api.get(f"/v3/applications/redirect-uris/{uri_id}")
    assert_matches("/v3/applications/redirect-uris/{id}", "get", 200, got.json())
    new_url = "https://app.example.com/cb"
    patched = emu.api.patch(
        f"/v3/applications/redirect-uris/{uri_id}", json={"url": new_url, "platform": "web"}
    )
    assert_matches("/v3/applications/redirect-uris/{id}", "patch", 200, patched.json())
    assert patched.json()["data"]["url"] == new_url
    deleted = emu.api.delete(f"/v3/applications/redirect-uris/{uri_id}")
    assert_matches("/v3/applications/redirect-uris/{id}", "delete", 200, deleted.json())
    for method in ("GET", "DELETE"):
        assert_v3_error(emu.api.request(method, f"/v3/applications/redirect-uris/{uri_id}"), 404)


def test_js_platform_needs_its_settings(emu: Emu) -> None:
    r = emu.api.post("/v3/applications/redirect-uris", json={"url": CALLBACK, "platform": "js"})
    assert_v3_error(r, 400)
    r = emu.api.post(
        "/v3/applications/redirect-uris",
        json={"url": CALLBACK, "platform": "js", "settings": {"origin": "x.com"}},
    )
    assert r.status_code == 200
    assert_matches("/v3/applications/redirect-uris", "post", 200, r.json())


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "ftp://example.com/cb"},
        {"url": "/relative"},
        {"url": "https://example.com/cb#frag"},
        {"url": "javascript:alert(1)"},
        {"url": "https://"},
        {"url": 7},
        {"url": CALLBACK, "platform": "fax"},
    ],
)
def test_redirect_uri_validation(emu: Emu, body: dict[str, Any]) -> None:
    assert_v3_error(emu.api.post("/v3/applications/redirect-uris", json=body), 400)


def test_duplicate_redirect_uri_and_patch_requires_platform(emu: Emu) -> None:
    emu.setup_v3(connector=False)
    assert_v3_error(emu.api.post("/v3/applications/redirect-uris", json={"url": CALLBACK}), 400)
    uri_id = emu.api.get("/v3/applications/redirect-uris").json()["data"][0]["id"]
    assert_v3_error(emu.api.patch(f"/v3/applications/redirect-uris/{uri_id}", json={"url": CALLBACK}), 400)


# -- events ---------------------------------------------------------------------------------------------
def _grant(emu: Emu, email: str = "max@contoso.com") -> str:
    emu.setup_v3()
    return str(emu.connect(email)["grant_id"])


def _event(emu: Emu, grant_id: str, body: dict[str, Any], calendar_id: str | None = "primary"):
    params = {"calendar_id": calendar_id} if calendar_id is not None else {}
    return emu.api.post(f"/v3/grants/{grant_id}/events", params=params, json=body)


def test_event_with_teams_autocreate(emu: Emu) -> None:
    grant_id = _grant(emu)
    body = {"title": "Interview", "when": WHEN, "conferencing": TEAMS, "participants": [{"email": "c@x.com"}]}
    r = _event(emu, grant_id, body)
    assert r.status_code == 200, r.text
    assert_matches("/v3/grants/{grant_id}/events", "post", 200, r.json())
    event = r.json()["data"]
    assert event["conferencing"]["provider"] == "Microsoft Teams"
    assert event["conferencing"]["details"]["url"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert event["conferencing"]["details"]["url"] in event["description"]
    assert (event["when"]["start_time"], event["when"]["end_time"]) == (WHEN["start_time"], WHEN["end_time"])
    assert event["grant_id"] == grant_id
    assert event["title"] == "Interview"
    listed = emu.api.get(f"/v3/grants/{grant_id}/events", params={"calendar_id": "primary"})
    assert_matches("/v3/grants/{grant_id}/events", "get", 200, listed.json())
    assert [e["id"] for e in listed.json()["data"]] == [event["id"]]
    second = _event(emu, grant_id, body).json()["data"]
    assert second["conferencing"]["details"]["url"] != event["conferencing"]["details"]["url"]


def test_event_with_explicit_details_and_without_conferencing(emu: Emu) -> None:
    grant_id = _grant(emu)
    details = {
        "provider": "Microsoft Teams",
        "details": {"url": "https://teams.microsoft.com/l/meetup-join/x"},
    }
    r = _event(emu, grant_id, {"when": WHEN, "conferencing": details})
    assert r.json()["data"]["conferencing"] == details
    r = _event(emu, grant_id, {"when": WHEN, "title": "plain", "conferencing": {}})
    assert r.status_code == 200
    assert_matches("/v3/grants/{grant_id}/events", "post", 200, r.json())
    assert "conferencing" not in r.json()["data"]


def test_autocreate_with_details_is_400(emu: Emu) -> None:
    grant_id = _grant(emu)
    conferencing = {**TEAMS, "details": {"url": "https://teams.microsoft.com/l/x"}}
    body = assert_v3_error(_event(emu, grant_id, {"when": WHEN, "conferencing": conferencing}), 400)
    assert_matches("/v3/grants/{grant_id}/events", "post", 400, body)
    assert "details" in body["error"]["message"]


@pytest.mark.parametrize("domain", ["outlook.com", "hotmail.com", "live.com", "msn.com", "Outlook.COM"])
def test_personal_accounts_get_an_event_without_a_teams_meeting(emu: Emu, domain: str) -> None:
    """Like Microsoft Graph for personal accounts: the event is created, silently without a meeting."""
    grant_id = _grant(emu, f"someone@{domain}")
    r = _event(emu, grant_id, {"when": WHEN, "title": "no meeting", "conferencing": TEAMS})
    assert r.status_code == 200, r.text
    event = r.json()["data"]
    assert "conferencing" not in event
    assert "teams.microsoft.com" not in event["description"]


def test_events_need_a_valid_grant_with_calendar_scope(emu: Emu) -> None:
    grant_id = _grant(emu)
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"})
    assert_v3_error(
        _event(emu, grant_id, {"when": WHEN, "conferencing": TEAMS}), 401, "grant.invalid_authentication"
    )
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "valid"})
    assert _event(emu, grant_id, {"when": WHEN, "conferencing": TEAMS}).status_code == 200
    assert_v3_error(_event(emu, "no-such-grant", {"when": WHEN}), 404, "grant.not_found")
    emu.api.patch(f"/v3/grants/{grant_id}", json={"scope": ["User.Read"]})
    assert_v3_error(_event(emu, grant_id, {"when": WHEN}), 403)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"when": {}},
        {"when": {"start_time": 10}},
        {"when": {"start_time": 20, "end_time": 10}},
        {"when": {"start_time": 10, "end_time": 10}},
        {"when": {"start_time": "10", "end_time": 20}},
        {"when": {"start_time": True, "end_time": 20}},
        {"when": {"start_time": 1.5, "end_time": 20}},
        {"when": "tomorrow"},
        {"when": WHEN, "title": 5},
        {"when": WHEN, "title": "x" * 1025},
        {"when": WHEN, "conferencing": {"autocreate": {}}},
        {"when": WHEN, "conferencing": {"provider": "Skype"}},
        {"when": WHEN, "conferencing": {"provider": "Microsoft Teams"}},
        {"when": WHEN, "conferencing": {"provider": "Google Meet", "autocreate": {}}},
        {"when": WHEN, "conferencing": "teams"},
        {"when": WHEN, "participants": [{"name": "no email"}]},
        {"when": WHEN, "participants": "a@b.com"},
    ],
)
def test_event_validation(emu: Emu, body: dict[str, Any]) -> None:
    grant_id = _grant(emu)
    assert_v3_error(_event(emu, grant_id, body), 400)


def test_calendar_id_is_required(emu: Emu) -> None:
    grant_id = _grant(emu)
    assert_v3_error(_event(emu, grant_id, {"when": WHEN}, calendar_id=None), 400)
    assert_v3_error(_event(emu, grant_id, {"when": WHEN}, calendar_id=""), 400)
    assert (
        _event(emu, grant_id, {"when": WHEN}, calendar_id="AAMkAGI2").json()["data"]["calendar_id"]
        == "AAMkAGI2"
    )


def test_concurrent_logins_for_one_email_share_one_grant(emu: Emu) -> None:
    from concurrent.futures import ThreadPoolExecutor

    emu.setup_v3()
    consent_urls = [emu.start() for _ in range(8)]

    def allow(url: str) -> str:
        with httpx.Client(base_url=emu.url, timeout=10) as browser:
            page = browser.get(url)
            login_id = url.split("id=")[1]
            assert page.status_code == 200
            r = browser.post(
                "/emulator/consent", data={"id": login_id, "email": "max@contoso.com", "decision": "allow"}
            )
            code = query_of(r.headers["location"])["code"]
            return str(emu.exchange(code).json()["grant_id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        grant_ids = set(pool.map(allow, consent_urls))
    assert len(grant_ids) == 1
    assert len(emu.api.get("/v3/grants").json()["data"]) == 1
