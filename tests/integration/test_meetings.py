"""The meetings API through the whole local system (gateway built from template.yaml, real handlers,
moto server, the Nylas emulator): connect a user, then schedule, read, change and cancel a Teams
meeting; idempotent retries; personal accounts; expired grants; the beta flavour; and a
deployment for work or school accounts only (AzureTenant=organizations)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.flow_client import Browser, query_of
from tests.support.stack_process import StackUrls, running_stack

from .conftest import Emulator

MEETING = {
    "title": "Interview",
    "start": "2031-05-01T09:00:00+02:00",
    "end": "2031-05-01T09:45:00+02:00",
    "participants": [{"email": "candidate@example.org", "name": "Cand"}],
    "timezone": "Europe/Paris",
}


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def _connect(browser: Browser, stack: StackUrls, email: str) -> str:
    user = _user()
    result = browser.run(user, email=email)
    assert result.final is not None
    assert query_of(result.location).get("status") == ["connected"], result.location
    return user


def _events_of(emulator: Emulator) -> int:
    state: Any = emulator.state()["state"]
    return sum(int(n) for n in state["events"].values())


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# Meetings exist in the v3 flavour; the beta stack is used by test_beta_answers_unsupported_flavour.
V3 = pytest.mark.parametrize("stack", ["v3"], indirect=True)
BETA = pytest.mark.parametrize("stack", ["beta"], indirect=True)


@V3
def test_connect_schedule_read_change_cancel(
    stack: StackUrls, browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = _connect(browser, stack, f"{_user()}@contoso.com")
    assert api.get(f"/v1/grants/{user}").json()["teams"] == "unknown"
    created = api.post(f"/v1/users/{user}/meetings", json=MEETING)
    assert created.status_code == 201, created.text
    meeting = created.json()
    assert meeting["join_url"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert (meeting["start"], meeting["end"]) == ("2031-05-01T07:00:00Z", "2031-05-01T07:45:00Z")
    assert meeting["participants"] == [{"email": "candidate@example.org", "name": "Cand"}]
    assert meeting["organizer_email"].endswith("@contoso.com")
    assert api.get(f"/v1/grants/{user}").json()["teams"] == "available"

    path = f"/v1/users/{user}/meetings/{meeting['meeting_id']}"
    assert api.get(path).json() == meeting
    changed = api.patch(path, json={"title": "Final round", "end": "2031-05-01T08:00:00Z"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Final round"
    assert changed.json()["end"] == "2031-05-01T08:00:00Z"
    assert changed.json()["join_url"] == meeting["join_url"]
    deleted = api.delete(path)
    assert deleted.status_code == 204
    _error(api.get(path), 404, "not_found")
    _error(api.delete(path), 404, "not_found")


@V3
def test_an_idempotent_retry_creates_one_meeting(
    stack: StackUrls, browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = _connect(browser, stack, f"{_user()}@contoso.com")
    before = _events_of(emulator)
    headers = {"Idempotency-Key": f"booking-{uuid.uuid4()}"}
    first = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=headers)
    again = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert _events_of(emulator) == before + 1
    reused = api.post(f"/v1/users/{user}/meetings", json={**MEETING, "title": "x"}, headers=headers)
    _error(reused, 422, "idempotency_key_reused")
    assert _events_of(emulator) == before + 1


@V3
def test_a_personal_account_gets_teams_unavailable_and_nothing_in_its_calendar(
    stack: StackUrls, browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = _connect(browser, stack, f"{_user()}@outlook.com")
    before = _events_of(emulator)
    _error(api.post(f"/v1/users/{user}/meetings", json=MEETING), 422, "teams_unavailable")
    assert _events_of(emulator) == before  # created without a link, then deleted again
    assert api.get(f"/v1/grants/{user}").json()["teams"] == "unavailable"
    calls = emulator.calls().get("POST /v3/grants/{grant_id}/events", 0)
    _error(api.post(f"/v1/users/{user}/meetings", json=MEETING), 422, "teams_unavailable")
    assert emulator.calls().get("POST /v3/grants/{grant_id}/events", 0) == calls  # known up front


@V3
def test_an_expired_grant_is_reauth_required_and_the_record_says_so(
    stack: StackUrls, browser: Browser, api: httpx.Client, emulator: Emulator
) -> None:
    user = _connect(browser, stack, f"{_user()}@contoso.com")
    grant_id = api.get(f"/v1/grants/{user}").json()["grant_id"]
    assert (
        emulator.http.post(f"/_emulator/grants/{grant_id}/status", json={"status": "invalid"}).status_code
        == 200
    )
    _error(api.post(f"/v1/users/{user}/meetings", json=MEETING), 409, "reauth_required")
    assert api.get(f"/v1/grants/{user}").json()["status"] == "expired"
    # Connecting again (same mailbox) makes the record valid again and meetings work.
    email = api.get(f"/v1/grants/{user}").json()["email"]
    result = browser.run(user, email=email)
    assert query_of(result.location).get("status") == ["connected"]
    assert api.post(f"/v1/users/{user}/meetings", json=MEETING).status_code == 201


@V3
def test_unknown_user_is_not_connected_and_bad_input_changes_nothing(
    stack: StackUrls, api: httpx.Client, emulator: Emulator
) -> None:
    before = emulator.total_calls()
    _error(api.post(f"/v1/users/{_user()}/meetings", json=MEETING), 404, "not_connected")
    _error(
        api.post(f"/v1/users/{_user()}/meetings", json={**MEETING, "end": MEETING["start"]}),
        400,
        "invalid_request",
    )
    _error(api.get(f"/v1/users/{_user()}/meetings/abc"), 404, "not_connected")
    assert httpx.post(f"{stack.gateway}/v1/users/x/meetings", json=MEETING).status_code == 401
    assert emulator.total_calls() == before


@BETA
def test_beta_answers_unsupported_flavour(stack: StackUrls, api: httpx.Client, emulator: Emulator) -> None:
    before = emulator.total_calls()
    for method, path, body in (
        ("POST", "/v1/users/u/meetings", MEETING),
        ("GET", "/v1/users/u/meetings/m1", None),
        ("PATCH", "/v1/users/u/meetings/m1", {"title": "x"}),
        ("DELETE", "/v1/users/u/meetings/m1", None),
    ):
        _error(api.request(method, path, json=body), 400, "unsupported_flavour")
    assert emulator.total_calls() == before


# --- AzureTenant=organizations ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def organizations_stack() -> Iterator[StackUrls]:
    with running_stack("v3", env={"TC_AZURE_TENANT": "organizations"}) as urls:
        yield urls


def test_organizations_tenant_refuses_personal_accounts_with_account_not_supported(
    organizations_stack: StackUrls,
) -> None:
    with Browser(organizations_stack) as browser:
        refused = browser.run(_user(), email="someone@hotmail.com")
        assert query_of(refused.location) == {"status": ["error"], "error": ["account_not_supported"]}
        accepted = browser.run(_user(), email="someone@contoso.com")
        assert query_of(accepted.location) == {"status": ["connected"]}
