"""A small JSON client for the Nylas setup calls: explicit timeouts, bounded retries with full jitter,
and Nylas error bodies (v3 envelope and the beta shapes) turned into a credential-free `SetupError`.

Self-contained on purpose (httpx + tenacity only), so the setup does not depend on the request-path
client's internals.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from .models import SetupError, redact

logger = logging.getLogger(__name__)

#: Connect fast, allow Nylas a while to answer; the custom resource's Lambda timeout bounds the total.
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=15.0, write=10.0, pool=3.0)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Errors after which a write surely did not reach Nylas (safe to send again).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with full jitter: wait uniform(0, min(max_wait, multiplier * 2**n)).

    GETs are retried on 429/5xx and on any transport error; writes only on 429 and on errors that
    prove the request was never sent (a POST that reached Nylas must not be repeated blindly).
    """

    attempts: int = 3
    multiplier: float = 0.5
    max_wait: float = 4.0


#: Used when no policy is passed (tests swap it for one without waits).
DEFAULT_RETRY = RetryPolicy()


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context per process (building one loads the CA bundle: ~50 ms)."""
    return httpx.create_ssl_context()


def _clean(text: str, limit: int = 200) -> str:
    text = _UNSAFE_CHARS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(type, message, request_id) from any of the Nylas error shapes."""
    if not isinstance(body, dict):
        return None, None, None
    err = body.get("error")
    request_id = body.get("request_id")
    if isinstance(err, dict):  # v3: {"request_id", "error": {"type", "message", "provider_error"}}
        etype, message = err.get("type"), err.get("message")
    elif isinstance(err, str):  # OAuth: {"error", "error_description"}
        etype, message = err, body.get("error_description")
    else:  # v2/beta: {"message", "type"} or {"success": false, ...}
        etype, message = body.get("type"), body.get("message")
    return (
        etype if isinstance(etype, str) else None,
        message if isinstance(message, str) else None,
        request_id if isinstance(request_id, str) else None,
    )


class NylasSetupHttp:
    """JSON over httpx to one Nylas host with one `Authorization` header."""

    def __init__(
        self,
        base_url: str,
        authorization: str,
        secrets: tuple[str, ...],
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url
        self._secrets = secrets
        self._retry = retry or DEFAULT_RETRY
        self._client = httpx.Client(
            base_url=base_url,
            timeout=timeout,
            follow_redirects=False,
            verify=_tls(),
            headers={
                "Authorization": authorization,
                "Accept": "application/json",
                "User-Agent": "teams-connect-setup",
            },
        )

    def __enter__(self) -> NylasSetupHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- public calls -------------------------------------------------------------------------------

    def get(self, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """The JSON body of a GET; None on 404 when `missing_ok`."""
        return self._call("GET", path, None, missing_ok=missing_ok)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self._call(method, path, body, missing_ok=False)
        assert result is not None
        return result

    def delete(self, path: str) -> bool:
        """DELETE; False when the object was already gone (404)."""
        return self._call("DELETE", path, None, missing_ok=True) is not None

    # -- internals ----------------------------------------------------------------------------------

    def _safe(self, text: str) -> str:
        return redact(_clean(text), self._secrets)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, missing_ok: bool
    ) -> dict[str, Any] | None:
        idempotent = method == "GET"

        def retry_exception(exc: BaseException) -> bool:
            return isinstance(exc, httpx.TransportError if idempotent else _NOT_SENT)

        def retry_result(response: httpx.Response) -> bool:
            return response.status_code in _RETRY_STATUSES if idempotent else response.status_code == 429

        def give_up(state: RetryCallState) -> httpx.Response:
            assert state.outcome is not None
            return state.outcome.result()  # type: ignore[no-any-return]  # the last response, or raise

        def log_retry(state: RetryCallState) -> None:
            outcome = state.outcome
            what = (
                type(outcome.exception()).__name__
                if outcome is not None and outcome.failed
                else f"HTTP {outcome.result().status_code}"
                if outcome is not None
                else "?"
            )
            logger.warning("Nylas %s %s: %s, retrying (attempt %d)", method, path, what, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self._retry.attempts)),
            wait=wait_random_exponential(multiplier=self._retry.multiplier, max=self._retry.max_wait),
            retry=retry_if_exception(retry_exception) | retry_if_result(retry_result),
            retry_error_callback=give_up,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            response: httpx.Response = retrying(self._client.request, method, path, json=body)
        except httpx.TransportError as exc:
            raise SetupError(
                f"Nylas {method} {path}: could not reach {self.base_url} ({type(exc).__name__})"
            ) from None
        return self._parse(method, path, response, missing_ok=missing_ok)

    def _parse(
        self, method: str, path: str, response: httpx.Response, *, missing_ok: bool
    ) -> dict[str, Any] | None:
        status = response.status_code
        header_rid = response.headers.get("x-request-id")
        try:
            parsed: Any = response.json() if response.content else {}
        except ValueError:
            parsed = None
        etype, message, body_rid = _error_fields(parsed)
        request_id = body_rid or header_rid
        logger.info("Nylas %s %s: HTTP %d (request id %s)", method, path, status, request_id or "-")
        if status == 404 and missing_ok:
            return None
        failed_flag = isinstance(parsed, dict) and parsed.get("success") is False
        if status >= 300 or failed_flag:
            text = f"Nylas {method} {path} failed: HTTP {status}"
            if etype:
                text += f" {etype}"
            if message:
                text += f": {message}"
            if parsed is None:
                text += " (response body is not JSON)"
            if request_id:
                text += f" (request id {request_id})"
            raise SetupError(
                self._safe(text),
                status=status,
                error_type=self._safe(etype) if etype else None,
                request_id=self._safe(request_id) if request_id else None,
            )
        if not isinstance(parsed, dict):
            text = f"Nylas {method} {path}: HTTP {status} with a body that is not a JSON object"
            if request_id:
                text += f" (request id {request_id})"
            raise SetupError(self._safe(text), status=status, request_id=request_id)
        return parsed


def data_of(body: dict[str, Any] | None) -> Any:
    """The `data` member of a Nylas success envelope (both flavours); the body itself if it has none."""
    return body.get("data", body) if isinstance(body, dict) else None


def object_of(body: dict[str, Any] | None, what: str) -> dict[str, Any]:
    data = data_of(body)
    if not isinstance(data, dict):
        raise SetupError(f"Nylas answered an unexpected shape for {what} (no JSON object in data)")
    return data


def list_of(body: dict[str, Any] | None, what: str) -> list[dict[str, Any]]:
    data = data_of(body)
    if not isinstance(data, list):
        raise SetupError(f"Nylas answered an unexpected shape for {what} (data is not a list)")
    return [item for item in data if isinstance(item, dict)]
