"""Nylas faults on every Nylas call of each flavour, injected through the emulator's control API
into the local stack (real handlers, moto server, emulator). Each fault must end in the contract's
answer, leave the tables whole (no grant item, or the old one untouched; session retryable), and a
rerun must converge to exactly one consistent grant record.

Fault kinds (each aimed at every attempt the client may make, so the call fails for good):
- 503: retried for idempotent calls (3 attempts), never for the code exchange (1);
- 429 with `Retry-After: 60`: longer than the deadline, so no wait and no retry (1 call);
- timeout: the emulator waits 1.5 s, the handlers wait 0.5 s per attempt (`NYLAS_READ_TIMEOUT_MS`);
- drop: the connection is closed without an answer (retried only where safe to repeat).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls

from .conftest import api_client
from .support import (
    FIGURES,
    NYLAS_CALLS,
    FaultEmulator,
    assert_error_redirect,
    assert_json_error,
    assert_no_grant,
    assert_one_consistent_grant,
    redirect_params,
    session_status,
)

FAULTS: dict[str, dict[str, Any]] = {
    "503": {"status": 503, "count": 3},
    "429": {"status": 429, "headers": {"Retry-After": "60"}, "count": 3},
    "timeout": {"delay_ms": 1500, "count": 3},
    "drop": {"drop": True, "count": 3},
}
TOKEN = "POST /v3/connect/token"


@dataclass(frozen=True)
class Scenario:
    flavour: str
    call: str
    fault: str

    @property
    def id(self) -> str:
        return f"{self.flavour}-{self.call.split()[0]}-{self.call.split()[1].strip('/')}-{self.fault}"

    @property
    def expected_calls(self) -> int:
        """How many requests reach Nylas: idempotent calls are retried (3 attempts) except when
        Retry-After does not fit the deadline; the code exchange is never repeated."""
        if self.call == TOKEN or self.fault == "429":
            return 1
        return 3


SCENARIOS = [
    Scenario(f, call, fault) for f, calls in NYLAS_CALLS.items() for call in calls for fault in FAULTS
]


def _slug(scenario: Scenario) -> str:
    return scenario.id.replace("/", "-").replace("{", "").replace("}", "").replace("_", "-").lower()


def _stack(request: pytest.FixtureRequest, flavour: str) -> StackUrls:
    stack = request.getfixturevalue(f"{flavour}_stack")
    assert isinstance(stack, StackUrls)
    return stack


def _connect(browser: Browser, stack: StackUrls, user_id: str, email: str) -> str:
    """A complete flow that must succeed; returns the stored grant id."""
    result = browser.run(user_id, email=email)
    assert result.final is not None
    assert redirect_params(result.final, f"{stack.demo}/return") == {"status": "connected"}
    return assert_one_consistent_grant(stack.dynamodb(), user_id, email)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_nylas_fault_ends_in_the_contract_error_and_a_rerun_converges(
    scenario: Scenario, request: pytest.FixtureRequest
) -> None:
    stack = _stack(request, scenario.flavour)
    emulator = FaultEmulator(stack.emulator)
    ddb = stack.dynamodb()
    user_id = f"u-{_slug(scenario)}"
    email = f"{user_id}@contoso.com"
    return_to = f"{stack.demo}/return"
    method, path = scenario.call.split(" ", 1)
    try:
        with Browser(stack) as browser, api_client(stack) as api:
            if method == "DELETE":
                grant_id = _connect(browser, stack, user_id, email)
                emulator.reset_calls()
                emulator.inject(method, path, **FAULTS[scenario.fault])
                answer = api.delete(f"/v1/grants/{user_id}")
                assert_json_error(answer, 503, "upstream_unavailable")
                assert emulator.count(scenario.call) == scenario.expected_calls
                # Nylas could not be reached: the record stays, whole.
                assert assert_one_consistent_grant(ddb, user_id, email) == grant_id
                emulator.clear_faults()
                assert api.delete(f"/v1/grants/{user_id}").status_code == 204
                assert_no_grant(ddb, user_id)
                outcome = "503 JSON upstream_unavailable, record kept"
            elif scenario.call == "POST /connect/auth":
                session = browser.create_session(user_id)
                emulator.reset_calls()
                emulator.inject(method, path, **FAULTS[scenario.fault])
                answer = browser.start(session["connect_url"])
                assert_error_redirect(answer, return_to, "upstream_unavailable")
                assert "set-cookie" not in answer.headers
                assert emulator.count(scenario.call) == scenario.expected_calls
                assert session_status(ddb, session["session_id"]) == "pending"  # the link works again
                assert_no_grant(ddb, user_id)
                emulator.clear_faults()
                started = browser.start(session["connect_url"])  # the same link, now it works
                assert started.status_code == 302
                callback = browser.consent(started.headers["location"], email=email, decision="allow")
                assert redirect_params(browser.http.get(callback), return_to) == {"status": "connected"}
                outcome = "302 return_to status=error error=upstream_unavailable, session pending"
            else:  # the callback's call: v3 code exchange, beta grant lookup
                session = browser.create_session(user_id)
                started = browser.start(session["connect_url"])
                assert started.status_code == 302
                callback = browser.consent(started.headers["location"], email=email, decision="allow")
                emulator.reset_calls()
                emulator.inject(method, path, **FAULTS[scenario.fault])
                answer = browser.http.get(callback)
                assert_error_redirect(answer, return_to, "upstream_unavailable")
                assert emulator.count(scenario.call) == scenario.expected_calls
                assert session_status(ddb, session["session_id"]) == "started"  # released, not lost
                assert_no_grant(ddb, user_id)
                emulator.clear_faults()
                outcome = "302 return_to status=error error=upstream_unavailable, session released"
            assert emulator.pending_faults() == []
            # Rerunning the flow converges to exactly one grant record.
            _connect(browser, stack, user_id, email)
            _connect(browser, stack, user_id, email)
    finally:
        emulator.clear_faults()
        emulator.http.close()
    FIGURES.scenario(
        layer="nylas",
        flavour=scenario.flavour,
        target=scenario.call,
        fault=scenario.fault,
        nylas_calls=scenario.expected_calls,
        outcome=outcome,
    )


RECOVERABLE = [("v3", "DELETE /v3/grants/{grant_id}"), ("beta", "GET /connect/grants/{grant_id}")]


@pytest.mark.parametrize(("flavour", "call"), RECOVERABLE, ids=[f for f, _ in RECOVERABLE])
def test_a_short_retry_after_is_honoured_and_the_idempotent_call_succeeds(
    flavour: str, call: str, request: pytest.FixtureRequest
) -> None:
    stack = _stack(request, flavour)
    emulator = FaultEmulator(stack.emulator)
    ddb = stack.dynamodb()
    user_id = f"u-{flavour}-retry-after"
    email = f"{user_id}@contoso.com"
    method, path = call.split(" ", 1)
    try:
        with Browser(stack) as browser, api_client(stack) as api:
            if method == "DELETE":
                _connect(browser, stack, user_id, email)
            emulator.reset_calls()
            emulator.inject(method, path, status=429, headers={"Retry-After": "1"}, count=1)
            began = time.monotonic()
            if method == "DELETE":
                assert api.delete(f"/v1/grants/{user_id}").status_code == 204
                assert_no_grant(ddb, user_id)
            else:
                _connect(browser, stack, user_id, email)
            elapsed = time.monotonic() - began
            assert emulator.count(call) == 2
            assert elapsed >= 1.0  # waited for Retry-After
            assert elapsed < 5.0
    finally:
        emulator.clear_faults()
        emulator.http.close()
    FIGURES.scenario(
        layer="nylas",
        flavour=flavour,
        target=call,
        fault="429 Retry-After: 1 (once)",
        nylas_calls=2,
        outcome="waited, retried, succeeded",
    )


# Last in this module: it leaves the delete function's breaker open for 30 s in this stack.
@pytest.mark.parametrize("flavour", ["v3", "beta"])
def test_circuit_breaker_fails_fast_without_calling_nylas(
    flavour: str, request: pytest.FixtureRequest
) -> None:
    stack = _stack(request, flavour)
    emulator = FaultEmulator(stack.emulator)
    ddb = stack.dynamodb()
    user_id = f"u-{flavour}-breaker"
    email = f"{user_id}@contoso.com"
    call = NYLAS_CALLS[flavour][-1]  # the revoke (DELETE) call
    method, path = call.split(" ", 1)
    try:
        with Browser(stack) as browser, api_client(stack) as api:
            grant_id = _connect(browser, stack, user_id, email)
            emulator.reset_calls()
            emulator.inject(method, path, status=503, count=50)
            seen = []
            for _ in range(4):
                answer = api.delete(f"/v1/grants/{user_id}")
                assert_json_error(answer, 503, "upstream_unavailable")
                seen.append(emulator.count(call))
            # 3 attempts, then 2 more trip the breaker (fail_max=5): afterwards no request at all.
            assert seen == [3, 5, 5, 5]
            assert assert_one_consistent_grant(ddb, user_id, email) == grant_id
            emulator.clear_faults()
            # Only that container's breaker is open: the other functions still reach Nylas.
            _connect(browser, stack, f"{user_id}-2", f"{user_id}-2@contoso.com")
    finally:
        emulator.clear_faults()
        emulator.http.close()
    FIGURES.scenario(
        layer="nylas",
        flavour=flavour,
        target=call,
        fault="503 persistent (circuit breaker)",
        nylas_calls=5,
        outcome="breaker open after 5 failures: 503 upstream_unavailable with no Nylas call",
    )
