"""Hostile input at the meetings API (`POST /v1/users/{user_id}/meetings`, `GET`/`PATCH`/`DELETE
/v1/users/{user_id}/meetings/{meeting_id}`), through the local v3 stack.

TM1 (the API key first), TM11 (control characters, injection into Nylas paths and headers), TM14
(nothing echoed), TM7 (no upstream call before validation), and object-level access: a meeting of
another user, or a calendar event teams-connect did not create, is `404 not_found` and untouched.
Every case: the status and code, nothing written to any table, no (or exactly the expected)
upstream call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from local.aws import LOCAL_NYLAS_SECRET

from tests.adversarial import harness
from tests.adversarial.fixtures import CheckedBrowser
from tests.adversarial.harness import Guard
from tests.support.stack_process import StackUrls

V3 = pytest.mark.parametrize("stack", ["v3"], indirect=True)
MEETING = {"title": "Hostile", "start": "2031-07-01T10:00:00Z", "end": "2031-07-01T10:30:00Z"}
TIMES = '"start": "2031-07-01T10:00:00Z", "end": "2031-07-01T11:00:00Z"'
GET_ONE = "GET /v3/grants/{grant_id}/events/{event_id}"


@pytest.fixture(scope="module")
def connected(request: pytest.FixtureRequest) -> Iterator[tuple[StackUrls, str, str]]:
    """A v3 user with a grant and one meeting: (stack, user_id, meeting_id)."""
    stack = harness.STACKS.get("v3")
    browser = CheckedBrowser(stack)
    try:
        user = harness.unique("mu")
        started = browser.begin(user_id=user)
        assert "status=connected" in browser.http.get(started.callback_url).headers["location"]
        with httpx.Client(base_url=stack.gateway, headers=harness.api_headers(stack), timeout=15) as api:
            created = api.post(f"/v1/users/{user}/meetings", json=MEETING)
            assert created.status_code == 201, created.text
            yield stack, user, str(created.json()["meeting_id"])
    finally:
        browser.close()


BAD_BODIES: dict[str, Any] = {
    "json-bomb": "[" * 5000 + "]" * 5000,
    "duplicate-key": '{"title": "a", "title": "b", ' + TIMES + "}",
    "nan": '{"title": "a", "start": NaN}',
    "not-an-object": '"title"',
    "lone-surrogate-title": '{"title": "\\ud800", ' + TIMES + "}",
    "crlf-title": {**MEETING, "title": "a\r\nX-Injected: 1"},
    "nul-title": {**MEETING, "title": "a\x00"},
    "bidi-control": {**MEETING, "title": "a\u0085b"},
    "huge-title": {**MEETING, "title": "t" * 1025},
    "leap-second": {**MEETING, "start": "2031-06-30T23:59:60Z"},
    "year-10000": {**MEETING, "end": "10000-01-01T00:00:00Z"},
    "offset-25h": {**MEETING, "start": "2031-07-01T10:00:00+25:00"},
    "epoch-number": {**MEETING, "start": 1940000000},
    "reversed": {**MEETING, "start": MEETING["end"], "end": MEETING["start"]},
    "three-days": {**MEETING, "end": "2031-07-04T10:00:00Z"},
    "crlf-email": {**MEETING, "participants": [{"email": "a@b.com\r\nBcc: evil@evil.example"}]},
    "email-with-angle": {**MEETING, "participants": [{"email": "<a@b.com>"}]},
    "participant-extra-field": {**MEETING, "participants": [{"email": "a@b.com", "status": "yes"}]},
    "participants-object": {**MEETING, "participants": {"email": "a@b.com"}},
    "too-many-participants": {**MEETING, "participants": [{"email": f"p{i}@b.com"} for i in range(101)]},
    "timezone-traversal": {**MEETING, "timezone": "../../../etc/passwd"},
    "timezone-absolute": {**MEETING, "timezone": "/etc/localtime"},
    "conferencing-override": {**MEETING, "conferencing": {"provider": "Zoom Meeting"}},
    "metadata-override": {**MEETING, "metadata": {"key2": "teams-connect"}},
    "grant-override": {**MEETING, "grant_id": "someone-else"},
}


@V3
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_hostile_create_bodies_are_400_and_change_nothing(
    stack: StackUrls, connected: tuple[StackUrls, str, str], http: httpx.Client, guard: Guard, case: str
) -> None:
    _, user, _ = connected
    body = BAD_BODIES[case]
    raw = body if isinstance(body, str) else json.dumps(body)
    guard.arm(users=(user,))
    response = http.post(
        f"/v1/users/{user}/meetings",
        content=raw.encode("utf-8", "surrogatepass"),
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code == 400, (case, response.text)
    assert response.json()["error"]["code"] == "invalid_request"
    assert "evil" not in response.text
    assert "passwd" not in response.text
    guard.assert_untouched()
    harness.record("meetings_body", "TM7", "TM11", "TM14")


@V3
@pytest.mark.parametrize(
    ("case", "headers", "status"),
    [
        ("no-content-type", {"content-type": ""}, 400),
        ("form-content-type", {"content-type": "application/x-www-form-urlencoded"}, 400),
        ("idempotency-key-too-long", {"idempotency-key": "k" * 256}, 400),
        ("idempotency-key-space", {"idempotency-key": "a b"}, 400),
        ("no-api-key", {"authorization": ""}, 401),
        ("wrong-api-key", {"authorization": "Bearer local-dev-api-kez"}, 401),
    ],
)
def test_hostile_create_headers_change_nothing(
    stack: StackUrls,
    connected: tuple[StackUrls, str, str],
    http: httpx.Client,
    guard: Guard,
    case: str,
    headers: dict[str, str],
    status: int,
) -> None:
    _, user, _ = connected
    guard.arm(users=(user,))
    all_headers = {**harness.api_headers(stack), "content-type": "application/json", **headers}
    response = http.post(f"/v1/users/{user}/meetings", content=json.dumps(MEETING), headers=all_headers)
    assert response.status_code == status, (case, response.text)
    guard.assert_untouched()
    harness.record("meetings_headers", "TM1", "TM11")


@V3
def test_oversized_body_is_413(
    stack: StackUrls, connected: tuple[StackUrls, str, str], http: httpx.Client, guard: Guard
) -> None:
    _, user, _ = connected
    guard.arm(users=(user,))
    body = json.dumps({**MEETING, "description": "d" * 20000})
    response = http.post(
        f"/v1/users/{user}/meetings",
        content=body,
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code == 413
    guard.assert_untouched()
    harness.record("meetings_body", "TM7")


HOSTILE_MEETING_IDS = [
    "..",
    "%2e%2e",
    "a%2F..%2F..",
    "a%00",
    "a%0d%0aX:1",
    "a%3Fcalendar_id%3Dx",
    "%C3%A9",
    "x" * 1025,
]


@V3
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("meeting_id", HOSTILE_MEETING_IDS)
def test_hostile_meeting_ids_never_reach_nylas(
    stack: StackUrls,
    connected: tuple[StackUrls, str, str],
    http: httpx.Client,
    guard: Guard,
    method: str,
    meeting_id: str,
) -> None:
    _, user, _ = connected
    guard.arm(users=(user,))
    body = json.dumps({"title": "x"}) if method == "PATCH" else None
    response = http.request(
        method,
        f"/v1/users/{user}/meetings/{meeting_id}",
        content=body,
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code in (400, 404), (meeting_id, response.text)  # 404: the gateway's own
    guard.assert_untouched()
    harness.record("meetings_path", "TM11")


@V3
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_another_users_meeting_is_not_found_and_untouched(
    stack: StackUrls,
    connected: tuple[StackUrls, str, str],
    http: httpx.Client,
    guard: Guard,
    browser: CheckedBrowser,
    method: str,
) -> None:
    _, owner, meeting_id = connected
    intruder = harness.unique("intruder")
    started = browser.begin(user_id=intruder)
    assert "status=connected" in browser.http.get(started.callback_url).headers["location"]
    guard.arm(users=(owner, intruder))
    body = json.dumps({"title": "Hijacked"}) if method == "PATCH" else None
    response = http.request(
        method,
        f"/v1/users/{intruder}/meetings/{meeting_id}",
        content=body,
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    guard.assert_untouched(upstream={GET_ONE: 1})  # looked up on the intruder's grant only
    own = http.get(f"/v1/users/{owner}/meetings/{meeting_id}", headers=harness.api_headers(stack))
    assert own.json()["title"] == MEETING["title"]
    harness.record("meetings_object_access", "TM1")


@V3
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_calendar_event_teams_connect_did_not_create_is_not_found(
    stack: StackUrls, connected: tuple[StackUrls, str, str], http: httpx.Client, guard: Guard, method: str
) -> None:
    _, user, meeting_id = connected
    mine = http.get(f"/v1/users/{user}/meetings/{meeting_id}", headers=harness.api_headers(stack))
    assert mine.status_code == 200
    grant_id = harness.ddb(stack).get_item(
        TableName=harness.table_name(stack, "Grants"), Key={"pk": {"S": f"USER#{user}"}}
    )["Item"]["grant_id"]["S"]
    private = httpx.post(
        f"{stack.emulator}/v3/grants/{grant_id}/events",
        params={"calendar_id": "primary"},
        json={"title": "Private", "when": {"start_time": 1940000000, "end_time": 1940003600}},
        headers={"authorization": f"Bearer {LOCAL_NYLAS_SECRET['api_key']}"},
    )
    assert private.status_code == 200, private.text
    event_id = private.json()["data"]["id"]
    guard.arm(users=(user,))
    body = json.dumps({"title": "Mine now"}) if method == "PATCH" else None
    response = http.request(
        method,
        f"/v1/users/{user}/meetings/{event_id}",
        content=body,
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code == 404
    guard.assert_untouched(upstream={GET_ONE: 1})
    still = httpx.get(
        f"{stack.emulator}/v3/grants/{grant_id}/events/{event_id}",
        params={"calendar_id": "primary"},
        headers={"authorization": f"Bearer {LOCAL_NYLAS_SECRET['api_key']}"},
    )
    assert still.json()["data"]["title"] == "Private"
    harness.record("meetings_object_access", "TM1")
