"""`python -m local.run` runs the revoke sweeper on its compressed schedule, and its control API runs
one now and moves the clock: a revoke that failed at Nylas is retried once it falls due, without
anyone calling the sweeper (contract.md, "Locally")."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.faults.support import FaultEmulator, grant_items
from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls, running_stack

INTERVAL = "3"  # TC_SCHEDULE_MAX_SECONDS: the sweeper's rate(5 minutes) every 3 s here (15 s by default)


@pytest.fixture(scope="module")
def stack() -> Iterator[StackUrls]:
    with running_stack(
        "v3", env={"TC_SCHEDULE_MAX_SECONDS": INTERVAL, "NYLAS_READ_TIMEOUT_MS": "500"}
    ) as urls:
        yield urls


def _wait(probe: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _connect(stack: StackUrls, user: str, email: str) -> None:
    with Browser(stack) as browser:
        result = browser.run(user, email=email)
    assert "status=connected" in result.location, result.location


def _switch_with_a_failing_revoke(stack: StackUrls, user: str) -> str:
    """`user` connects mailbox a, then switches to mailbox b while Nylas refuses every revoke: the old
    grant stays alive at Nylas with a postponed entry in the REVOKE# outbox. Returns its id.

    The switch starts right after a scheduled sweep, and the faults stay until the entry is postponed,
    so that no sweep is still retrying it when Nylas recovers."""
    emulator = FaultEmulator(stack.emulator)
    _connect(stack, user, f"{user}-a@contoso.com")
    grants = emulator.state()["state"]["grants"]  # type: ignore[index]
    old = next(g["id"] for g in grants if g["email"] == f"{user}-a@contoso.com")
    emulator.inject("DELETE", "/v3/grants/{grant_id}", status=503, count=500)
    try:
        runs = _sweeps(stack)
        _wait(lambda: _sweeps(stack) > runs, "a scheduled sweep")
        _connect(stack, user, f"{user}-b@contoso.com")
        _wait(lambda: _postponed(stack, old), "the failed revoke to be postponed")
    finally:
        emulator.clear_faults()
    assert _alive(stack, old)
    return str(old)


def _sweeps(stack: StackUrls) -> int:
    return int(httpx.get(f"{stack.control}/_local/schedules", timeout=10).json()["schedules"][0]["runs"])


def _postponed(stack: StackUrls, grant_id: str) -> bool:
    entry = grant_items(stack.dynamodb()).outbox.get(grant_id)
    now = httpx.get(f"{stack.control}/_local/clock", timeout=10).json()["now"]
    return entry is not None and int(entry["attempts"]["N"]) >= 1 and int(entry["due_at"]["N"]) > now


def _alive(stack: StackUrls, grant_id: str) -> bool:
    state = httpx.get(f"{stack.emulator}/_emulator/state", timeout=10).json()["state"]
    return any(g["id"] == grant_id for g in state["grants"])


def test_the_control_api_lists_the_template_schedule(stack: StackUrls) -> None:
    schedules = httpx.get(f"{stack.control}/_local/schedules", timeout=10).json()["schedules"]
    assert [(s["function"], s["expression"], s["local_interval_seconds"]) for s in schedules] == [
        ("RevokeSweeperFunction", "rate(5 minutes)", 3.0)
    ]
    clock = httpx.get(f"{stack.control}/_local/clock", timeout=10).json()
    assert clock["installed"] is True


def test_a_failed_revoke_is_retried_by_the_schedule_once_due(stack: StackUrls) -> None:
    old = _switch_with_a_failing_revoke(stack, "sched-1")
    # Postponed by the first backoff (60 s): the schedule keeps running but leaves it alone.
    time.sleep(3.5)
    assert _alive(stack, old)
    moved = httpx.post(f"{stack.control}/_local/clock", json={"advance_seconds": 61}, timeout=10)
    assert moved.status_code == 200, moved.text
    # Nobody calls the sweeper: the schedule does, within one interval.
    _wait(lambda: not _alive(stack, old), "the scheduled sweeper to revoke the old grant")
    _wait(lambda: old not in grant_items(stack.dynamodb()).outbox, "the outbox entry to go")
    assert httpx.get(f"{stack.control}/_local/schedules", timeout=10).json()["schedules"][0]["runs"] >= 2


def test_sweep_now_runs_the_sweeper_and_answers_its_result(stack: StackUrls) -> None:
    old = _switch_with_a_failing_revoke(stack, "sched-2")
    httpx.post(f"{stack.control}/_local/clock", json={"advance_seconds": 61}, timeout=10).raise_for_status()
    swept = httpx.post(f"{stack.control}/_local/sweep", timeout=30)
    assert swept.status_code == 200, swept.text
    body = swept.json()
    assert body["function"] == "RevokeSweeperFunction"
    assert set(body["result"]) == {"revoked", "kept", "failed"}
    # This sweep or the scheduled one that ran just before it revoked the grant.
    assert not _alive(stack, old)
    assert old not in grant_items(stack.dynamodb()).outbox
