"""Nylas v3 adapter: auth URL built locally (0 calls), code exchange (1 call), grant revoke, and the
listing of the grants created in a time window (the sweeper, for a lost exchange)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from teams_connect.adapters.nylas.port import (
    PROVIDER,
    BeginRequest,
    CallbackInput,
    PendingFlow,
    VerifiedGrant,
)
from teams_connect.adapters.secrets import SecretsProvider
from teams_connect.config import Settings
from teams_connect.errors import (
    AccessDenied,
    AccountNotSupported,
    ConnectError,
    ExchangeUnanswered,
    GrantInvalid,
    ServerError,
    SessionInvalid,
    UpstreamUnavailable,
)
from teams_connect.observability import logger
from teams_connect.rules.microsoft import refusal_code
from teams_connect.rules.security import GRANT_ID_RE, check_state, pkce_challenge

if TYPE_CHECKING:  # httpx and the retry stack load only when a call is made (v3 start makes none)
    from teams_connect.adapters.nylas.http import NylasError, NylasHttp, NylasResponse

_CODE_RE = re.compile(r"^[\x21-\x7e]{1,2048}\Z")
_ERROR_RE = re.compile(r"^[a-z_]{1,64}\Z")
_DENIED = frozenset({"access_denied", "consent_required", "interaction_required", "login_required"})
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error"})
# Microsoft's refusal of a personal account by an app for work or school accounts only
# (AzureTenant=organizations): "AADSTS500200: User account '…' is a personal Microsoft account. …"
_PERSONAL_ACCOUNT_REFUSED = "AADSTS500200"
#: `GET /v3/grants` paging (the SDKs' maximum page) and how many pages one lost exchange may list.
GRANT_LIST_PAGE = 200
GRANT_LIST_MAX_PAGES = 25


def callback_error_code(error: str, description: str = "") -> str:
    """An OAuth `error` from the callback → contract code (the description is never shown; only
    Microsoft's error number in it is matched)."""
    if description.startswith(_PERSONAL_ACCOUNT_REFUSED + ":"):
        return AccountNotSupported.code
    if error in _DENIED:
        return AccessDenied.code
    if error in _TRANSIENT:
        return UpstreamUnavailable.code
    return GrantInvalid.code


class V3Adapter:
    flavour = "v3"

    def __init__(
        self,
        settings: Settings,
        secrets: SecretsProvider,
        http: NylasHttp | None = None,
        *,
        http_factory: Callable[[], NylasHttp] | None = None,
    ) -> None:
        """`http`, or `http_factory` to create it on the first Nylas call: building the auth URL
        (`begin`) calls nobody, so `connect_start` never imports the HTTP stack in v3."""
        if http is None and http_factory is None:
            raise ValueError("V3Adapter needs http or http_factory")
        self.base_url = settings.nylas_base_url
        self._scopes = settings.nylas_scopes
        self._secrets = secrets
        self._client = http
        self._http_factory = http_factory

    @property
    def _http(self) -> NylasHttp:
        if self._client is None:
            assert self._http_factory is not None
            self._client = self._http_factory()
        return self._client

    def client_id(self) -> str:
        return self._secrets.nylas().client_id

    def begin(self, request: BeginRequest, *, deadline: float | None = None) -> str:
        params: list[tuple[str, str]] = [
            ("client_id", self.client_id()),
            ("redirect_uri", request.redirect_uri),
            ("response_type", "code"),
            ("provider", PROVIDER),
            ("state", request.state),
        ]
        if self._scopes:
            params.append(("scope", " ".join(self._scopes)))
        if request.login_hint:
            params.append(("login_hint", request.login_hint))
        params += [
            ("access_type", "online"),
            ("code_challenge", pkce_challenge(request.code_verifier)),
            ("code_challenge_method", "S256"),
        ]
        return f"{self.base_url}/v3/connect/auth?{urlencode(params, quote_via=quote)}"

    def parse_callback(self, query: Mapping[str, str]) -> CallbackInput:
        state = check_state(query.get("state"))
        if "error" in query:
            error = query["error"]
            # Microsoft's "an administrator must approve" wherever Nylas puts it (docs/admin-consent.md).
            named = refusal_code(
                query.get(k) for k in ("error", "error_description", "error_code", "error_subcode")
            )
            return CallbackInput(
                state=state,
                error=named
                or (
                    callback_error_code(error, query.get("error_description", ""))
                    if _ERROR_RE.match(error)
                    else "grant_invalid"
                ),
            )
        code = query.get("code")
        if code is None or not _CODE_RE.match(code):
            # Neither a code nor an error: not a callback Nylas sends. A 4xx that consumes nothing.
            raise SessionInvalid()
        return CallbackInput(state=state, code=code)

    def complete(
        self, callback: CallbackInput, pending: PendingFlow, *, deadline: float | None = None
    ) -> VerifiedGrant:
        if callback.code is None or not pending.code_verifier:
            raise GrantInvalid()
        resp = self._exchange(callback.code, pending, deadline=deadline)
        data = resp.body if isinstance(resp.body, dict) else {}
        grant = _grant_from_token(data)
        if grant is None:
            # Malformed or incomplete answer: confirm with the grant itself if we at least have its id.
            grant_id = data.get("grant_id")
            if not isinstance(grant_id, str) or not GRANT_ID_RE.match(grant_id):
                logger.error("token response without a usable grant_id", extra={"keys": sorted(data)[:20]})
                raise ServerError()
            grant = self._get_grant(grant_id, deadline=deadline)
        if grant.provider != PROVIDER:
            logger.warning("grant has an unexpected provider")
            raise GrantInvalid()
        return grant

    def _exchange(self, code: str, pending: PendingFlow, *, deadline: float | None) -> NylasResponse:
        """`POST /v3/connect/token`, never blindly repeated (the code is single-use). A 401 means the
        client authentication failed, so the code was not redeemed: the secret is re-read once and
        the exchange repeated once, but only if the re-read key differs (rotation)."""
        from teams_connect.adapters.nylas.http import NylasError

        creds = self._secrets.nylas()
        for attempt in (1, 2):
            body = {
                "client_id": creds.client_id,
                "client_secret": creds.api_key,
                "code": code,
                "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.code_verifier,
                "grant_type": "authorization_code",
            }
            try:
                return self._http.request(
                    "POST",
                    "/v3/connect/token",
                    route="v3.token",
                    json=body,
                    idempotent=False,
                    deadline=deadline,
                )
            except NylasError as exc:
                if exc.status == 401 and attempt == 1:
                    fresh = self._secrets.nylas(force_fetch=True)
                    if fresh.api_key != creds.api_key or fresh.client_id != creds.client_id:
                        logger.warning(
                            "Nylas rejected the API key; the re-read secret differs: retrying once"
                        )
                        creds = fresh
                        continue
                raise _exchange_error(exc) from None
        raise ServerError()  # pragma: no cover - the loop always returns or raises

    def _get_grant(self, grant_id: str, *, deadline: float | None) -> VerifiedGrant:
        resp = self._authorized("GET", f"/v3/grants/{grant_id}", route="v3.grants.get", deadline=deadline)
        data = resp.get("data") if isinstance(resp, dict) else None
        if not isinstance(data, dict) or data.get("id") != grant_id:
            raise ServerError()
        email = data.get("email")
        scopes = data.get("scope")
        status = data.get("grant_status", "valid")
        if not isinstance(email, str) or not email or status != "valid":
            raise GrantInvalid()
        return VerifiedGrant(
            grant_id=grant_id,
            email=email,
            provider=str(data.get("provider", "")),
            scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
            grant_status=str(status),
        )

    def grant_state(
        self, grant_id: str, *, deadline: float | None = None
    ) -> tuple[str, tuple[str, ...] | None]:
        """What Nylas says of the grant now: ("valid" | "invalid" | "gone", its scopes or None). Asked
        by the webhook when a notification cannot be ordered by time (issue 19). Only Nylas's own
        grant-not-found answer means gone; any other failure raises (the webhook answers 503)."""
        if not GRANT_ID_RE.match(grant_id):
            return "gone", None  # no grant Nylas could have issued
        from teams_connect.adapters.nylas.http import NylasError, api_error, grant_is_gone

        try:
            resp = self._http.request_rereading_credentials(
                "GET",
                f"/v3/grants/{grant_id}",
                route="v3.grants.get",
                headers_for=self._bearer,
                deadline=deadline,
            ).body
        except NylasError as exc:
            if grant_is_gone(exc):
                return "gone", None
            raise api_error(exc) from None
        data = resp.get("data") if isinstance(resp, dict) else None
        if not isinstance(data, dict) or data.get("id") != grant_id:
            raise ServerError()
        scopes = data.get("scope")
        found = tuple(str(s) for s in scopes) if isinstance(scopes, list) and scopes else None
        return ("valid" if data.get("grant_status", "valid") == "valid" else "invalid"), found

    def revoke(self, grant_id: str, *, deadline: float | None = None) -> None:
        if not GRANT_ID_RE.match(grant_id):
            raise ServerError()
        from teams_connect.adapters.nylas.http import NylasError, revoke_error

        try:
            self._http.request_rereading_credentials(
                "DELETE",
                f"/v3/grants/{grant_id}",
                route="v3.grants.delete",
                headers_for=self._bearer,
                deadline=deadline,
            )
        except NylasError as exc:
            error = revoke_error(exc)
            if error is not None:
                raise error from None
            logger.info("grant already gone at Nylas")

    def grants_created(self, since: int, before: int, *, deadline: float | None = None) -> list[str]:
        """The ids of this application's Microsoft grants created in [since, before] (epoch seconds):
        `GET /v3/grants` with `since`, `before` and `provider`, oldest first, paged by `limit`/`offset`
        until a short page. A failure raises (transient: `upstream_unavailable`)."""
        found: list[str] = []
        for page in range(GRANT_LIST_MAX_PAGES):
            query = urlencode(
                {
                    "provider": PROVIDER,
                    "since": since,
                    "before": before,
                    "sort_by": "created_at",
                    "order_by": "asc",
                    "limit": GRANT_LIST_PAGE,
                    "offset": page * GRANT_LIST_PAGE,
                }
            )
            body = self._authorized("GET", f"/v3/grants?{query}", route="v3.grants.list", deadline=deadline)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                logger.error("grant list answer without a data list")
                raise ServerError()
            found += [grant_id for grant_id in map(_created_in(since, before), data) if grant_id]
            if len(data) < GRANT_LIST_PAGE:
                return list(dict.fromkeys(found))
        logger.error(
            "more grants in the window than the sweep lists: retried later", extra={"pages": page + 1}
        )
        raise UpstreamUnavailable()

    def _bearer(self, force: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._secrets.nylas(force_fetch=force).api_key}"}

    def _authorized(self, method: str, path: str, *, route: str, deadline: float | None) -> Any:
        """An idempotent call with the API key; on 401 re-read the secret once and retry once."""
        from teams_connect.adapters.nylas.http import NylasError, api_error

        try:
            return self._http.request_rereading_credentials(
                method, path, route=route, headers_for=self._bearer, deadline=deadline
            ).body
        except NylasError as exc:
            raise api_error(exc) from None


def _grant_from_token(data: dict[str, Any]) -> VerifiedGrant | None:
    grant_id, email, provider, scope = (data.get(k) for k in ("grant_id", "email", "provider", "scope"))
    if not (isinstance(grant_id, str) and GRANT_ID_RE.match(grant_id)):
        return None
    if not (isinstance(email, str) and email and isinstance(provider, str) and provider):
        return None
    if isinstance(scope, str):
        scopes = tuple(s for s in scope.split(" ") if s)
    elif isinstance(scope, list):
        scopes = tuple(str(s) for s in scope)
    else:
        scopes = ()
    return VerifiedGrant(grant_id=grant_id, email=email, provider=provider, scopes=scopes)


def _created_in(since: int, before: int) -> Callable[[Any], str | None]:
    """The id of a listed grant if it is a Microsoft grant created in [since, before], else None: the
    filters are applied again here, so a Nylas that ignored one never widens what is revoked."""

    def grant_id(grant: Any) -> str | None:
        if not isinstance(grant, dict) or grant.get("provider") != PROVIDER:
            return None
        found, created = grant.get("id"), grant.get("created_at")
        if not isinstance(found, str) or not GRANT_ID_RE.match(found):
            return None
        if not isinstance(created, int) or isinstance(created, bool) or not since <= created <= before:
            return None
        return found

    return grant_id


def _exchange_error(exc: NylasError) -> ConnectError:
    if exc.may_have_been_done:
        # The code may have been redeemed: a grant may exist at Nylas that no answer named.
        logger.warning("the code exchange may have reached Nylas without an answer")
        return ExchangeUnanswered()
    if exc.transient:
        return UpstreamUnavailable()
    if exc.status == 401:
        logger.error("Nylas rejected the API key at the code exchange (rotated or expired?)")
        return ServerError()
    return GrantInvalid()  # invalid_grant (used/expired code, PKCE mismatch …) is terminal
