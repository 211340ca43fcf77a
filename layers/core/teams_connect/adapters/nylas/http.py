"""The httpx client for Nylas: explicit timeouts, an overall deadline, request-id logging, error
envelope parsing, retries (tenacity, full-jitter backoff, Retry-After) for idempotent calls, and a
circuit breaker (pybreaker) for fast failure while Nylas is down.

A non-idempotent call (the one-time code exchange) is retried only when the request provably
never reached Nylas (`httpx.ConnectError` / `httpx.ConnectTimeout`).

Circuit breaker, one per `NylasHttp` (= per container): every network attempt is one observation.
5xx, 429 and transport failures count; after `BREAKER_FAIL_MAX` consecutive ones the circuit opens
for `BREAKER_RESET_SECONDS` and every call fails at once with a transient `NylasError(None,
"circuit_open")` (the flow's `upstream_unavailable`) without touching the network; then one probe
is let through (half-open). Any answer below 500 except 429 (a 4xx business error, 401 included)
proves Nylas is up and resets the count. pybreaker serialises the guarded attempts of one breaker
(a lock): in Lambda a container serves one request at a time, so this costs nothing there.
"""

from __future__ import annotations

import email.utils
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pybreaker
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_any
from tenacity.stop import stop_base

from teams_connect.adapters import tls
from teams_connect.errors import ConnectError, GrantInvalid, ServerError, UpstreamUnavailable
from teams_connect.observability import logger, trace_httpx

trace_httpx()

TIMEOUT = httpx.Timeout(connect=2.0, read=5.0, write=5.0, pool=1.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_BUDGET_SECONDS = 20.0  # below API Gateway's 30 s when no Lambda deadline is given
BREAKER_FAIL_MAX = 5
BREAKER_RESET_SECONDS = 30
_MIN_ATTEMPT_SECONDS = 0.2
_random = secrets.SystemRandom()
#: Failures without an answer that prove the request never left (no connection, no pooled connection,
#: no time left for an attempt, the circuit open): Nylas did nothing. Any other one may have reached it.
NOT_SENT_TYPES = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "deadline_exceeded", "circuit_open"}
)


class NylasError(Exception):
    """A failed Nylas call. `status` is None when no HTTP answer was received."""

    def __init__(
        self,
        status: int | None,
        error_type: str = "unknown",
        message: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        provider_error: str | None = None,
    ) -> None:
        super().__init__(f"Nylas {status or 'transport'} error: {error_type}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        #: The provider's own error (Microsoft's, for one mailbox) when Nylas passes one on: its
        #: `error` code, or "" when the envelope has a `provider_error` without one. None: not the provider.
        self.provider_error = provider_error

    @property
    def grant_scoped(self) -> bool:
        """Caused by one grant's mailbox, not by Nylas or our application (security review 3, G4):
        the provider's error passed on, a `provider_error` type, or a provider's 429."""
        kind = self.error_type.lower()
        return (
            self.provider_error is not None or kind.endswith("provider_error") or kind == "rate_limit_error"
        )

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in RETRY_STATUSES

    @property
    def may_have_been_done(self) -> bool:
        """The call may have done its work at Nylas although no answer says so: no answer after the
        request left (a read or write timeout, a dropped connection), or a 5xx. A 4xx (429 included)
        is Nylas refusing the call; a connect failure, a deadline or an open circuit never sent it."""
        if self.status is None:
            return self.error_type not in NOT_SENT_TYPES
        return self.status >= 500


class _Retryable(Exception):
    def __init__(self, error: NylasError) -> None:
        super().__init__(str(error))
        self.error = error


class _StopAtDeadline(stop_base):
    """Stop when the next attempt (after its backoff or Retry-After) would not fit the deadline."""

    def __init__(self, end: float, monotonic: Callable[[], float]) -> None:
        self._end = end
        self._monotonic = monotonic

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._monotonic() + retry_state.upcoming_sleep + _MIN_ATTEMPT_SECONDS >= self._end


def counts_as_outage(exc: BaseException) -> bool:
    """What the circuit breaker counts: 5xx, 429 and transport failures, never a 4xx business error,
    and never a failure of one grant's mailbox (security review 3, G4: a provider error or a provider's
    429 is one user's, and must not open the container-wide breaker for every other user)."""
    error = exc.error if isinstance(exc, _Retryable) else exc
    if isinstance(error, NylasError):
        return error.transient and not error.grant_scoped
    return True


def new_breaker(
    *, fail_max: int = BREAKER_FAIL_MAX, reset_timeout: float = BREAKER_RESET_SECONDS
) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[lambda exc: not counts_as_outage(exc)],
        throw_new_error_on_trip=False,  # the tripping call keeps its own error
        name="nylas",
    )


