"""Admin consent: a second, smaller flow beside the connect flow, with the same guarantees (one-time,
bound to the browser that follows the link, allow-listed return). docs/admin-consent.md.

- create (backend API key): 1 PutItem (+ 1 discovery call when `tenant` is given, to resolve a domain
  and to refuse an unknown tenant at once).
- start (browser): 1 Secrets Manager read (cached) + 1 conditional UpdateItem → 302 to Microsoft's
  v2 admin-consent endpoint for the link's tenant or `organizations` (never `common`).
- complete (browser, Microsoft's redirect): 1 conditional UpdateItem (consume) + 1 client-credentials
  token request for the tenant (the proof that the app is there) + 1 TransactWriteItems (tenant record
  and the flow's completion); an error end adds one UpdateItem (fail or release).

The binding cookie and the state are the connect flow's (`rules.security`): a per-flow cookie named
after the state's hash, holding a nonce whose hash the store compares in the consume condition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teams_connect.adapters.microsoft import AzureApp, MicrosoftIdentity, azure_app
from teams_connect.adapters.store.tenants import ConsentCompleted, TenantRecord, TenantStore
from teams_connect.config import Settings
from teams_connect.domain.flow import BindingCookie, iso_utc
from teams_connect.errors import (
    AccessDenied,
    ConnectError,
    ConsentUnverified,
    InvalidRequest,
    NotFound,
    ServerError,
    SessionInvalid,
    TenantMismatch,
    UpstreamUnavailable,
)
from teams_connect.observability import logger
from teams_connect.rules import microsoft as rules
from teams_connect.rules import security

_FIELDS = frozenset({"return_to", "tenant"})
#: The codes the admin-consent callback may end with (contract.md, "Enterprise tenants").
CALLBACK_CODES = frozenset(
    {
        "access_denied",
        "session_invalid",
        "session_expired",
        "session_used",
        "browser_mismatch",
        "tenant_mismatch",
        "consent_unverified",
        "upstream_unavailable",
        "server_error",
    }
)


@dataclass(frozen=True)
class CreatedConsent:
    consent_id: str
    consent_url: str
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "consent_id": self.consent_id,
            "consent_url": self.consent_url,
            "expires_at": iso_utc(self.expires_at),
        }


@dataclass(frozen=True)
class ConsentStart:
    location: str = field(repr=False)
    cookie: BindingCookie


@dataclass(frozen=True)
class ConsentOutcome:
    """How the callback ended: `tenant_id` on success, else `error` (with its `return_to`)."""

    return_to: str | None
    tenant_id: str | None = None
    error: ConnectError | None = None
    clear_cookie: BindingCookie | None = None


def tenant_json(record: TenantRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "admin_consented_at": iso_utc(record.admin_consented_at),
        "consent_id": record.consent_id,
    }


class AdminConsentFlow:
    def __init__(
        self,
        settings: Settings,
        store: TenantStore,
        microsoft: MicrosoftIdentity | None,
        *,
        app: Callable[[], AzureApp] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._microsoft = microsoft
        self._app = app or (lambda: azure_app(settings))
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    @property
    def microsoft(self) -> MicrosoftIdentity:
        if self._microsoft is None:
            raise ServerError("This function was built without the Microsoft adapter.")
        return self._microsoft

    # --- backend API ----------------------------------------------------------------------------------
    def create(self, body: object, *, deadline: float | None = None) -> CreatedConsent:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object.")
        unknown = set(body) - _FIELDS
        if unknown:
            raise InvalidRequest("Unknown fields: " + ", ".join(sorted(str(k)[:40] for k in unknown)[:5]))
        if "return_to" not in body:
            raise InvalidRequest("return_to is required: where the administrator returns.")
        return_to = security.validate_return_to(body["return_to"], self.settings.allowed_return_urls)
        tenant_id: str | None = None
        if "tenant" in body:
            parsed = rules.check_tenant_input(body["tenant"])
            if parsed is None:
                raise InvalidRequest(
                    "tenant must be an organisation's tenant id (GUID) or domain; not common, "
                    "organizations, consumers or a personal Microsoft domain."
                )
            tenant_id = self.microsoft.resolve_tenant(parsed[1], deadline=deadline)
        consent_id = security.new_session_id()
        record = self.store.create(
            consent_id=consent_id,
            now=self.now(),
            ttl_seconds=self.settings.admin_consent_ttl_seconds,
            return_to=return_to,
            tenant_id=tenant_id,
        )
        logger.info("admin consent link created", extra={"consent": security.hash_prefix(consent_id)})
        url = f"{self.settings.public_base_url}/connect/admin-consent?consent={consent_id}"
        return CreatedConsent(consent_id=consent_id, consent_url=url, expires_at=record.expires_at)

    def get_tenant(self, tenant_id: str) -> TenantRecord:
        normal = rules.normalise_tenant_id(tenant_id)
        if normal is None:
            raise InvalidRequest("tenant_id must be a tenant id (GUID).")
        record = self.store.get(normal)
        if record is None:
            raise NotFound("No administrator of this tenant consented through teams-connect.")
        return record

    # --- browser ------------------------------------------------------------------------------------
    def start(self, consent_id: str | None) -> ConsentStart:
        if consent_id is None or not security.SESSION_ID_RE.match(consent_id):
            raise SessionInvalid()
        app = self._app()  # before the write: a failure here changes nothing
        state = security.new_state(consent_id)
        nonce = security.new_binding_nonce()
        state_hash = security.sha256_hex(state)
        logger.append_keys(flow=state_hash[:12])
        record = self.store.start(
            consent_id,
            state_hash=state_hash,
            binding_hash=security.sha256_hex(nonce),
            now=self.now(),
            flow_ttl=self.settings.flow_ttl_seconds,
        )
        location = rules.admin_consent_url(
            self.settings.microsoft_login_url,
            record.tenant_id,
            client_id=app.client_id,
            redirect_uri=self.settings.admin_consent_callback_url,
            state=state,
        )
        end = record.flow_expires_at or record.expires_at
        remaining = max(1, min(end - self.now(), self.settings.flow_ttl_seconds))
        secure = self.settings.cookie_secure
        cookie = BindingCookie(
            name=security.cookie_name(state_hash, secure=secure),
            value=nonce,
            max_age=remaining,
            secure=secure,
        )
        logger.info("admin consent started", extra={"tenant_given": record.tenant_id is not None})
        return ConsentStart(location=location, cookie=cookie)

    def complete(
        self, query: Mapping[str, str], cookies: Sequence[str], *, deadline: float | None = None
    ) -> ConsentOutcome:
        """Never raises a `ConnectError`: every end of the flow is an outcome."""
        clear: BindingCookie | None = None
        try:
            state = security.check_state(query.get("state"))
            state_hash = security.sha256_hex(state)
            logger.append_keys(flow=state_hash[:12])
            secure = self.settings.cookie_secure
            clear = BindingCookie(security.cookie_name(state_hash, secure=secure), "", 0, secure)
            return self._complete(query, state, state_hash, cookies, clear, deadline)
        except ConnectError as exc:
            if exc.code not in CALLBACK_CODES:
                mapped = UpstreamUnavailable(return_to=exc.return_to)
                mapped.retryable = exc.retryable
                exc = mapped
            logger.info("admin consent ended with an error", extra={"error_code": exc.code})
            return ConsentOutcome(
                return_to=exc.return_to, error=exc, clear_cookie=None if exc.retryable else clear
            )

    def _complete(
        self,
        query: Mapping[str, str],
        state: str,
        state_hash: str,
        cookies: Sequence[str],
        clear: BindingCookie,
        deadline: float | None,
    ) -> ConsentOutcome:
        consent_id = security.session_id_from_state(state)
        nonce = security.find_cookie(cookies, clear.name)
        binding_hash = security.sha256_hex(nonce) if nonce and security.NONCE_RE.match(nonce) else "-"
        # Syntax before any I/O: neither an error nor a consent answer is not a Microsoft callback.
        refused = "error" in query
        if not refused and query.get("admin_consent", "").lower() != "true":
            raise SessionInvalid()
        try:
            app = self._app()  # before consuming: a failure here changes nothing
            record = self.store.consume(
                consent_id, state_hash=state_hash, binding_hash=binding_hash, now=self.now()
            )
        except ConsentCompleted as done:
            logger.info("admin consent callback replayed by the completing browser: idempotent success")
            return ConsentOutcome(
                return_to=done.record.return_to, tenant_id=done.record.consented_tenant_id, clear_cookie=clear
            )
        except (UpstreamUnavailable, ServerError) as exc:
            exc.retryable = True  # nothing was consumed
            raise
        return_to = record.return_to

        def end(error: ConnectError, *, retryable: bool) -> ConnectError:
            if retryable:
                self.store.release(consent_id, now=self.now())
            else:
                self.store.fail(consent_id, error_code=error.code, now=self.now())
            error.return_to = return_to
            error.retryable = retryable
            return error

        if refused:
            raise end(AccessDenied(), retryable=False)
        tenant_id = rules.normalise_tenant_id(query.get("tenant", ""))
        if tenant_id is None:
            logger.warning("admin consent callback without a valid tenant id")
            raise end(ConsentUnverified(), retryable=False)
        if record.tenant_id is not None and tenant_id != record.tenant_id:
            logger.warning("an administrator of another tenant answered the link")
            raise end(TenantMismatch(), retryable=False)
        try:
            present = self.microsoft.app_present(tenant_id, app, deadline=deadline)
        except UpstreamUnavailable as exc:
            raise end(exc, retryable=True) from None
        except ConnectError as exc:
            raise end(exc, retryable=False) from None
        if not present:
            raise end(ConsentUnverified(), retryable=False)
        try:
            self.store.record(consent_id, tenant_id=tenant_id, now=self.now())
        except UpstreamUnavailable as exc:
            raise end(exc, retryable=True) from None
        except ConnectError as exc:
            exc.return_to = return_to
            raise
        logger.info("admin consent recorded")
        return ConsentOutcome(return_to=return_to, tenant_id=tenant_id, clear_cookie=clear)


def build_admin_consent(
    settings: Settings, *, calls_microsoft: bool = False, clock: Callable[[], float] = time.time
) -> AdminConsentFlow:
    """The container's clients, once, at init: DynamoDB, Secrets Manager, and the Microsoft adapter,
    whose httpx client is created now only for a function that calls Microsoft (`calls_microsoft`:
    the callback, and link creation with a `tenant`); the start builds its URL locally."""
    from teams_connect.adapters.secrets import secrets_client
    from teams_connect.adapters.store.base import dynamodb_client

    if not settings.tenants_table:
        from teams_connect.config import ConfigError

        raise ConfigError("TENANTS_TABLE is required by the admin-consent functions")
    client = dynamodb_client()
    secrets_client()
    microsoft = MicrosoftIdentity(
        settings.microsoft_login_url, read_timeout=settings.microsoft_read_timeout_ms / 1000
    )
    if calls_microsoft:
        microsoft.warm()
    return AdminConsentFlow(
        settings, TenantStore(settings.tenants_table, settings.sessions_table, client), microsoft, clock=clock
    )
