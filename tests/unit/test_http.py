from __future__ import annotations

import time

import httpx
import pytest
import respx

from teams_connect.adapters.nylas.http import (
    NylasError,
    NylasHttp,
    new_breaker,
    parse_error,
    parse_retry_after,
)

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


# --- per-attempt timeouts, deadline and dropped connections ------------------------------------
def _timeouts(router: respx.MockRouter, path: str) -> list[dict[str, float]]:
    return [
        dict(call.request.extensions["timeout"]) for call in router.calls if call.request.url.path == path
    ]


def test_read_timeout_is_configurable_and_bounded_by_the_deadline() -> None:
    ft = FakeTime()
    http = NylasHttp(BASE, sleep=ft.sleep, monotonic=ft.monotonic, read_timeout=0.5)
    with respx.mock() as router:
        router.get(f"{BASE}/x").mock(return_value=httpx.Response(200, json={}))
        http.request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
        http.request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 1.5)
        first, second = _timeouts(router, "/x")
    assert (first["connect"], first["read"], first["write"], first["pool"]) == (2.0, 0.5, 5.0, 1.0)
    assert (second["connect"], second["read"], second["write"], second["pool"]) == (1.5, 0.5, 1.5, 1.0)


def test_no_call_when_the_deadline_has_passed() -> None:
    ft = FakeTime()
    with respx.mock(assert_all_called=False) as router:
        route = router.get(f"{BASE}/x").mock(return_value=httpx.Response(200, json={}))
        with pytest.raises(NylasError) as err:
            _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 0.1)
    assert route.call_count == 0
    assert (err.value.status, err.value.error_type) == (None, "deadline_exceeded")


def test_backoff_never_sleeps_past_the_deadline() -> None:
    ft = FakeTime()
    with respx.mock() as router:

        def slow(request: httpx.Request) -> httpx.Response:
            ft.t += 0.2  # the read timeout used up 0.2 s of the 0.3 s budget
            raise httpx.ReadTimeout("slow")

        route = router.get(f"{BASE}/x").mock(side_effect=slow)
        with pytest.raises(NylasError):
            _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 0.3)
    assert route.call_count == 1  # another attempt would not fit the 0.1 s left
    assert ft.sleeps == []


def test_dropped_connection_is_retried_for_get_but_not_for_the_code_exchange() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        get = router.get(f"{BASE}/v3/grants/g1").mock(
            side_effect=[httpx.RemoteProtocolError("dropped"), httpx.Response(200, json={"data": {}})]
        )
        post = router.post(f"{BASE}/v3/connect/token").mock(side_effect=httpx.RemoteProtocolError("dropped"))
        http = _client(ft)
        assert http.request("GET", "/v3/grants/g1", route="t", idempotent=True).status == 200
        with pytest.raises(NylasError) as err:
            http.request("POST", "/v3/connect/token", route="t", json={}, idempotent=False)
    assert (get.call_count, post.call_count) == (2, 1)
    assert (err.value.status, err.value.error_type) == (None, "RemoteProtocolError")


def test_retry_after_is_never_shortened_by_the_backoff() -> None:
    ft = FakeTime()
    with respx.mock() as router:
        route = router.get(f"{BASE}/x").mock(
            side_effect=[
                httpx.Response(503, headers={"Retry-After": "1"}),
                httpx.Response(429, headers={"Retry-After": "2"}),
                httpx.Response(200, json={}),
            ]
        )
        _client(ft).request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
    assert route.call_count == 3
    assert ft.sleeps[0] >= 1.0
    assert ft.sleeps[1] >= 2.0


