"""The emulator's events routes: create / list (metadata filters) / get / PUT / DELETE, the fields
Nylas always returns (every answer parsed with the official Nylas Python SDK v6 models), the
personal-account behaviour, faults on every events route, and the `organizations` tenant's refusal
of personal accounts at consent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from nylas.models.events import Event
from nylas.models.response import DeleteResponse, ListResponse, Response

from tests.emulator.conftest import AZURE, CALLBACK, Emu, query_of
from tests.emulator.test_v3_auth import assert_v3_error

HOUR = 3600
WHEN = {"start_time": 1_900_000_000, "end_time": 1_900_000_000 + HOUR}
TEAMS = {"provider": "Microsoft Teams", "autocreate": {}}
PRIMARY = {"calendar_id": "primary"}


def _grant(emu: Emu, email: str = "max@contoso.com") -> str:
    emu.setup_v3()
    return str(emu.connect(email)["grant_id"])


def _sdk_event(r: httpx.Response) -> Event:
    """The SDK parses the answer exactly as it would parse Nylas's (KeyError on a missing field)."""
    assert r.status_code == 200, r.text
    parsed = Response.from_dict(r.json(), Event)
    assert isinstance(parsed.data, Event)
    return parsed.data


def _create(emu: Emu, grant_id: str, **body: Any) -> httpx.Response:
    return emu.api.post(f"/v3/grants/{grant_id}/events", params=PRIMARY, json={"when": WHEN, **body})


def test_sdk_parsing_can_fail() -> None:
    """The check is real: an answer without a field the SDK needs does not parse."""
    with pytest.raises(KeyError):
        Event.from_dict({"id": "e", "grant_id": "g", "calendar_id": "c", "busy": True, "when": WHEN})


def test_create_answers_every_always_returned_field(emu: Emu) -> None:
    grant_id = _grant(emu)
    event = _sdk_event(_create(emu, grant_id, title="Interview", conferencing=TEAMS))
    assert event.grant_id == grant_id
    assert event.participants == []
    assert event.title == "Interview"
    assert event.organizer is not None
    assert event.organizer["email"] == "max@contoso.com"
    assert event.conferencing is not None
    url = event.conferencing.details["url"]  # type: ignore[union-attr]
    assert url.startswith("https://teams.microsoft.com/l/meetup-join/")
    assert event.status == "confirmed"
    assert event.visibility == "default"
    assert event.created_at
    assert event.updated_at
    assert event.ical_uid
    assert event.html_link
    assert event.metadata == {}


def test_get_put_delete_one_event(emu: Emu) -> None:
    grant_id = _grant(emu)
    created = _sdk_event(
        _create(emu, grant_id, title="One", conferencing=TEAMS, metadata={"key1": "tag", "key2": "x"})
    )
    path = f"/v3/grants/{grant_id}/events/{created.id}"
    got = _sdk_event(emu.api.get(path, params=PRIMARY))
    assert got.id == created.id
    assert got.conferencing == created.conferencing

    later = {"start_time": WHEN["start_time"] + HOUR, "end_time": WHEN["end_time"] + 2 * HOUR}
    put = emu.api.put(
        path,
        params=PRIMARY,
        json={"title": "Two", "when": later, "participants": [{"email": "a@b.com", "name": "A"}]},
    )
    updated = _sdk_event(put)
    assert updated.title == "Two"
    assert (updated.when.start_time, updated.when.end_time) == (later["start_time"], later["end_time"])  # type: ignore[union-attr]
    assert [p.email for p in updated.participants] == ["a@b.com"]
    assert updated.metadata == {"key1": "tag", "key2": "x"}  # fields not sent are kept
    assert updated.conferencing == created.conferencing

    deleted = emu.api.delete(path, params=PRIMARY)
    assert deleted.status_code == 200
    assert isinstance(DeleteResponse.from_dict(deleted.json()), DeleteResponse)
    assert_v3_error(emu.api.get(path, params=PRIMARY), 404, "not_found_error")
    assert_v3_error(emu.api.delete(path, params=PRIMARY), 404, "not_found_error")


def test_put_with_empty_conferencing_removes_the_meeting(emu: Emu) -> None:
    grant_id = _grant(emu)
    created = _sdk_event(_create(emu, grant_id, conferencing=TEAMS))
    path = f"/v3/grants/{grant_id}/events/{created.id}"
    updated = _sdk_event(emu.api.put(path, params=PRIMARY, json={"conferencing": {}}))
    assert updated.conferencing is None


def test_list_filters_on_a_metadata_pair(emu: Emu) -> None:
    grant_id = _grant(emu)
    _create(emu, grant_id, metadata={"key1": "a"})
    wanted = _sdk_event(_create(emu, grant_id, metadata={"key1": "b", "key2": "x"}))
    listed = emu.api.get(f"/v3/grants/{grant_id}/events", params={**PRIMARY, "metadata_pair": "key1:b"})
    assert listed.status_code == 200
    parsed = ListResponse.from_dict(listed.json(), Event)
    assert [e.id for e in parsed.data] == [wanted.id]
    everything = emu.api.get(f"/v3/grants/{grant_id}/events", params=PRIMARY).json()["data"]
    assert len(everything) == 2


