"""Microsoft failing or slow on the admin-consent flow (through the emulator's control API, in the
local stack): the discovery of a link's tenant, and the client-credentials check at the callback.
A fault ends in the contract's answer, records nothing, and leaves the flow retryable: the same
administrator's browser completes it once Microsoft answers again.

Microsoft's read timeout in these stacks is `READ_TIMEOUT_MS` (500 ms) per attempt; the emulator's
delay is 1.5 s, so a "slow" attempt times out.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.flow_client import Browser, parse_consent_form
from tests.support.stack_process import StackUrls

from .conftest import api_client
from .support import FIGURES, FaultEmulator, assert_error_redirect, assert_json_error, redirect_params

TOKEN = "/{tenant}/oauth2/v2.0/token"
DISCOVERY = "/{tenant}/v2.0/.well-known/openid-configuration"
FAULTS: dict[str, dict[str, Any]] = {
    "503": {"status": 503, "count": 3},
    "timeout": {"delay_ms": 1500, "count": 3},
    "drop": {"drop": True, "count": 3},
}


def org(stack: StackUrls) -> tuple[str, str]:
    domain = f"flt-{uuid.uuid4().hex[:10]}.example"
    answer = httpx.post(
        f"{stack.emulator}/_emulator/tenants",
        json={"domain": domain, "user_consent": "admin_only"},
        timeout=10,
    )
    assert answer.status_code == 200
    return domain, str(answer.json()["tenant_id"])


def tenant_item(stack: StackUrls, tenant_id: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (
        stack.dynamodb()
        .get_item(TableName="TenantsTable", Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True)
        .get("Item")
    )
    return found


def consent_status(stack: StackUrls, consent_id: str) -> str:
    item = stack.dynamodb().get_item(
        TableName="SessionsTable", Key={"session_id": {"S": consent_id}}, ConsistentRead=True
    )["Item"]
    return str(item["status"]["S"])


@pytest.mark.parametrize("kind", FAULTS)
def test_microsoft_failing_at_the_check_leaves_the_flow_retryable(v3_stack: StackUrls, kind: str) -> None:
    stack = v3_stack
    emulator = FaultEmulator(stack.emulator)
    domain, tenant_id = org(stack)
    return_to = f"{stack.demo}/return"
    with api_client(stack) as api, Browser(stack) as admin:
        made = api.post("/v1/admin-consents", json={"return_to": return_to, "tenant": domain}).json()
        started = admin.http.get(made["consent_url"])
        page = admin.http.get(started.headers["location"])
        form = parse_consent_form(str(page.url), page.text)
        answer = admin.http.post(
            form.url, data={**form.fields, "email": f"it@{domain}", "decision": "accept"}
        )
        callback = answer.headers["location"]

        emulator.reset_calls()
        emulator.inject("POST", TOKEN, **FAULTS[kind])
        failed = admin.http.get(callback)
        assert_error_redirect(failed, return_to, "upstream_unavailable")
        assert emulator.count(f"POST {TOKEN}") == 3, "retried: the check is safe to repeat"
        assert tenant_item(stack, tenant_id) is None
        assert consent_status(stack, made["consent_id"]) == "consent_started", "released, not failed"
        assert "set-cookie" not in failed.headers, "the binding cookie stays for the retry"

        emulator.clear_faults()
        again = admin.http.get(callback)
        assert redirect_params(again, return_to) == {"status": "admin_consented", "tenant": tenant_id}
        assert tenant_item(stack, tenant_id) is not None
    emulator.http.close()
    FIGURES.scenario(
        layer="microsoft",
        flavour="v3",
        target="client-credentials check",
        fault=kind,
        sdk_attempts=3,
        outcome="302 upstream_unavailable, flow released; retry completes",
    )


def test_one_slow_answer_is_retried_within_the_deadline(v3_stack: StackUrls) -> None:
    stack = v3_stack
    emulator = FaultEmulator(stack.emulator)
    domain, tenant_id = org(stack)
    return_to = f"{stack.demo}/return"
    with api_client(stack) as api, Browser(stack) as admin:
        made = api.post("/v1/admin-consents", json={"return_to": return_to}).json()
        started = admin.http.get(made["consent_url"])
        page = admin.http.get(started.headers["location"])
        form = parse_consent_form(str(page.url), page.text)
        answer = admin.http.post(
            form.url, data={**form.fields, "email": f"it@{domain}", "decision": "accept"}
        )
        emulator.reset_calls()
        emulator.inject("POST", TOKEN, delay_ms=1500, count=1)
        done = admin.http.get(answer.headers["location"])
        assert redirect_params(done, return_to) == {"status": "admin_consented", "tenant": tenant_id}
        assert emulator.count(f"POST {TOKEN}") == 2
    emulator.http.close()


@pytest.mark.parametrize("kind", FAULTS)
def test_microsoft_failing_at_the_tenant_lookup_creates_nothing(v3_stack: StackUrls, kind: str) -> None:
    stack = v3_stack
    emulator = FaultEmulator(stack.emulator)
    domain, _ = org(stack)
    emulator.inject("GET", DISCOVERY, **FAULTS[kind])
    before = stack.dynamodb().describe_table(TableName="SessionsTable")["Table"]["ItemCount"]
    with api_client(stack) as api:
        answer = api.post("/v1/admin-consents", json={"return_to": f"{stack.demo}/return", "tenant": domain})
    assert_json_error(answer, 503, "upstream_unavailable")
    assert stack.dynamodb().describe_table(TableName="SessionsTable")["Table"]["ItemCount"] == before
    emulator.clear_faults()
    emulator.http.close()
