"""Nylas errors, retries and malformed answers: always a SetupError naming status, type and request id,
never a credential."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import respx

from teams_connect.setup import Credentials, SetupError, ensure_nylas_side

from .fakes import CALLBACK, NYLAS_API_KEY, NYLAS_CLIENT_SECRET, V3_BASE, FakeBeta, FakeV3, assert_no_secret
from .test_ensure import beta_spec, v3_spec

CONNECTOR = f"{V3_BASE}/v3/connectors/microsoft"


def then(
    handler: Callable[[httpx.Request], httpx.Response], *first: httpx.Response | Exception
) -> Callable[[httpx.Request], httpx.Response]:
    """A side effect that answers (or raises) `first` in order, then hands over to `handler`."""
    pending = list(first)

    def effect(request: httpx.Request) -> httpx.Response:
        if pending:
            item = pending.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return handler(request)

    return effect


def _fail(fn: object) -> SetupError:
    with pytest.raises(SetupError) as info:
        fn()  # type: ignore[operator]
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value.args))
    return info.value


def test_v3_401_names_status_type_and_request_id(
    router: respx.MockRouter, creds: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    # a Nylas message that (hypothetically) echoes the key must still not leak it
    route = router.get(CONNECTOR).respond(
        401,
        json={
            "request_id": "req-abc-123",
            "error": {"type": "api.authentication_error", "message": f"bad key Bearer {NYLAS_API_KEY}"},
        },
    )
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert "HTTP 401" in str(error)
    assert "api.authentication_error" in str(error)
    assert "request id req-abc-123" in str(error)
    assert "GET /v3/connectors/microsoft" in str(error)
    assert (error.status, error.error_type, error.request_id) == (
        401,
        "api.authentication_error",
        "req-abc-123",
    )
    assert route.call_count == 1  # a 4xx is not retried
    assert_no_secret(caplog.text)


def test_v3_400_on_create(v3: FakeV3, router: respx.MockRouter, creds: Credentials) -> None:
    v3.routes["post_connector"].mock(
        side_effect=None,
        return_value=httpx.Response(
            400,
            json={
                "request_id": "req-400",
                "error": {"type": "api.invalid_request_payload", "message": "bad tenant"},
            },
            headers={"x-request-id": "ignored-when-body-has-one"},
        ),
    )
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert str(error) == (
        "Nylas POST /v3/connectors failed: HTTP 400 api.invalid_request_payload: bad tenant"
        " (request id req-400)"
    )
    assert v3.routes["post_connector"].call_count == 1
    assert v3.routes["post_uri"].call_count == 0


def test_beta_v2_error_shape_and_header_request_id(beta: FakeBeta, creds: Credentials) -> None:
    beta.routes["get_integration"].mock(
        side_effect=None,
        return_value=httpx.Response(
            400,
            json={"message": "Invalid tenant", "type": "invalid_request_error"},
            headers={"X-Request-Id": "hdr-9"},
        ),
    )
    error = _fail(lambda: ensure_nylas_side(beta_spec(), creds))
    assert "HTTP 400 invalid_request_error: Invalid tenant (request id hdr-9)" in str(error)


def test_beta_success_false_is_an_error_even_with_200(beta: FakeBeta, creds: Credentials) -> None:
    beta.routes["post_integration"].mock(
        side_effect=None,
        return_value=httpx.Response(200, json={"success": False, "message": f"dup {NYLAS_CLIENT_SECRET}"}),
    )
    error = _fail(lambda: ensure_nylas_side(beta_spec(), creds))
    assert "HTTP 200" in str(error)
    assert "***" in str(error)


def test_beta_wrong_basic_auth(beta: FakeBeta, creds: Credentials) -> None:
    wrong = Credentials(
        creds.nylas_client_id, "", "not-the-secret", creds.azure_client_id, creds.azure_client_secret
    )
    error = _fail(lambda: ensure_nylas_side(beta_spec(), wrong))
    assert "HTTP 401 api_error: Unauthorized" in str(error)
    assert "not-the-secret" not in str(error)


def test_get_500_retried_then_error(router: respx.MockRouter, creds: Credentials) -> None:
    route = router.get(CONNECTOR).respond(
        500, json={"request_id": "r5", "error": {"type": "api.internal_error", "message": "boom"}}
    )
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert route.call_count == 3
    assert "HTTP 500 api.internal_error: boom (request id r5)" in str(error)


def test_get_429_and_503_then_success(v3: FakeV3, creds: Credentials) -> None:
    v3.routes["get_uris"].mock(
        side_effect=[
            httpx.Response(
                429, json={"request_id": "r", "error": {"type": "rate_limit_error", "message": "slow"}}
            ),
            httpx.Response(503, text="<html>unavailable</html>"),
            httpx.Response(200, json={"request_id": "r", "data": []}),
        ]
    )
    report = ensure_nylas_side(v3_spec(), creds)
    assert v3.routes["get_uris"].call_count == 3
    assert report.lines()[-1] == f"callback URI {CALLBACK}: registered"


def test_get_connect_error_retried_then_error(router: respx.MockRouter, creds: Credentials) -> None:
    route = router.get(CONNECTOR).mock(side_effect=httpx.ConnectError("refused"))
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert route.call_count == 3
    assert str(error) == f"Nylas GET /v3/connectors/microsoft: could not reach {V3_BASE} (ConnectError)"


def test_read_timeout_on_get_is_retried(v3: FakeV3, creds: Credentials) -> None:
    v3.routes["get_connector"].mock(side_effect=then(v3._get_connector, httpx.ReadTimeout("slow")))
    assert ensure_nylas_side(v3_spec(), creds).changed
    assert v3.routes["get_connector"].call_count == 2


def test_write_5xx_and_read_timeout_not_retried(v3: FakeV3, creds: Credentials) -> None:
    v3.routes["post_connector"].mock(side_effect=None, return_value=httpx.Response(502, text="bad gateway"))
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert "HTTP 502 (response body is not JSON)" in str(error)
    assert v3.routes["post_connector"].call_count == 1

    v3.routes["post_connector"].mock(side_effect=httpx.ReadTimeout("maybe sent"))
    _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert v3.routes["post_connector"].call_count == 2


def test_write_connect_error_and_429_are_retried(v3: FakeV3, creds: Credentials) -> None:
    v3.routes["post_connector"].mock(
        side_effect=then(v3._post_connector, httpx.ConnectError("refused"), httpx.Response(429, json={}))
    )
    assert ensure_nylas_side(v3_spec(), creds).changed
    assert v3.routes["post_connector"].call_count == 3


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="not json at all"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"request_id": "r", "data": "a string"}),
    ],
)
def test_malformed_success_body(
    router: respx.MockRouter, creds: Credentials, response: httpx.Response
) -> None:
    router.get(CONNECTOR).mock(return_value=response)
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert "Nylas" in str(error)
    assert "JSON object" in str(error)


def test_malformed_redirect_uri_list(v3: FakeV3, creds: Credentials) -> None:
    v3.routes["get_uris"].mock(
        side_effect=None, return_value=httpx.Response(200, json={"data": {"url": "x"}})
    )
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert "data is not a list" in str(error)


def test_malformed_error_body(router: respx.MockRouter, creds: Credentials) -> None:
    router.get(CONNECTOR).respond(403, content=b"\xff\xfe<html>denied", headers={"x-request-id": "h-1"})
    error = _fail(lambda: ensure_nylas_side(v3_spec(), creds))
    assert str(error) == (
        "Nylas GET /v3/connectors/microsoft failed: HTTP 403 (response body is not JSON) (request id h-1)"
    )
