"""Property-based tests over HTTP through the local stack (both flavours): arbitrary query strings,
bodies and path user ids never give a 5xx, never write, never call Nylas, never redirect off the
allow-list (every Location is checked by the client hook)."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adversarial import harness
from tests.adversarial.harness import Guard
from tests.support.stack_process import StackUrls

HTTP_SETTINGS = settings(
    max_examples=30,  # per flavour: 60 per property across both
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters httpx sends as they are in a query string, plus escapes (valid or not) and the
# parameter names the routes read.
_QUERY_ATOMS = st.one_of(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=12),
    st.sampled_from(
        [
            "state=",
            "code=",
            "session=",
            "success=true",
            "grant_id=",
            "email=",
            "provider=",
            "error=",
            "error_description=",
            "&",
            "=",
            "%",
            "%00",
            "%0A",
            "%0D",
            "%ff",
            "%C3%A9",
            "%E2%80%AE",
            "<script>",
            "A" * 43,
            "A" * 43 + "." + "B" * 43,
            "..",
            "%2e%2e%2f",
        ]
    ),
)
RAW_QUERIES = st.lists(_QUERY_ATOMS, max_size=12).map("".join)


def _get_raw(http: httpx.Client, stack: StackUrls, path: str, raw_query: str) -> httpx.Response:
    url = httpx.URL(stack.gateway).copy_with(raw_path=f"{path}?{raw_query}".encode("ascii"))
    return http.get(url)


@HTTP_SETTINGS
@given(raw=RAW_QUERIES)
def test_start_with_any_query_never_fails_writes_or_calls_nylas(
    stack: StackUrls, http: httpx.Client, guard: Guard, raw: str
) -> None:
    guard.arm()
    response = _get_raw(http, stack, "/connect/start", raw)
    assert response.status_code < 500, response.text
    assert response.status_code == 400
    guard.assert_untouched()
    harness.record("property_start_query", "TM1", "TM7", "TM11")


@HTTP_SETTINGS
@given(raw=RAW_QUERIES)
def test_callback_with_any_query_never_fails_writes_or_calls_nylas(
    stack: StackUrls, http: httpx.Client, guard: Guard, raw: str
) -> None:
    guard.arm()
    response = _get_raw(http, stack, "/connect/callback", raw)
    assert response.status_code < 500 or response.status_code == 502, response.text
    assert response.status_code in (400, 502)
    assert "location" not in response.headers  # no flow identified: a page, never a redirect
    guard.assert_untouched()
    harness.record("property_callback_query", "TM2", "TM7", "TM11")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
SESSION_BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "user_id": JSON_VALUES,
            "return_to": st.one_of(JSON_VALUES, st.text(max_size=60).map(lambda s: "http://" + s)),
            "login_hint": JSON_VALUES,
            "account_id": JSON_VALUES,
            "extra": JSON_VALUES,
        },
    ),
)


def _creates(stack: StackUrls, body: object) -> bool:
    """Whether `body` is a valid session request (then exactly one session is written)."""
    return (
        isinstance(body, dict)
        and set(body) <= {"user_id", "return_to", "login_hint", "account_id"}
        and isinstance(body.get("user_id"), str)
        and 1 <= len(body["user_id"]) <= 256
        and all(k == "user_id" for k in body)
        and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000 for c in body["user_id"]
        )
    )


@HTTP_SETTINGS
@given(body=SESSION_BODIES)
def test_any_json_body_gives_201_or_a_4xx_and_writes_only_on_201(
    stack: StackUrls, http: httpx.Client, guard: Guard, body: object
) -> None:
    guard.arm()
    response = http.post(
        "/v1/sessions",
        content=json.dumps(body).encode(),
        headers=harness.api_headers(stack, **{"content-type": "application/json"}),
    )
    assert response.status_code in (201, 400, 413), response.text
    if response.status_code == 201:
        assert guard.changed() == {harness.table_name(stack, "Sessions"): 1}
        assert guard.upstream_calls() == {}
    else:
        assert not _creates(stack, body), body
        guard.assert_untouched()
        harness.record("property_session_body", "TM7", "TM8", "TM11")


@HTTP_SETTINGS
@given(body=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_any_bytes_body_never_fails(
    stack: StackUrls, http: httpx.Client, guard: Guard, body: bytes, content_type: str
) -> None:
    headers = harness.api_headers(stack)
    if content_type:
        headers["content-type"] = content_type
    guard.arm()
    response = http.post("/v1/sessions", content=body, headers=headers)
    assert response.status_code in (201, 400), response.text
    if response.status_code == 400:
        guard.assert_untouched()
        harness.record("property_session_bytes", "TM7", "TM11")


@HTTP_SETTINGS
@given(user_id=st.text(min_size=1, max_size=40), method=st.sampled_from(["GET", "DELETE"]))
def test_any_path_user_id_is_404_or_400_and_touches_nothing(
    stack: StackUrls, http: httpx.Client, guard: Guard, user_id: str, method: str
) -> None:
    guard.arm()
    response = http.request(
        method, "/v1/grants/prop-" + quote(user_id, safe=""), headers=harness.api_headers(stack)
    )
    assert response.status_code in (400, 404), response.text
    guard.assert_untouched()
    harness.record("property_path_user_id", "TM7", "TM11")
