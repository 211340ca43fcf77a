from __future__ import annotations

import httpx
import pytest
import respx

from teams_connect.nylas.http import NylasError, NylasHttp, parse_error, parse_retry_after

BASE = "https://api.us.nylas.com"


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def _client(ft: FakeTime) -> NylasHttp:
    return NylasHttp(BASE, sleep=ft.sleep, monotonic=ft.monotonic)


def test_client_has_explicit_timeouts() -> None:
    http = NylasHttp(BASE)
    timeout = http._client.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (2.0, 5.0, 5.0, 1.0)


def test_idempotent_get_retries_5xx_then_succeeds() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.get(f"{BASE}/v3/grants/g1").mock(
            side_effect=[
                httpx.Response(503),
                httpx.Response(502),
                httpx.Response(200, json={"data": {"id": "g1"}}),
            ]
        )
        resp = _client(ft).request("GET", "/v3/grants/g1", route="t", idempotent=True, deadline=ft.t + 20)
    assert resp.body == {"data": {"id": "g1"}}
    assert route.call_count == 3
    assert len(ft.sleeps) == 2
    assert all(0 <= s <= 2.0 for s in ft.sleeps)


def test_retries_stop_after_three_attempts() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.get(f"{BASE}/x").mock(
            return_value=httpx.Response(500, json={"error": {"type": "api.internal_error"}})
        )
        with pytest.raises(NylasError) as err:
            _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
    assert route.call_count == 3
    assert err.value.status == 500
    assert err.value.error_type == "api.internal_error"
    assert err.value.transient


def test_retry_after_is_honoured_when_it_fits_the_deadline() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        router.get(f"{BASE}/x").mock(
            side_effect=[httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={})]
        )
        _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
    assert ft.sleeps == [3.0]


def test_retry_after_beyond_the_deadline_fails_fast() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.get(f"{BASE}/x").mock(return_value=httpx.Response(429, headers={"Retry-After": "30"}))
        with pytest.raises(NylasError) as err:
            _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 5)
    assert route.call_count == 1
    assert ft.sleeps == []
    assert err.value.status == 429


def test_post_is_not_retried_on_5xx_or_read_timeout() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.post(f"{BASE}/v3/connect/token").mock(return_value=httpx.Response(503))
        with pytest.raises(NylasError):
            _client(ft).request(
                "POST", "/v3/connect/token", route="t", json={}, idempotent=False, deadline=ft.t + 20
            )
        assert route.call_count == 1
        route.mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(NylasError) as err:
            _client(ft).request(
                "POST", "/v3/connect/token", route="t", json={}, idempotent=False, deadline=ft.t + 20
            )
        assert route.call_count == 2
        assert err.value.status is None


def test_post_is_retried_when_the_request_never_left() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.post(f"{BASE}/v3/connect/token").mock(
            side_effect=[
                httpx.ConnectError("refused"),
                httpx.ConnectTimeout("t"),
                httpx.Response(200, json={"ok": 1}),
            ]
        )
        resp = _client(ft).request(
            "POST", "/v3/connect/token", route="t", json={}, idempotent=False, deadline=ft.t + 20
        )
    assert resp.body == {"ok": 1}
    assert route.call_count == 3


def test_request_id_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ft = FakeTime()
    with respx.mock() as router:
        router.get(f"{BASE}/x").mock(
            return_value=httpx.Response(200, json={}, headers={"X-Request-Id": "rid-42"})
        )
        resp = _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
    assert resp.request_id == "rid-42"
    ours = [r for r in caplog.records if r.name == "teams-connect"]
    assert [getattr(r, "nylas_request_id", None) for r in ours] == ["rid-42"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"request_id": "r", "error": {"type": "grant.not_found", "message": "m"}}, ("grant.not_found", "m")),
        ({"error": "invalid_grant", "error_code": 45004, "error_description": "d"}, ("invalid_grant", "d")),
        ({"message": "bad", "type": "invalid_request_error"}, ("invalid_request_error", "bad")),
        ({"success": False, "message": "nope"}, ("unsuccessful", "nope")),
        ("not json", ("unknown", "")),
        (None, ("unknown", "")),
    ],
)
def test_error_envelopes(body: object, expected: tuple[str, str]) -> None:
    assert parse_error(body) == expected


def test_retry_after_formats() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