@dataclass(frozen=True)
class NylasResponse:
    status: int
    body: Any
    request_id: str | None


def provider_error_of(body: Any) -> str | None:
    """The `provider_error` a v3 error envelope passes on (its `error` code, or ""), else None."""
    err = body.get("error") if isinstance(body, dict) else None
    found = err.get("provider_error") if isinstance(err, dict) else None
    if found is None and isinstance(body, dict):
        found = body.get("provider_error")
    if isinstance(found, dict):
        code = found.get("error")
        return str(code)[:100] if isinstance(code, str) else ""
    if isinstance(found, str):
        return found[:100]
    return None


def parse_error(body: Any) -> tuple[str, str]:
    """(type, message) from any of the envelopes Nylas uses:
    v3 `{"error": {"type", "message"}}`, OAuth `{"error": "invalid_grant", "error_description"}`,
    v2 `{"type", "message"}`, beta `{"success": false, "message"|"error"}`."""
    if not isinstance(body, dict):
        return "unknown", ""
    err = body.get("error")
    if isinstance(err, dict):
        return str(err.get("type") or "unknown"), str(err.get("message") or "")
    if isinstance(err, str):
        return err, str(body.get("error_description") or body.get("message") or "")
    if body.get("success") is False:
        return str(body.get("type") or body.get("code") or "unsuccessful"), str(body.get("message") or "")
    if "type" in body or "message" in body:
        return str(body.get("type") or "unknown"), str(body.get("message") or "")
    return "unknown", ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class NylasHttp:
    """One per container. `deadline` arguments are `time.monotonic()` instants."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        max_attempts: int = 3,
        backoff_base: float = 0.25,
        backoff_cap: float = 2.0,
        read_timeout: float = TIMEOUT.read or 5.0,
        breaker: pybreaker.CircuitBreaker | None = None,
    ) -> None:
        self.base_url = base_url
        self.read_timeout = read_timeout
        self.breaker = breaker if breaker is not None else new_breaker()
        self._client = httpx.Client(
            base_url=base_url,
            timeout=TIMEOUT,
            transport=transport,
            verify=tls.context(),  # the container's one TLS context, shared with its other clients
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "teams-connect/1"},
        )
        self._sleep = sleep
        self._monotonic = monotonic
        self._max_attempts = max_attempts
        self._base = backoff_base
        self._cap = backoff_cap

    def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool,
        deadline: float | None = None,
    ) -> NylasResponse:
        """Send one logical call. `route` is a non-secret label for logs (no ids, no query)."""
        end = deadline if deadline is not None else self._monotonic() + DEFAULT_BUDGET_SECONDS

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.error.retry_after if isinstance(exc, _Retryable) else None
            backoff = _random.uniform(0, min(self._cap, self._base * 2 ** (state.attempt_number - 1)))
            return max(backoff, retry_after or 0.0)

        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self._max_attempts), _StopAtDeadline(end, self._monotonic)),
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, route, headers, json, idempotent, end)
        except _Retryable as exc:
            raise exc.error from None

    def _attempt(
        self,
        method: str,
        path: str,
        route: str,
        headers: Mapping[str, str] | None,
        json: Any,
        idempotent: bool,
        end: float,
    ) -> NylasResponse:
        remaining = end - self._monotonic()
        if remaining < _MIN_ATTEMPT_SECONDS:
            raise NylasError(None, "deadline_exceeded")
        timeout = httpx.Timeout(
            connect=min(2.0, remaining),
            read=min(self.read_timeout, remaining),
            write=min(5.0, remaining),
            pool=min(1.0, remaining),
        )
        try:
            return self.breaker.call(self._send, method, path, route, headers, json, idempotent, timeout)
        except pybreaker.CircuitBreakerError:
            logger.warning("nylas circuit open: failing fast", extra={"route": route})
            raise NylasError(None, "circuit_open") from None

    def _send(
        self,
        method: str,
        path: str,
        route: str,
        headers: Mapping[str, str] | None,
        json: Any,
        idempotent: bool,
        timeout: httpx.Timeout,
    ) -> NylasResponse:
        started = self._monotonic()
        try:
            resp = self._client.request(method, path, headers=headers, json=json, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            logger.warning("nylas unreachable", extra={"route": route, "error_type": type(exc).__name__})
            raise _Retryable(NylasError(None, type(exc).__name__)) from None
        except httpx.HTTPError as exc:
            logger.warning("nylas call failed", extra={"route": route, "error_type": type(exc).__name__})
            error = NylasError(None, type(exc).__name__)
            if idempotent:
                raise _Retryable(error) from None
            raise error from None
        try:
            body: Any = resp.json() if resp.content else None
        except ValueError:
            body = None
        request_id = resp.headers.get("x-request-id") or (
            body.get("request_id") if isinstance(body, dict) else None
        )
        log_extra = {
            "route": route,
            "status": resp.status_code,
            "nylas_request_id": request_id,
            "elapsed_ms": round((self._monotonic() - started) * 1000),
        }
        if resp.status_code < 400:
            logger.info("nylas call", extra=log_extra)
            return NylasResponse(resp.status_code, body, request_id)
        error_type, message = parse_error(body)
        logger.warning("nylas error", extra={**log_extra, "nylas_error_type": error_type[:100]})
        error = NylasError(
            resp.status_code,
            error_type,
            message,
            request_id,
            parse_retry_after(resp.headers.get("retry-after")),
            provider_error_of(body),
        )
        if idempotent and resp.status_code in RETRY_STATUSES:
            raise _Retryable(error)
        raise error

    def request_rereading_credentials(
        self,
        method: str,
        path: str,
        *,
        route: str,
        headers_for: Callable[[bool], dict[str, str]],
        json: Any = None,
        deadline: float | None = None,
    ) -> NylasResponse:
        """An idempotent call whose credentials come from the cached secret: a 401 (rotated or expired
        key) re-reads the secret once (`headers_for(True)`) and retries once."""
        try:
            return self.request(
                method,
                path,
                route=route,
                headers=headers_for(False),
                json=json,
                idempotent=True,
                deadline=deadline,
            )
        except NylasError as exc:
            if exc.status != 401:
                raise
            logger.warning(
                "Nylas rejected the cached credentials; re-reading the secret once", extra={"route": route}
            )
        return self.request(
            method,
            path,
            route=route,
            headers=headers_for(True),
            json=json,
            idempotent=True,
            deadline=deadline,
        )

    def close(self) -> None:
        self._client.close()


#: The error types with which Nylas itself says "this grant does not exist" (nylas-api.md §1.10).
GRANT_NOT_FOUND_TYPES = frozenset({"grant.not_found"})


def grant_is_gone(exc: NylasError) -> bool:
    """Only Nylas's own not-found answer for a grant counts as "already revoked". Any other 404 (a
    wrong base URL, a changed path, a retired beta host, an HTML page) proves nothing: revocation
    fails closed and the caller keeps its record."""
    return exc.status == 404 and exc.error_type in GRANT_NOT_FOUND_TYPES


def revoke_error(exc: NylasError) -> ConnectError | None:
    """A failed revoke → None when the grant is already gone, else the error to raise: a 404 that is
    not Nylas's grant-not-found answer is `upstream_unavailable` (the record stays, retry later)."""
    if grant_is_gone(exc):
        return None
    if exc.status == 404:
        logger.error("revoke answered 404 without Nylas's grant.not_found: treated as unavailable")
        return UpstreamUnavailable()
    return api_error(exc)


def api_error(exc: NylasError) -> ConnectError:
    """A failed Nylas API call (after retries and the one credential re-read) → the contract's error:
    transient → upstream_unavailable; 404 → grant_invalid (the grant is gone); anything else,
    including a 401 that survived a fresh secret read, → server_error."""
    if exc.transient:
        return UpstreamUnavailable()
    if exc.status == 404:
        return GrantInvalid()
    if exc.status == 401:
        logger.error("Nylas rejected the credentials after a fresh secret read (rotated or expired?)")
    return ServerError()