@pytest.mark.parametrize("pair", ["key1", "key6:b", "other:b", "key1:", ":b"])
def test_metadata_filter_only_on_the_five_indexed_keys(emu: Emu, pair: str) -> None:
    grant_id = _grant(emu)
    r = emu.api.get(f"/v3/grants/{grant_id}/events", params={**PRIMARY, "metadata_pair": pair})
    assert_v3_error(r, 400)


def test_personal_account_event_parses_without_conferencing(emu: Emu) -> None:
    grant_id = _grant(emu, "someone@outlook.com")
    event = _sdk_event(_create(emu, grant_id, title="x", conferencing=TEAMS))
    assert event.conferencing is None


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_one_event_routes_check_grant_calendar_and_scope(emu: Emu, method: str) -> None:
    grant_id = _grant(emu)
    created = _sdk_event(_create(emu, grant_id))
    path = f"/v3/grants/{grant_id}/events/{created.id}"
    body = {"title": "t"} if method == "PUT" else None
    assert_v3_error(emu.api.request(method, path, json=body), 400)  # calendar_id is required
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"})
    assert_v3_error(
        emu.api.request(method, path, params=PRIMARY, json=body), 401, "grant.invalid_authentication"
    )
    emu.anon.post(f"/_emulator/grants/{grant_id}/status", json={"status": "valid"})
    assert_v3_error(
        emu.api.request(method, f"/v3/grants/nope/events/{created.id}", params=PRIMARY, json=body),
        404,
        "grant.not_found",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"when": {"start_time": 20, "end_time": 10}},
        {"title": 5},
        {"participants": [{"name": "no email"}]},
        {"metadata": {"key1": 5}},
        {"conferencing": {"provider": "Skype"}},
    ],
)
def test_put_validates_like_create(emu: Emu, body: dict[str, Any]) -> None:
    grant_id = _grant(emu)
    created = _sdk_event(_create(emu, grant_id, title="keep"))
    path = f"/v3/grants/{grant_id}/events/{created.id}"
    assert_v3_error(emu.api.put(path, params=PRIMARY, json=body), 400)
    assert _sdk_event(emu.api.get(path, params=PRIMARY)).title == "keep"


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("POST", "/v3/grants/{grant_id}/events"),
        ("GET", "/v3/grants/{grant_id}/events"),
        ("GET", "/v3/grants/{grant_id}/events/{event_id}"),
        ("PUT", "/v3/grants/{grant_id}/events/{event_id}"),
        ("DELETE", "/v3/grants/{grant_id}/events/{event_id}"),
    ],
)
def test_faults_on_every_events_route(emu: Emu, method: str, template: str) -> None:
    grant_id = _grant(emu)
    created = _sdk_event(_create(emu, grant_id))
    fault = {"method": method, "path": template, "status": 429, "headers": {"Retry-After": "7"}}
    assert emu.anon.post("/_emulator/faults", json=fault).status_code == 201
    path = template.format(grant_id=grant_id, event_id=created.id)
    r = emu.api.request(
        method, path, params=PRIMARY, json={"when": WHEN} if method in ("POST", "PUT") else None
    )
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    again = emu.api.request(
        method, path, params=PRIMARY, json={"when": WHEN} if method in ("POST", "PUT") else None
    )
    assert again.status_code == 200, again.text


# -- AzureTenant=organizations ------------------------------------------------------------------------------
def _setup_with_tenant(emu: Emu, tenant: str) -> None:
    r = emu.api.post(
        "/v3/connectors", json={"provider": "microsoft", "settings": {**AZURE, "tenant": tenant}}
    )
    assert r.status_code == 201, r.text
    r = emu.api.post("/v3/applications/redirect-uris", json={"url": CALLBACK, "platform": "web"})
    assert r.status_code == 200, r.text


def test_organizations_tenant_refuses_personal_accounts_at_consent(emu: Emu) -> None:
    _setup_with_tenant(emu, "organizations")
    r = emu.consent(emu.start(), email="someone@outlook.com")
    assert r.status_code == 302
    query = query_of(r.headers["location"])
    assert query["error"] == "invalid_request"
    assert query["error_description"].startswith("AADSTS500200: ")
    assert query["state"] == "state-123"
    assert "code" not in query
    assert emu.api.get("/v3/grants").json()["data"] == []  # no grant was made


@pytest.mark.parametrize(
    ("tenant", "email"), [("organizations", "max@contoso.com"), ("common", "me@live.com")]
)
def test_work_accounts_and_other_tenants_consent_as_before(emu: Emu, tenant: str, email: str) -> None:
    _setup_with_tenant(emu, tenant)
    r = emu.consent(emu.start(), email=email)
    assert "code" in query_of(r.headers["location"])
