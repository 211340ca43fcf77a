"""Nylas faults on every events call of the meetings API, through the local stack (handlers wait
0.5 s per Nylas attempt). Every fault ends in the contract's answer, the calendar keeps exactly the
meetings the answers say exist, and a rerun converges.

- create (`POST …/events`, never repeated blindly): 503 / timeout / drop may have reached Nylas, so
  the handler looks for the meeting's metadata tag; a retry with the same Idempotency-Key looks
  again before creating. The timeout case is the real one: the emulator creates the event after
  the handler gave up, and the retry answers with THAT meeting.
- get / update / delete of one event and the tag lookup (`GET …/events`): idempotent, retried.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls

from .conftest import api_client
from .support import FIGURES, FaultEmulator, assert_json_error

MEETING = {"title": "Fault drill", "start": "2031-06-01T10:00:00Z", "end": "2031-06-01T10:30:00Z"}
CREATE = "POST /v3/grants/{grant_id}/events"
LIST = "GET /v3/grants/{grant_id}/events"
ONE = "/v3/grants/{grant_id}/events/{event_id}"
FAULTS: dict[str, dict[str, Any]] = {
    "503": {"status": 503, "count": 3},
    "429": {"status": 429, "headers": {"Retry-After": "60"}, "count": 3},
    "timeout": {"delay_ms": 1500, "count": 3},
    "drop": {"drop": True, "count": 3},
}


def _connected_user(stack: StackUrls) -> str:
    user = f"m-{uuid.uuid4().hex[:10]}"
    with Browser(stack) as browser:
        result = browser.run(user, email=f"{user}@contoso.com")
    assert "status=connected" in result.location
    return user


def _events(emulator: FaultEmulator) -> int:
    state: Any = emulator.state()["state"]
    return sum(int(n) for n in state["events"].values())


def _wait_for_events(emulator: FaultEmulator, count: int) -> None:
    deadline = time.monotonic() + 5
    while _events(emulator) < count:
        assert time.monotonic() < deadline, "the delayed create never reached the emulator's calendar"
        time.sleep(0.05)


def _expect(answer: httpx.Response, fault: str) -> None:
    if fault == "429":
        assert_json_error(answer, 429, "rate_limited")
        assert answer.headers["retry-after"] == "60"
    else:
        assert_json_error(answer, 503, "upstream_unavailable")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_create_fault_leaves_at_most_the_meeting_a_retry_returns(v3_stack: StackUrls, fault: str) -> None:
    emulator = FaultEmulator(v3_stack.emulator)
    user = _connected_user(v3_stack)
    key = {"Idempotency-Key": f"create-{fault}-{uuid.uuid4()}"}
    try:
        with api_client(v3_stack) as api:
            before = _events(emulator)
            emulator.reset_calls()
            emulator.inject("POST", "/v3/grants/{grant_id}/events", **{**FAULTS[fault], "count": 1})
            answer = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=key)
            _expect(answer, fault)
            assert emulator.count(CREATE) == 1  # a create is never repeated blindly
            if fault == "429":
                assert emulator.count(LIST) == 0  # Nylas refused it: nothing to look for
            else:
                assert emulator.count(LIST) == 1  # it may exist: the tag was looked up
            if fault == "timeout":
                _wait_for_events(emulator, before + 1)  # Nylas finished after the handler gave up
            retried = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=key)
            assert retried.status_code == 201, retried.text
            assert retried.json()["join_url"].startswith("https://teams.microsoft.com/")
            assert _events(emulator) == before + 1  # exactly one meeting, whatever happened
            again = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=key)
            assert again.json() == retried.json()
            assert _events(emulator) == before + 1
            assert api.get(f"/v1/grants/{user}").json()["status"] == "valid"
    finally:
        emulator.clear_faults()
        emulator.http.close()
    FIGURES.scenario(
        layer="nylas",
        flavour="v3",
        target=CREATE,
        fault=fault,
        nylas_calls=1,
        outcome=f"{answer.status_code}",
    )


def test_tag_lookup_fault_after_a_lost_create_is_503_and_the_retry_converges(v3_stack: StackUrls) -> None:
    emulator = FaultEmulator(v3_stack.emulator)
    user = _connected_user(v3_stack)
    key = {"Idempotency-Key": f"lookup-{uuid.uuid4()}"}
    try:
        with api_client(v3_stack) as api:
            before = _events(emulator)
            emulator.inject("POST", "/v3/grants/{grant_id}/events", status=503, count=1)
            emulator.inject("GET", "/v3/grants/{grant_id}/events", status=503, count=3)
            emulator.reset_calls()
            assert_json_error(
                api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=key), 503, "upstream_unavailable"
            )
            assert emulator.count(LIST) == 3  # the lookup is idempotent: retried
            retried = api.post(f"/v1/users/{user}/meetings", json=MEETING, headers=key)
            assert retried.status_code == 201, retried.text
            assert emulator.count(LIST) == 4  # the retry looked before creating
            assert _events(emulator) == before + 1
    finally:
        emulator.clear_faults()
        emulator.http.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_one_event_call_fault_is_the_contract_error_and_changes_nothing(
    v3_stack: StackUrls, method: str, fault: str
) -> None:
    emulator = FaultEmulator(v3_stack.emulator)
    user = _connected_user(v3_stack)
    try:
        with api_client(v3_stack) as api:
            created = api.post(f"/v1/users/{user}/meetings", json=MEETING)
            assert created.status_code == 201, created.text
            path = f"/v1/users/{user}/meetings/{created.json()['meeting_id']}"
            before = _events(emulator)
            # GET is the first call of every route on one meeting; PUT and DELETE come after it.
            emulator.inject(method, ONE, **FAULTS[fault])
            emulator.reset_calls()
            if method == "PUT":
                answer = api.patch(path, json={"title": "Changed"})
            elif method == "DELETE":
                answer = api.delete(path)
            else:
                answer = api.get(path)
            _expect(answer, fault)
            expected_attempts = 1 if fault == "429" else 3
            assert emulator.count(f"{method} {ONE}") == expected_attempts
            emulator.clear_faults()
            if fault == "timeout" and method != "GET":
                # A slow Nylas may have applied the change after the handler gave up (the emulator
                # finishes the work): the answer said "unavailable", and a rerun converges.
                time.sleep(1.6)
            else:
                current = api.get(path)
                assert current.status_code == 200
                assert current.json()["title"] == MEETING["title"]  # nothing changed
                assert _events(emulator) == before
            if method == "PUT":
                assert api.patch(path, json={"title": "Changed"}).json()["title"] == "Changed"
                assert _events(emulator) == before
            if method == "DELETE":
                assert api.delete(path).status_code in (204, 404)  # 404: the slow delete had happened
                assert_json_error(api.get(path), 404, "not_found")
                assert _events(emulator) == before - 1
    finally:
        emulator.clear_faults()
        emulator.http.close()
    FIGURES.scenario(
        layer="nylas",
        flavour="v3",
        target=f"{method} {ONE}",
        fault=fault,
        nylas_calls=expected_attempts,
        outcome=f"{answer.status_code} JSON; rerun converges",
    )
