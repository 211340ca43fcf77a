"""Nylas beta ("Integrations") adapter: `POST /connect/auth`, grant verification, revoke.

Basic auth base64(client_id:client_secret) on every call. The callback's `success`, `provider`,
`email` and `grant_id` are browser input: the grant is verified with `GET /connect/grants/{id}`
and stored as Nylas reports it. The grant is bound to the flow by its `state` (set by Nylas from the
`POST /connect/auth` body and never changed later), compared in constant time with the flow's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from teams_connect.adapters.nylas.http import NylasError, NylasHttp, api_error, revoke_error
from teams_connect.adapters.nylas.port import (
    PROVIDER,
    BeginRequest,
    CallbackInput,
    PendingFlow,
    VerifiedGrant,
)
from teams_connect.adapters.secrets import SecretsProvider
from teams_connect.config import DEFAULT_BETA_SCOPES, Settings, is_loopback_host
from teams_connect.errors import GrantInvalid, ServerError, SessionInvalid
from teams_connect.observability import logger
from teams_connect.rules.microsoft import refusal_code
from teams_connect.rules.security import EMAIL_RE, GRANT_ID_RE, check_state

CLOCK_SKEW_SECONDS = 60
_URL_CHARS = re.compile(r"^[\x21-\x7e]{1,2048}\Z")


class BetaAdapter:
    flavour = "beta"

    def __init__(self, settings: Settings, secrets: SecretsProvider, http: NylasHttp) -> None:
        self.base_url = settings.nylas_base_url
        self._scopes = settings.nylas_scopes or DEFAULT_BETA_SCOPES
        self._expires_in = settings.beta_login_expires_in
        self._secrets = secrets
        self._http = http

    def client_id(self) -> str:
        return self._secrets.nylas().client_id

    def _basic(self, *, force_fetch: bool = False) -> dict[str, str]:
        creds = self._secrets.nylas(force_fetch=force_fetch)
        token = base64.b64encode(f"{creds.client_id}:{creds.client_secret}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def _call(self, method: str, path: str, *, route: str, json: Any = None, deadline: float | None) -> Any:
        """An idempotent-enough call (a duplicate login link is harmless); 401 → re-read once."""
        try:
            return self._http.request_rereading_credentials(
                method,
                path,
                route=route,
                headers_for=lambda force: self._basic(force_fetch=force),
                json=json,
                deadline=deadline,
            ).body
        except NylasError as exc:
            raise api_error(exc) from None

    def begin(self, request: BeginRequest, *, deadline: float | None = None) -> str:
        body: dict[str, Any] = {
            "provider": PROVIDER,
            "redirect_uri": request.redirect_uri,
            "expires_in": self._expires_in,
            "state": request.state,
            "scope": list(self._scopes),
        }
        if request.login_hint:
            body["login_hint"] = request.login_hint
        if request.account_id:
            body["account_id"] = request.account_id
        resp = self._call("POST", "/connect/auth", route="beta.connect.auth", json=body, deadline=deadline)
        data = resp.get("data") if isinstance(resp, dict) else None
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not _URL_CHARS.match(url):
            logger.error("POST /connect/auth answered without a usable url")
            raise ServerError()
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        local = parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        if not (secure or local) or not parts.hostname or "@" in parts.netloc:
            logger.error("POST /connect/auth returned a url with an unexpected scheme or host")
            raise ServerError()
        return url

    def parse_callback(self, query: Mapping[str, str]) -> CallbackInput:
        state = check_state(query.get("state"))
        success = query.get("success")
        if success == "false":
            # Microsoft's "an administrator must approve" wherever it is (docs/admin-consent.md); else
            # the user's own refusal.
            named = refusal_code(query.get(k) for k in ("error", "error_description", "reason"))
            return CallbackInput(state=state, error=named or "access_denied")
        if success != "true":
            # Neither outcome Nylas sends: not a callback at all. A 4xx that consumes nothing.
            raise SessionInvalid()
        provider = query.get("provider", PROVIDER)
        grant_id = query.get("grant_id", "")
        # The query's `email` is not used (the grant's email comes from Nylas), so it is not checked.
        if provider != PROVIDER or not GRANT_ID_RE.match(grant_id):
            # Browser input that Nylas never sends: the flow ends with grant_invalid once the session
            # is identified (a redirect to its return_to), never a 5xx page before it is known.
            return CallbackInput(state=state, error=GrantInvalid.code)
        return CallbackInput(state=state, grant_id=grant_id)

    def complete(
        self, callback: CallbackInput, pending: PendingFlow, *, deadline: float | None = None
    ) -> VerifiedGrant:
        grant_id = callback.grant_id
        if grant_id is None:
            raise GrantInvalid()
        resp = self._call("GET", f"/connect/grants/{grant_id}", route="beta.grants.get", deadline=deadline)
        data = resp.get("data") if isinstance(resp, dict) else None
        if not isinstance(data, dict):
            logger.error("grant lookup answered with an unexpected shape")
            raise ServerError()
        email = data.get("email")
        stamps = [
            v
            for v in (data.get("created_at"), data.get("updated_at"))
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        problems = []
        if data.get("id") != grant_id:
            problems.append("id")
        if data.get("provider") != PROVIDER:
            problems.append("provider")
        if data.get("grant_status") != "valid":
            problems.append("grant_status")
        low, high = pending.started_at - CLOCK_SKEW_SECONDS, pending.now + CLOCK_SKEW_SECONDS
        if not stamps or max(stamps) < low or max(stamps) > high:
            problems.append("freshness")
        if not isinstance(email, str) or not EMAIL_RE.match(email):
            problems.append("email")
        elif pending.login_hint and email.casefold() != pending.login_hint.casefold():
            problems.append("login_hint")
        scopes = _scopes(data.get("scope"))
        if scopes is None or not self._has_required_scopes(scopes):
            problems.append("scope")
        if problems:
            logger.warning("beta grant failed verification", extra={"checks_failed": problems})
            raise GrantInvalid()
        assert isinstance(email, str)
        assert scopes is not None
        bound = _state_matches(data.get("state"), pending.state_hash)
        if not bound:
            # Nylas keeps the first login's state on re-authentication: such a grant is acceptable
            # only for the user who already holds it (the flow checks that), never for anyone else.
            logger.info("beta grant carries another flow's state: accepted only for its current holder")
        origin = data.get("state")
        return VerifiedGrant(
            grant_id=grant_id,
            email=email,
            provider=PROVIDER,
            scopes=scopes,
            bound=bound,
            origin_state=origin if isinstance(origin, str) and not bound else None,
        )

    def _has_required_scopes(self, granted: tuple[str, ...]) -> bool:
        have = {s.casefold() for s in granted}
        return all(s.casefold() in have for s in self._scopes)

    def revoke(self, grant_id: str, *, deadline: float | None = None) -> None:
        if not GRANT_ID_RE.match(grant_id):
            raise ServerError()
        try:
            self._http.request_rereading_credentials(
                "DELETE",
                f"/connect/grants/{grant_id}",
                route="beta.grants.delete",
                headers_for=lambda force: self._basic(force_fetch=force),
                deadline=deadline,
            )
        except NylasError as exc:
            error = revoke_error(exc)
            if error is not None:
                raise error from None
            logger.info("grant already gone at Nylas")


def _scopes(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return None
    return tuple(value)


def _state_matches(state: object, state_hash: str | None) -> bool:
    """The grant's `state` is this flow's (constant-time; a missing state never matches)."""
    if not isinstance(state, str) or not state or not state_hash:
        return False
    digest = hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()
    return hmac.compare_digest(digest, state_hash)
