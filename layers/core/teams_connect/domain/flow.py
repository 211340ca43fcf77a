"""The use cases, flavour-agnostic: create a session, start, complete, look up, disconnect.

The flow talks to one `NylasPort` chosen by the settings; the clock is injectable.
DynamoDB / Nylas calls per use case:
- create_session: 1 PutItem.
- start: 1 conditional UpdateItem (+ v3: 0 Nylas calls; beta: 1 `POST /connect/auth`).
- complete: 1 conditional UpdateItem (consume) + 1 Nylas call + 1 TransactWriteItems that keeps the
  verified grant on the session (and a deferred REVOKE# entry) + 1 TransactWriteItems that stores
  the grant and marks the session completed (failure paths add one best-effort session write; a
  mailbox switch adds the old grant's revoke: 1 GetItem + 1 Nylas call + 1 DeleteItem; a v3 exchange
  that may have completed at Nylas without an answer adds 1 PutItem, its LOST# outbox entry).
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from teams_connect.adapters.nylas.port import (
    PROVIDER,
    BeginRequest,
    CallbackInput,
    NylasPort,
    PendingFlow,
    VerifiedGrant,
)
from teams_connect.adapters.secrets import SecretsProvider, secrets_client
from teams_connect.config import Settings
from teams_connect.domain.revocations import ABANDONED_GRACE_SECONDS, Revoker, lost_exchange
from teams_connect.errors import (
    BROWSER_CODES,
    AccessDenied,
    AccountAlreadyLinked,
    AccountNotSupported,
    AdminConsentRequired,
    Conflict,
    ConnectError,
    EmailMismatch,
    ExchangeUnanswered,
    GrantInvalid,
    InvalidRequest,
    NotConnected,
    NotFound,
    ServerError,
    SessionInvalid,
    SessionUsed,
    UpstreamUnavailable,
)
from teams_connect.observability import logger
from teams_connect.rules import lifecycle, security
from teams_connect.rules.metadata import check_metadata

if TYPE_CHECKING:
    from teams_connect.adapters.nylas.http import NylasHttp

from teams_connect.adapters.store.base import dynamodb_client
from teams_connect.adapters.store.grants import GrantRecord, GrantStore, Superseded
from teams_connect.adapters.store.sessions import AlreadyCompleted, SessionRecord, SessionStore, StartData

_SESSION_FIELDS = frozenset(
    {"user_id", "return_to", "login_hint", "account_id", "expected_email", "metadata"}
)
#: Popup embedding's session options (contract "Sessions: more options").
_EMBEDDING_FIELDS = frozenset({"display", "reconnect"})
DISPLAYS = ("redirect", "popup")
_CALLBACK_ERRORS: dict[str, type[ConnectError]] = {
    AccessDenied.code: AccessDenied,
    AdminConsentRequired.code: AdminConsentRequired,
    AccountNotSupported.code: AccountNotSupported,
    GrantInvalid.code: GrantInvalid,
    UpstreamUnavailable.code: UpstreamUnavailable,
}


def iso_utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class CreatedSession:
    session_id: str
    connect_url: str
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "connect_url": self.connect_url,
            "expires_at": iso_utc(self.expires_at),
        }


@dataclass(frozen=True)
class BindingCookie:
    name: str
    value: str = field(repr=False)
    max_age: int
    secure: bool


@dataclass(frozen=True)
class StartOutcome:
    location: str = field(repr=False)
    cookie: BindingCookie


@dataclass(frozen=True)
class CallbackOutcome:
    """How the callback ended. `error` is None on success; `return_to` is the stored value."""

    return_to: str | None
    error: ConnectError | None = None
    clear_cookie: BindingCookie | None = None
    #: The session's id when it is a popup session: the browser gets the popup result page.
    popup_session: str | None = None

    @property
    def connected(self) -> bool:
        return self.error is None


def grant_json(record: GrantRecord) -> dict[str, Any]:
    return {
        "user_id": record.user_id,
        "grant_id": record.grant_id,
        "email": record.email,
        "provider": record.provider,
        "status": record.status,
        "status_changed_at": iso_utc(record.status_changed_at or record.updated_at),
        "scopes": list(record.scopes),
        "missing_scopes": list(record.missing_scopes),
        "teams": record.teams,
        "connected_at": iso_utc(record.connected_at),
        "updated_at": iso_utc(record.updated_at),
        "tenant_id": record.tenant_id,
        "metadata": dict(record.metadata),
    }


def effective_record(record: GrantRecord, settings: Settings) -> GrantRecord:
    """The record as the API shows it: the deployment may require more scopes than when it was
    written (then a `valid` record is `needs_reauth`, and the other way round)."""
    status, missing = lifecycle.status_for(
        lifecycle.VALID if record.status == lifecycle.NEEDS_REAUTH else record.status,
        record.scopes,
        lifecycle.required_scopes(settings),
    )
    if (status, missing) != (record.status, record.missing_scopes):
        record = replace(record, status=status, missing_scopes=missing)
    return record


class ConnectFlow:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionStore,
        grants: GrantStore,
        secrets: SecretsProvider,
        nylas: NylasPort | None,
        *,
        clock: Callable[[], float] = time.time,
        tenant_of: Callable[[str, float | None], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.grants = grants
        self.secrets = secrets
        self._nylas = nylas
        self._clock = clock
        # The mailbox's Entra tenant, best effort (adapters.microsoft.MicrosoftIdentity.tenant_of_email):
        # stored on the grant record as `tenant_id`. None: not looked up.
        self._tenant_of = tenant_of

    @property
    def nylas(self) -> NylasPort:
        if self._nylas is None:
            raise ServerError("This function was built without a Nylas adapter.")
        return self._nylas

    def now(self) -> int:
        return int(self._clock())

    # --- backend API ------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> None:
        """The backend API key (secrets.SecretsProvider.authenticate: shared with the meetings routes)."""
        self.secrets.authenticate(authorization)

    def create_session(self, body: object) -> CreatedSession:
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object.")
        unknown = set(body) - _SESSION_FIELDS - _EMBEDDING_FIELDS
        if unknown:
            raise InvalidRequest("Unknown fields: " + ", ".join(sorted(str(k)[:40] for k in unknown)[:5]))
        user_id = security.check_user_id(body.get("user_id"))
        return_to = None
        if "return_to" in body:
            return_to = security.validate_return_to(body["return_to"], self.settings.allowed_return_urls)
        login_hint = _optional(body, "login_hint", security.EMAIL_RE, 320, "an email address")
        account_id = _optional(body, "account_id", security.ACCOUNT_ID_RE, 256, "an account id")
        expected_email = _optional(body, "expected_email", security.EMAIL_RE, 320, "an email address")
        display, reconnect = _embedding_options(body, return_to)
        if reconnect:
            expected_email = self._held_mailbox(user_id, expected_email)
        metadata = check_metadata(body["metadata"]) if "metadata" in body else None
        session_id = security.new_session_id()
        record = self.sessions.create(
            session_id=session_id,
            user_id=user_id,
            now=self.now(),
            ttl_seconds=self.settings.session_ttl_seconds,
            return_to=return_to,
            login_hint=login_hint,
            account_id=account_id,
            expected_email=expected_email,
            display=display,
            reconnect=reconnect,
            metadata=metadata,
        )
        logger.info("session created", extra={"session": security.hash_prefix(session_id)})
        connect_url = f"{self.settings.public_base_url}/connect/start?session={session_id}"
        return CreatedSession(session_id=session_id, connect_url=connect_url, expires_at=record.expires_at)

    def _held_mailbox(self, user_id: str, expected_email: str | None) -> str:
        """`"reconnect": true`: the flow must end on the mailbox this user holds, which becomes the
        session's `expected_email`. The existing expected_email machinery then refuses another mailbox
        with `email_mismatch`, leaves the held grant as it is and revokes the other one. No grant:
        `not_connected`. (No automatic `login_hint`: the beta flavour refuses a grant whose mailbox is
        not the hint as `grant_invalid`, which would hide the `email_mismatch` the contract promises.)"""
        held = self.grants.get(user_id)
        if held is None:
            raise NotConnected("This user has no connected Microsoft account to reconnect.")
        if expected_email is not None and expected_email.casefold() != held.email.casefold():
            raise InvalidRequest(
                "expected_email is not the mailbox this user holds; leave it out with reconnect."
            )
        return held.email

    def get_grant(self, user_id: str) -> GrantRecord:
        record = self.grants.get(security.check_user_id(user_id))
        if record is None:
            raise NotFound("This user has no grant.")
        return effective_record(record, self.settings)

    def disconnect(self, user_id: str, *, deadline: float | None = None) -> None:
        """Revoke at Nylas (already gone is fine), then delete USER# and its guards together.
        If Nylas cannot be reached the record stays (503)."""
        record = self.get_grant(user_id)
        self.nylas.revoke(record.grant_id, deadline=deadline)
        self.grants.delete(record.user_id, record.grant_id, record.email)
        logger.info("grant disconnected", extra={"user": security.hash_prefix(record.user_id)})

    # --- browser flow -------------------------------------------------------------------------
    def start(self, session_id: str | None, *, deadline: float | None = None) -> StartOutcome:
        if session_id is None or not security.SESSION_ID_RE.match(session_id):
            raise SessionInvalid()
        nylas = self.nylas
        state = security.new_state(session_id)
        nonce = security.new_binding_nonce()
        verifier = security.new_code_verifier()
        state_hash = security.sha256_hex(state)
        logger.append_keys(flow=state_hash[:12])
        data = StartData(
            state_hash=state_hash,
            binding_hash=security.sha256_hex(nonce),
            code_verifier=verifier,
            nylas_api=nylas.flavour,
            nylas_base_url=nylas.base_url,
            client_id=nylas.client_id(),
            provider=PROVIDER,
        )
        record = self.sessions.start(
            session_id, data, now=self.now(), flow_ttl=self.settings.flow_ttl_seconds
        )
        request = BeginRequest(
            state=state,
            code_verifier=verifier,
            redirect_uri=self.settings.callback_url,
            login_hint=record.login_hint,
            account_id=record.account_id,
        )
        try:
            location = nylas.begin(request, deadline=deadline)
        except ConnectError as exc:
            self.sessions.unstart(session_id, state_hash=state_hash)
            record.ends(exc)
            raise
        flow_end = record.flow_expires_at or record.expires_at
        remaining = max(1, min(flow_end - self.now(), self.settings.flow_ttl_seconds))
        cookie = BindingCookie(
            name=security.cookie_name(state_hash, secure=self.settings.cookie_secure),
            value=nonce,
            max_age=remaining,
            secure=self.settings.cookie_secure,
        )
        logger.info("flow started")
        return StartOutcome(location=location, cookie=cookie)

    def complete(
        self, query: Mapping[str, str], cookies: Sequence[str], *, deadline: float | None = None
    ) -> CallbackOutcome:
        """Never raises a `ConnectError`: every end of the flow is an outcome."""
        clear: BindingCookie | None = None
        try:
            state = security.check_state(query.get("state"))
            state_hash = security.sha256_hex(state)
            logger.append_keys(flow=state_hash[:12])
            secure = self.settings.cookie_secure
            clear = BindingCookie(security.cookie_name(state_hash, secure=secure), "", 0, secure)
            callback = self.nylas.parse_callback(query)  # syntax only: no I/O yet
            return self._complete(callback, state_hash, cookies, clear, deadline)
        except ConnectError as exc:
            if exc.code not in BROWSER_CODES:
                # Never show the browser a code outside the contract (e.g. a store `conflict`).
                mapped = UpstreamUnavailable(return_to=exc.return_to)
                mapped.retryable = exc.retryable
                mapped.popup_session = exc.popup_session
                exc = mapped
            logger.info("flow ended with an error", extra={"error_code": exc.code})
            # A retryable end leaves the session started: the browser keeps its binding cookie so
            # that the same callback (or a fresh one) can still complete.
            keep = exc.retryable
            return CallbackOutcome(
                return_to=exc.return_to,
                error=exc,
                clear_cookie=None if keep else clear,
                popup_session=exc.popup_session,
            )

    def _complete(
        self,
        callback: CallbackInput,
        state_hash: str,
        cookies: Sequence[str],
        clear: BindingCookie,
        deadline: float | None,
    ) -> CallbackOutcome:
        session_id = security.session_id_from_state(callback.state)
        nonce = security.find_cookie(cookies, clear.name)
        # A missing or malformed cookie gets a hash that can never match: the conditional
        # update then reports browser_mismatch and leaves the session for the real browser.
        binding_hash = security.sha256_hex(nonce) if nonce and security.NONCE_RE.match(nonce) else "-"
        nylas = self.nylas
        now = self.now()
        try:
            # Read before consuming, so that a failure here (secrets unavailable) changes nothing.
            client_id = nylas.client_id()
            session = self.sessions.consume(
                session_id, state_hash=state_hash, binding_hash=binding_hash, now=now
            )
        except AlreadyCompleted as done:
            logger.info("callback replayed by the completing browser: idempotent success")
            return CallbackOutcome(
                return_to=done.session.return_to, clear_cookie=clear, popup_session=done.session.popup_id
            )
        except (UpstreamUnavailable, ServerError) as exc:
            exc.retryable = True  # nothing was consumed: the same callback can be retried
            raise
        return_to = session.return_to

        def end(error: ConnectError, *, retryable: bool) -> ConnectError:
            if retryable:
                self.sessions.release(session_id, now=self.now())
            else:
                self.sessions.fail(session_id, error_code=error.code, now=self.now())
            session.ends(error)
            error.retryable = retryable
            return error

        mixed_up = (
            session.nylas_api != nylas.flavour
            or session.nylas_base_url != nylas.base_url
            or session.provider != PROVIDER
            or session.client_id != client_id
        )
        if mixed_up:
            logger.error("session was started with another Nylas configuration")
            raise end(ServerError(), retryable=False)
        if callback.error is not None:
            raise end(_CALLBACK_ERRORS.get(callback.error, GrantInvalid)(), retryable=False)
        if session.verified is not None:
            # A retry after a transient failure: the grant was verified (the code redeemed) before.
            grant = session.verified
        else:
            grant = self._verify(callback, session, now, end, deadline)
            revoke_due = (session.flow_expires_at or now) + ABANDONED_GRACE_SECONDS
            try:
                self.grants.hold(
                    session_id, binding_hash=binding_hash, grant=grant, revoke_due=revoke_due, now=self.now()
                )
            except SessionUsed as exc:
                session.ends(exc)
                raise
            except ConnectError as exc:
                # Not kept: at least make sure the grant is revoked if the flow never completes.
                with contextlib.suppress(ConnectError):
                    self.grants.outbox.enqueue(grant.grant_id, due=revoke_due, now=self.now())
                raise end(exc, retryable=True) from None
        revoker = Revoker(self.grants, nylas, clock=self._clock)
        expected = session.expected_email
        if expected is not None and grant.email.casefold() != expected.casefold():
            logger.warning("the connected mailbox is not the expected one: its grant is revoked")
            error = end(EmailMismatch(), retryable=False)
            revoker.discard(grant.grant_id, deadline=deadline)
            raise error
        tenant_id = self._tenant_of(grant.email, deadline) if self._tenant_of is not None else None
        now = self.now()
        status, missing = lifecycle.status_for(
            lifecycle.VALID, grant.scopes, lifecycle.required_scopes(self.settings)
        )
        record = GrantRecord(
            tenant_id=tenant_id,
            user_id=session.user_id,
            grant_id=grant.grant_id,
            email=grant.email,
            provider=grant.provider,
            status=status,
            scopes=grant.scopes,
            connected_at=now,
            updated_at=now,
            flow_started_at=session.started_at or session.created_at,
            status_changed_at=now,
            missing_scopes=missing,
            metadata=dict(session.metadata or {}),
        )
        try:
            replaced = self.grants.save(record, session_id=session_id, binding_hash=binding_hash)
        except Superseded:
            logger.warning("a newer flow of this user already stored a grant")
            error = end(SessionUsed(), retryable=False)
            revoker.discard(grant.grant_id, deadline=deadline)  # kept if the winner holds it
            raise error from None
        except AccountAlreadyLinked as exc:
            error = end(exc, retryable=False)
            revoker.discard(grant.grant_id, deadline=deadline)  # held by the other user: never revoked
            raise error from None
        except SessionUsed as exc:
            session.ends(exc)
            raise
        except Conflict:
            raise end(UpstreamUnavailable(), retryable=True) from None
        except ConnectError as exc:
            raise end(exc, retryable=True) from None
        if replaced is not None:
            logger.info("the user switched mailboxes: the replaced grant is revoked")
            revoker.revoke(replaced, deadline=deadline)  # best effort; the sweeper retries
        logger.info("flow completed")
        return CallbackOutcome(return_to=return_to, clear_cookie=clear, popup_session=session.popup_id)

    def _verify(
        self,
        callback: CallbackInput,
        session: SessionRecord,
        now: int,
        end: Callable[..., ConnectError],
        deadline: float | None,
    ) -> VerifiedGrant:
        pending = PendingFlow(
            started_at=session.started_at or session.created_at,
            redirect_uri=self.settings.callback_url,
            code_verifier=session.code_verifier,
            state_hash=session.state_hash,
            now=now,
            login_hint=session.login_hint,
        )
        try:
            grant = self.nylas.complete(callback, pending, deadline=deadline)
            if not grant.bound:
                refusal = self._unbound_refusal(session.user_id, grant)
                if refusal is not None:
                    logger.warning("grant not bound to this flow and not this user's")
                    raise refusal
        except (UpstreamUnavailable, ServerError) as exc:
            if isinstance(exc, ExchangeUnanswered):
                self._remember_lost_exchange(session)
            raise end(exc, retryable=True) from None
        except ConnectError as exc:
            raise end(exc, retryable=False) from None
        return grant

    def _remember_lost_exchange(self, session: SessionRecord) -> None:
        """The exchange may have made a grant at Nylas whose id no answer named: a LOST# outbox entry
        has the sweeper revoke the grants of its window that nobody holds, once this flow (and any
        other of that window) can no longer complete. Best effort: the browser's answer never waits
        on it (a failure is logged, and the grant then stays until revoked by hand)."""
        lost = lost_exchange(
            session.state_hash or security.sha256_hex(session.session_id),
            started_at=session.started_at or session.created_at,
            failed_at=self.now(),
            flow_ttl=self.settings.flow_ttl_seconds,
        )
        try:
            self.grants.outbox.remember_lost(lost.key, due=lost.due, now=self.now())
        except ConnectError as exc:
            logger.error("could not record a lost code exchange", extra={"error_code": exc.code})
            return
        logger.warning("lost code exchange recorded: its window is swept later", extra={"due": lost.due})

    def _unbound_refusal(self, user_id: str, grant: VerifiedGrant) -> ConnectError | None:
        """A grant Nylas did not make for THIS flow (beta: another `state`) is accepted only when this
        user already holds it (USER# names it, or its GRANT# guard names the user), or when an earlier
        flow of this user made it: the state Nylas kept on the grant is that flow's (its session,
        still retained, has this user and that state's hash; a first attempt that failed after
        consent, since Nylas keeps the first state on re-authentication). A grant another user holds
        is `account_already_linked`; anything else is `grant_invalid`."""
        current = self.grants.get(user_id)
        if current is not None and current.grant_id == grant.grant_id:
            return None
        owner = self.grants.owner(grant.grant_id)
        if owner == user_id:
            return None
        if owner is not None:
            return AccountAlreadyLinked()
        origin = grant.origin_state
        if origin is not None and security.STATE_RE.match(origin):
            earlier = self.sessions.get(security.session_id_from_state(origin))
            if (
                earlier is not None
                and earlier.user_id == user_id
                and earlier.state_hash is not None
                and hmac.compare_digest(earlier.state_hash, security.sha256_hex(origin))
            ):
                return None
        return GrantInvalid()


def _embedding_options(body: Mapping[str, Any], return_to: str | None) -> tuple[str, bool]:
    """`display` ("redirect" | "popup"; popup needs a return_to: its origin receives the result) and
    `reconnect` (a JSON boolean). Checked before any I/O."""
    display = body.get("display", "redirect")
    if not isinstance(display, str) or display not in DISPLAYS:
        raise InvalidRequest('display must be "redirect" or "popup".')
    if display == "popup" and return_to is None:
        raise InvalidRequest('display "popup" needs a return_to (its origin receives the result).')
    reconnect = body.get("reconnect", False)
    if not isinstance(reconnect, bool):
        raise InvalidRequest("reconnect must be true or false.")
    return display, reconnect


def _optional(body: Mapping[str, Any], name: str, pattern: Any, max_len: int, what: str) -> str | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str) or len(value) > max_len or not pattern.match(value):
        raise InvalidRequest(f"{name} must be {what}.")
    return value


def build_flow(
    settings: Settings,
    *,
    with_nylas: bool = True,
    lazy_nylas_http: bool = False,
    clock: Callable[[], float] = time.time,
    with_tenants: bool = False,
) -> ConnectFlow:
    """Create the container's clients once, at init: DynamoDB and Secrets Manager always; the Nylas
    HTTP stack (httpx, retries, breaker) when the function calls Nylas. `lazy_nylas_http` defers it to
    the first call for a function that may make none (v3 `connect_start` builds the URL locally).
    `with_tenants`: the callback also learns each stored grant's Microsoft tenant (`tenant_id`)."""
    client = dynamodb_client()
    secrets_client()  # the Secrets Manager client, created now rather than in the first request
    secrets = SecretsProvider(settings)
    port: NylasPort | None = None
    if with_nylas:

        def nylas_http() -> NylasHttp:
            from teams_connect.adapters.nylas.http import NylasHttp

            return NylasHttp(settings.nylas_base_url, read_timeout=settings.nylas_read_timeout)

        if settings.nylas_api == "v3":
            from teams_connect.adapters.nylas.v3 import V3Adapter

            if lazy_nylas_http:
                port = V3Adapter(settings, secrets, http_factory=nylas_http)
            else:
                port = V3Adapter(settings, secrets, nylas_http())
        else:
            from teams_connect.adapters.nylas.beta import BetaAdapter

            port = BetaAdapter(settings, secrets, nylas_http())  # beta start calls Nylas
    tenant_of: Callable[[str, float | None], str | None] | None = None
    if with_tenants:
        # The grant's tenant, from its mailbox's domain (Microsoft's discovery document), looked up by
        # the callback when it stores a grant: its HTTP client is created now, at init.
        from teams_connect.adapters.microsoft import MicrosoftIdentity

        identity = MicrosoftIdentity(
            settings.microsoft_login_url, read_timeout=settings.microsoft_read_timeout_ms / 1000
        )
        identity.warm()

        def tenant_of(email: str, deadline: float | None) -> str | None:
            return identity.tenant_of_email(email, deadline=deadline)

    return ConnectFlow(
        settings,
        SessionStore(settings.sessions_table, client),
        GrantStore(settings.grants_table, settings.sessions_table, client),
        secrets,
        port,
        clock=clock,
        tenant_of=tenant_of,
    )
