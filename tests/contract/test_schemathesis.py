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

import re
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
# Known issue, reported (not ours to fix here): a callback whose `state` is well-formed but that carries
# neither `error` nor a well-formed `code` is answered 502 `grant_invalid` by the v3 adapter's
# `parse_callback` before the session is looked up, instead of a 4xx. This is the ONLY 5xx tolerated, by
# exact signature; test_known_issue_callback_without_code_is_still_502 fails as soon as it is fixed, so
# this allowance is removed then.
_CODE_RE = re.compile(r"^[\x21-\x7e]{1,2048}$")
_STATE_RE = re.compile(r"^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$")


def _known_callback_502(case: schemathesis.Case[Any], response: schemathesis.Response) -> bool:
    query = case.query or {}
    state, code = query.get("state"), query.get("code")
    return (
        case.operation.path == "/connect/callback"
        and response.status_code == 502
        and b"grant_invalid" in response.content
        and isinstance(state, str)
        and bool(_STATE_RE.match(state))
        and "error" not in query
        and not (isinstance(code, str) and _CODE_RE.match(code))
    )


def not_a_server_error_but_the_known_issue(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    if _known_callback_502(case, response):
        return None
    return not_a_server_error(ctx, response, case)


COMMON_CHECKS: list[CheckFunction] = [
    not_a_server_error_but_the_known_issue,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    ("/v1/sessions", "POST"),
    ("/v1/grants/{user_id}", "GET"),
    ("/v1/grants/{user_id}", "DELETE"),
    ("/connect/start", "GET"),
    ("/connect/callback", "GET"),
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
    checks = [*COMMON_CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else COMMON_CHECKS
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


def test_known_issue_callback_without_code_is_still_502(stack: StackUrls) -> None:
    """Pins the one tolerated 5xx (see `_known_callback_502`): fails once the handler answers a 4xx,
    which is the signal to delete the allowance."""
    state = "A" * 43 + "." + "B" * 43
    response = httpx.get(f"{stack.gateway}/connect/callback", params={"state": state}, timeout=15)
    assert response.status_code == 502
    assert "grant_invalid" in response.text
