"""Schemathesis against the local stack: the real handlers behind the local API Gateway must answer
exactly as docs/openapi.yaml says.

Every operation of the document is fuzzed twice, with schema-valid (positive) and schema-invalid
(negative) requests, through the gateway of `running_stack("v3")` with the local API key. Checks:
`not_a_server_error` (no 5xx for anything a client can send), `status_code_conformance`,
`content_type_conformance`, `response_schema_conformance`, and, for negative data,
`negative_data_rejection` (schema-invalid input must be refused with a 4xx).

Bounded and deterministic: `derandomize=True`, a fixed number of examples per operation and mode, no
example database (nothing is written to .hypothesis/), no shrinking phase beyond what a failure needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.contract.test_openapi_drift import OPENAPI_PATH
from tests.support.stack_process import StackUrls, running_stack

SCHEMA = schemathesis.openapi.from_path(str(OPENAPI_PATH))
MAX_EXAMPLES = 25


def negative_data_refused(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """`negative_data_rejection`, also counting 413 (body over the documented 16 KiB limit) as a
    refusal: schemathesis's default list of refusal codes does not have it."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


COMMON_CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    ("/v1/sessions", "POST"),
    ("/v1/grants", "GET"),
    ("/v1/grants/{user_id}", "GET"),
    ("/v1/grants/{user_id}", "DELETE"),
    ("/v1/users/{user_id}/meetings", "POST"),
    ("/v1/users/{user_id}/meetings/{meeting_id}", "GET"),
    ("/v1/users/{user_id}/meetings/{meeting_id}", "PATCH"),
    ("/v1/users/{user_id}/meetings/{meeting_id}", "DELETE"),
    ("/connect/start", "GET"),
    ("/connect/callback", "GET"),
    ("/connect/v1/connect.js", "GET"),
    ("/connect/v1/sessions/{session_id}/status", "GET"),
    ("/nylas/webhooks", "GET"),
    ("/nylas/webhooks", "POST"),
    ("/v1/admin-consents", "POST"),
    ("/v1/tenants/{tenant_id}", "GET"),
    ("/connect/admin-consent", "GET"),
    ("/connect/admin-consent/callback", "GET"),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[StackUrls]:
    with running_stack("v3") as urls:
        yield urls


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def test_every_documented_operation_is_fuzzed() -> None:
    documented = set()
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), result  # an Err is a part of the document schemathesis cannot use
        documented.add((result.ok().path, result.ok().method.upper()))
    assert documented == set(OPERATIONS)


def _run(
    stack: StackUrls,
    http: requests.Session,
    path: str,
    method: str,
    mode: GenerationMode,
    seen: list[int],
) -> None:
    operation = SCHEMA[path][method]
    checks = [*COMMON_CHECKS, negative_data_refused] if mode is GenerationMode.NEGATIVE else COMMON_CHECKS
    headers = {"Authorization": f"Bearer {stack.api_key}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call_and_validate(
            base_url=stack.gateway,
            session=http,
            headers=headers,
            checks=checks,
            allow_redirects=False,
            timeout=15,
        )
        seen.append(response.status_code)

    fuzz()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_handlers_conform_to_the_document(
    stack: StackUrls, http: requests.Session, path: str, method: str, mode: GenerationMode
) -> None:
    seen: list[int] = []
    _run(stack, http, path, method, mode, seen)
    # The run really exercised the operation (many requests, not one).
    assert len(seen) >= 5


def test_a_callback_without_code_or_error_is_a_4xx_page(stack: StackUrls) -> None:
    """Once found by this suite: a well-formed `state` with neither `code` nor `error` was a 502."""
    state = "A" * 43 + "." + "B" * 43
    response = httpx.get(f"{stack.gateway}/connect/callback", params={"state": state}, timeout=15)
    assert response.status_code == 400
    assert "session_invalid" in response.text or "not valid" in response.text
    assert "location" not in response.headers