# --- circuit breaker ------------------------------------------------------------------------------
def test_breaker_opens_after_five_outage_attempts_and_then_makes_no_call() -> None:
    ft = FakeTime()
    http = _client(ft)
    assert (http.breaker.fail_max, http.breaker.reset_timeout) == (5, 30)
    with respx.mock(assert_all_called=False) as router:
        route = router.get(f"{BASE}/x").mock(return_value=httpx.Response(503))
        with pytest.raises(NylasError) as first:
            http.request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
        assert (route.call_count, first.value.status) == (3, 503)
        assert http.breaker.current_state == "closed"
        with pytest.raises(NylasError) as second:
            http.request("GET", "/x", route="t", idempotent=True, deadline=ft.t + 20)
        # attempts 4 and 5 reached Nylas; the 5th failure opened the circuit: no 6th attempt
        assert route.call_count == 5
        assert http.breaker.current_state == "open"
        assert (second.value.status, second.value.error_type) == (None, "circuit_open")
        post = router.post(f"{BASE}/v3/connect/token").mock(return_value=httpx.Response(200, json={}))
        with pytest.raises(NylasError) as third:
            http.request("POST", "/v3/connect/token", route="t", json={}, idempotent=False)
    assert (route.call_count, post.call_count) == (5, 0)
    assert (third.value.error_type, third.value.transient) == ("circuit_open", True)


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500), httpx.Response(429), httpx.ConnectError("refused"), httpx.ReadTimeout("slow")],
    ids=["500", "429", "connect-error", "read-timeout"],
)
def test_breaker_counts_5xx_429_and_transport_failures(failure: httpx.Response | Exception) -> None:
    http = NylasHttp(BASE, sleep=lambda _: None, max_attempts=1)
    with respx.mock() as router:
        route = router.post(f"{BASE}/v3/connect/token").mock(side_effect=[failure] * 5)
        for _ in range(5):
            with pytest.raises(NylasError):
                http.request("POST", "/v3/connect/token", route="t", json={}, idempotent=False)
        assert http.breaker.current_state == "open"
        with pytest.raises(NylasError) as err:
            http.request("POST", "/v3/connect/token", route="t", json={}, idempotent=False)
    assert route.call_count == 5
    assert err.value.error_type == "circuit_open"


def test_breaker_ignores_4xx_business_errors_and_they_reset_the_count() -> None:
    http = NylasHttp(BASE, sleep=lambda _: None, max_attempts=1)
    with respx.mock() as router:
        route = router.get(f"{BASE}/x").mock(
            side_effect=[httpx.Response(503)] * 4
            + [httpx.Response(404, json={"error": {"type": "grant.not_found"}})]
            + [httpx.Response(401), httpx.Response(400), httpx.Response(403)] * 3
            + [httpx.Response(503)] * 4
        )
        statuses = []
        for _ in range(18):
            with pytest.raises(NylasError) as err:
                http.request("GET", "/x", route="t", idempotent=True)
            statuses.append(err.value.status)
    assert route.call_count == 18
    assert statuses.count(503) == 8
    assert http.breaker.current_state == "closed"
    assert http.breaker.fail_counter == 4


def test_breaker_half_opens_after_the_reset_timeout_and_a_good_probe_closes_it() -> None:
    http = NylasHttp(BASE, sleep=lambda _: None, max_attempts=1, breaker=new_breaker(reset_timeout=0.05))
    with respx.mock() as router:
        route = router.get(f"{BASE}/x").mock(side_effect=[httpx.Response(502)] * 5 + [httpx.Response(200)])
        for _ in range(5):
            with pytest.raises(NylasError):
                http.request("GET", "/x", route="t", idempotent=True)
        with pytest.raises(NylasError) as err:
            http.request("GET", "/x", route="t", idempotent=True)
        assert (err.value.error_type, route.call_count) == ("circuit_open", 5)
        time.sleep(0.06)
        assert http.request("GET", "/x", route="t", idempotent=True).status == 200
    assert route.call_count == 6
    assert http.breaker.current_state == "closed"


def test_deadline_exceeded_before_the_call_does_not_count_as_an_outage() -> None:
    ft = FakeTime()
    http = _client(ft)
    for _ in range(6):
        with pytest.raises(NylasError):
            http.request("GET", "/x", route="t", idempotent=True, deadline=ft.t)
    assert (http.breaker.current_state, http.breaker.fail_counter) == ("closed", 0)
