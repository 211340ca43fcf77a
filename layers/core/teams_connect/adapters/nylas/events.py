"""Nylas v3 events on a grant's primary calendar, over the shared NylasHttp client (timeouts, an
overall deadline, retries honouring Retry-After for idempotent calls, the circuit breaker).

Calls: create `POST /v3/grants/{grant}/events` (never blindly repeated), list by metadata
(`GET …/events?metadata_pair=key:value`), get / update (`PUT`) / delete one event. Every failure
becomes a contract error here:
- 401 with an API-key error type: the secret is re-read once and the call repeated once if the
  key changed (rotation); otherwise server_error. Any other 401 is the grant: `GrantExpired`.
- 403 (the grant lacks calendar permission) → reauth_required; 404 → not_found, or `GrantGone`
  when Nylas no longer knows the grant; 429 → rate_limited with Retry-After; 5xx, timeouts and an
  open circuit → upstream_unavailable, except a create whose request may have reached Nylas:
  `AmbiguousCreate`, so the caller can look for the tagged event before answering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from teams_connect.adapters.secrets import SecretsProvider
from teams_connect.errors import (
    ConnectError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ReauthRequired,
    ServerError,
    TeamsUnavailable,
    UpstreamUnavailable,
)
from teams_connect.observability import logger

if TYPE_CHECKING:  # httpx and the retry stack load with the client, not with these error types
    from teams_connect.adapters.nylas.http import NylasError, NylasHttp

CALENDAR = "primary"
API_KEY_ERROR_TYPES = frozenset(
    {"unauthorized", "api.authentication_error", "token.unauthorized_access", "authentication_error"}
)
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "circuit_open", "deadline_exceeded"})
_TEAMS_REFUSALS = ("onlinemeeting", "online meeting", "teamsforbusiness", "microsoft teams")


class GrantExpired(ReauthRequired):
    """Nylas answered 401 for the grant itself: the record must turn `expired`."""


class GrantGone(ReauthRequired):
    """Nylas no longer knows the grant (404 `grant.not_found`)."""

    default_message = "The user's Microsoft connection no longer exists at Nylas; connect again."


class AmbiguousCreate(UpstreamUnavailable):
    """The create request may have reached Nylas (timeout after sending, 5xx): look before retrying."""


def _retry_after(exc: NylasError) -> int:
    return max(1, math.ceil(exc.retry_after)) if exc.retry_after else 1


def grant_expired(exc: NylasError) -> bool:
    """A 401 that is about the grant (its type is `grant.*`, or the provider says `invalid_grant`), not
    about our API key, region or anything else: only that marks a user's record expired."""
    if exc.status != 401:
        return False
    return (
        exc.error_type.lower().startswith("grant.") or (exc.provider_error or "").lower() == "invalid_grant"
    )


def events_error(exc: NylasError, *, creating: bool = False) -> ConnectError:
    """A failed events call (after retries) → the contract's error."""
    if exc.status == 429:
        return RateLimited(retry_after=_retry_after(exc))
    if exc.status is None or exc.status >= 500:
        if creating and (exc.status is not None or exc.error_type not in _NOT_SENT):
            return AmbiguousCreate()
        return UpstreamUnavailable()
    if exc.status == 401:
        if grant_expired(exc):
            return GrantExpired()
        if exc.error_type in API_KEY_ERROR_TYPES:
            logger.error("Nylas rejected the API key after a fresh secret read (rotated or expired?)")
        else:  # security review 3, G11: never mark users expired on a 401 we cannot attribute
            logger.error(
                "Nylas answered 401 with an unknown type", extra={"nylas_error_type": exc.error_type[:100]}
            )
        return ServerError()
    if exc.status == 403:
        return ReauthRequired("The user's Microsoft connection lacks calendar permission; connect again.")
    if exc.status == 404:
        return GrantGone() if exc.error_type.startswith("grant.") else NotFound("No such meeting.")
    if exc.status == 400 and any(word in exc.message.lower() for word in _TEAMS_REFUSALS):
        return TeamsUnavailable()
    if 400 <= exc.status < 500:
        logger.warning("Nylas refused an events request", extra={"nylas_error_type": exc.error_type[:100]})
        return InvalidRequest("Microsoft refused this meeting request.")
    return ServerError()


class EventsApi:
    """One per container (it holds no per-request state)."""

    def __init__(self, http: NylasHttp, secrets: SecretsProvider) -> None:
        self._http = http
        self._secrets = secrets

    # --- calls ------------------------------------------------------------------------------------
    def create(self, grant_id: str, body: Mapping[str, Any], *, deadline: float | None) -> dict[str, Any]:
        path = f"{_events(grant_id)}?{urlencode({'calendar_id': CALENDAR})}"
        return _event(self._call("POST", path, "v3.events.create", body, False, deadline, creating=True))

    def find_tagged(
        self, grant_id: str, key: str, value: str, *, deadline: float | None
    ) -> dict[str, Any] | None:
        query = urlencode({"calendar_id": CALENDAR, "metadata_pair": f"{key}:{value}", "limit": "5"})
        body = self._call("GET", f"{_events(grant_id)}?{query}", "v3.events.list", None, True, deadline)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            logger.error("Nylas events list without a data list")
            raise ServerError()
        for item in data:
            if isinstance(item, dict) and (item.get("metadata") or {}).get(key) == value:
                return _event({"data": item})
        return None

    def get(self, grant_id: str, event_id: str, *, deadline: float | None) -> dict[str, Any]:
        return _event(self._call("GET", _one(grant_id, event_id), "v3.events.get", None, True, deadline))

    def update(
        self, grant_id: str, event_id: str, body: Mapping[str, Any], *, deadline: float | None
    ) -> dict[str, Any]:
        return _event(self._call("PUT", _one(grant_id, event_id), "v3.events.update", body, True, deadline))

    def delete(self, grant_id: str, event_id: str, *, deadline: float | None) -> None:
        self._call("DELETE", _one(grant_id, event_id), "v3.events.delete", None, True, deadline)

    # --- plumbing ---------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        route: str,
        body: Mapping[str, Any] | None,
        idempotent: bool,
        deadline: float | None,
        *,
        creating: bool = False,
    ) -> Any:
        from teams_connect.adapters.nylas.http import NylasError

        def send(force: bool) -> Any:
            key = self._secrets.nylas(force_fetch=force).api_key
            return self._http.request(
                method,
                path,
                route=route,
                headers={"Authorization": f"Bearer {key}"},
                json=dict(body) if body is not None else None,
                idempotent=idempotent,
                deadline=deadline,
            ).body

        try:
            return send(False)
        except NylasError as exc:
            if not (exc.status == 401 and exc.error_type in API_KEY_ERROR_TYPES):
                raise events_error(exc, creating=creating) from None
            cached = self._secrets.nylas().api_key
            if self._secrets.nylas(force_fetch=True).api_key == cached:
                raise events_error(exc, creating=creating) from None
            logger.warning("Nylas rejected the cached API key; the re-read secret differs: retrying once")
        try:
            return send(False)  # the cache now holds the fresh secret
        except NylasError as exc:
            raise events_error(exc, creating=creating) from None


def _events(grant_id: str) -> str:
    return f"/v3/grants/{quote(grant_id, safe='')}/events"


def _one(grant_id: str, event_id: str) -> str:
    # "URL-encode event_id, or special characters can produce 404" (Nylas).
    return f"{_events(grant_id)}/{quote(event_id, safe='')}?{urlencode({'calendar_id': CALENDAR})}"


def _event(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        logger.error("Nylas event answer without an event id")
        raise ServerError()
    return data
