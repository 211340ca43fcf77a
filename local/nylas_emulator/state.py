"""The emulator's in-memory store: one lock, plain dataclasses, a clock that tests can move forward.

Handlers run on uvicorn's event loop, but the store is also read by tests and by ``serve_in_thread``
callers from other threads, so every access goes through ``Store.lock`` (re-entrant: a handler may hold
it around a read-modify-write sequence that calls the store's own methods).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

JSON = dict[str, Any]
Flavour = Literal["v3", "beta"]


def new_id() -> str:
    return str(uuid.uuid4())


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def mask(_secret: str) -> str:
    return "********"


@dataclass
class Grant:
    id: str
    provider: str
    email: str
    scope: list[str]
    created_at: int
    updated_at: int
    state: str | None
    grant_status: str = "valid"
    verified: bool = False
    account_id: str | None = None
    provider_user_id: str = field(default_factory=new_id)
    settings: JSON = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def to_v3(self) -> JSON:
        data: JSON = {
            "id": self.id,
            "provider": self.provider,
            "grant_status": self.grant_status,
            "email": self.email,
            "scope": list(self.scope),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "provider_user_id": self.provider_user_id,
            "settings": dict(self.settings),
            "blocked": False,
            "ip": "127.0.0.1",
            "user_agent": "nylas-emulator",
        }
        if self.state is not None:
            data["state"] = self.state
        if self.account_id is not None:
            data["account_id"] = self.account_id
        return data

    def to_beta(self) -> JSON:
        return {
            "id": self.id,
            "provider": self.provider,
            "email": self.email,
            "grant_status": self.grant_status,
            "scope": list(self.scope),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "state": self.state,
            "account_id": self.account_id,
            "ip": "127.0.0.1",
            "user_agent": "nylas-emulator",
            "settings": dict(self.settings),
            "metadata": dict(self.metadata),
        }


@dataclass
class Connector:
    provider: str
    name: str
    settings: JSON  # includes client_secret; never rendered as is
    scope: list[str]
    created_at: int
    active_credential_id: str | None = None

    def to_v3(self) -> JSON:
        data: JSON = {
            "name": self.name,
            "provider": self.provider,
            "settings": {k: v for k, v in self.settings.items() if k != "client_secret"},
            "scope": list(self.scope),
        }
        if self.active_credential_id is not None:
            data["active_credential_id"] = self.active_credential_id
        return data

    def masked(self) -> JSON:
        data = self.to_v3()
        if "client_secret" in self.settings:
            data["settings"]["client_secret"] = mask(self.settings["client_secret"])
        return data


@dataclass
class RedirectUri:
    id: str
    url: str
    platform: str
    settings: JSON | None = None

    def to_v3(self) -> JSON:
        data: JSON = {"id": self.id, "url": self.url, "platform": self.platform}
        if self.settings is not None:
            data["settings"] = dict(self.settings)
        return data


@dataclass
class Integration:
    provider: str
    name: str
    settings: JSON  # includes client_secret
    redirect_uris: list[str]
    expires_in: int
    scope: list[str]
    created_at: int
    updated_at: int

    def to_beta(self) -> JSON:
        return {
            "id": self.provider,
            "name": self.name,
            "provider": self.provider,
            "settings": {k: v for k, v in self.settings.items() if k != "client_secret"},
            "redirect_uris": list(self.redirect_uris),
            "expires_in": self.expires_in,
            "scope": list(self.scope),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def masked(self) -> JSON:
        data = self.to_beta()
        data["settings"]["client_secret"] = mask(str(self.settings.get("client_secret", "")))
        return data


@dataclass
class PendingLogin:
    """A login started at ``/v3/connect/auth`` or beta ``POST /connect/auth``, waiting on the consent page."""

    id: str
    flavour: Flavour
    provider: str
    redirect_uri: str
    state: str | None
    scope: list[str]
    login_hint: str | None
    created_at: float
    expires_at: float
    # v3 only
    client_id: str = ""
    access_type: str = "online"
    code_challenge: str | None = None
    code_challenge_method: str = "plain"
    # beta only
    account_id: str | None = None
    used: bool = False
    #: Set when the user chose Allow but their tenant requires an administrator's approval: the login
    #: then waits on the "Need admin approval" page (entra.py) for this email's decision.
    approval_email: str | None = None


@dataclass
class Tenant:
    """A Microsoft Entra tenant: one per email domain (entra.py)."""

    tenant_id: str
    domain: str
    user_consent: Literal["allowed", "admin_only"]
    #: Azure app client ids present in the tenant (a service principal exists): after an
    #: administrator's consent, or after a user's own consent where the policy allows it.
    apps: set[str] = field(default_factory=set)
    #: Azure app client ids an administrator consented to for the whole tenant.
    admin_consented_apps: set[str] = field(default_factory=set)
    consented_at: int | None = None

    def to_json(self) -> JSON:
        return {
            "tenant_id": self.tenant_id,
            "domain": self.domain,
            "user_consent": self.user_consent,
            "admin_consented": bool(self.admin_consented_apps),
        }


@dataclass
class AuthCode:
    code: str
    grant_id: str
    client_id: str
    redirect_uri: str
    scope: list[str]
    access_type: str
    code_challenge: str | None
    code_challenge_method: str
    expires_at: float
    used: bool = False


@dataclass
class Token:
    value: str
    kind: Literal["access", "refresh"]
    grant_id: str
    issued_at: int
    expires_at: int | None


@dataclass
class Fault:
    method: str
    path: str
    remaining: int
    status: int | None
    body: Any
    headers: dict[str, str]
    delay_ms: int
    drop: bool

    def to_json(self) -> JSON:
        return {
            "method": self.method,
            "path": self.path,
            "remaining": self.remaining,
            "status": self.status,
            "body": self.body,
            "headers": dict(self.headers),
            "delay_ms": self.delay_ms,
            "drop": self.drop,
        }


class Store:
    """All emulator state. ``reset()`` empties it; the configuration lives elsewhere and survives."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clock_offset = 0.0
            self.grants: dict[str, Grant] = {}
            self.connectors: dict[str, Connector] = {}
            self.redirect_uris: dict[str, RedirectUri] = {}
            self.integrations: dict[str, Integration] = {}
            self.logins: dict[str, PendingLogin] = {}
            self.tenants: dict[str, Tenant] = {}  # by lower-case domain (entra.py)
            self.codes: dict[str, AuthCode] = {}
            self.tokens: dict[str, Token] = {}
            self.events: dict[str, list[JSON]] = {}
            self.faults: list[Fault] = []
            self.calls: Counter[str] = Counter()
            dispatcher = getattr(self, "webhook_dispatcher", None)
            if dispatcher is not None:  # webhooks.Dispatcher: destinations, held and queued deliveries
                dispatcher.reset()

    # -- clock ---------------------------------------------------------------------------------------
    def now(self) -> float:
        with self.lock:
            return self._clock() + self.clock_offset

    def now_int(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    # -- grants --------------------------------------------------------------------------------------
    def grant_by_email(self, email: str) -> Grant | None:
        key = email.lower()
        with self.lock:
            return next((g for g in self.grants.values() if g.email.lower() == key), None)

    def upsert_grant(
        self, *, email: str, provider: str, scope: list[str], state: str | None, account_id: str | None = None
    ) -> Grant:
        """One grant per email address: re-authentication keeps the id, refreshes scope and status."""
        with self.lock:
            now = self.now_int()
            grant = self.grant_by_email(email)
            if grant is None:
                grant = Grant(
                    id=new_id(),
                    provider=provider,
                    email=email,
                    scope=list(scope),
                    created_at=now,
                    updated_at=now,
                    state=state,
                    account_id=account_id,
                )
                self.grants[grant.id] = grant
            else:
                grant.scope = list(scope)
                grant.grant_status = "valid"
                grant.updated_at = now
                if account_id is not None:
                    grant.account_id = account_id
            return grant

    def delete_grant(self, grant_id: str) -> bool:
        """Permanent: the grant, its codes, tokens and events disappear; a later login gets a new id."""
        with self.lock:
            if self.grants.pop(grant_id, None) is None:
                return False
            self.codes = {k: c for k, c in self.codes.items() if c.grant_id != grant_id}
            self.tokens = {k: t for k, t in self.tokens.items() if t.grant_id != grant_id}
            self.events.pop(grant_id, None)
            return True

    # -- logins and codes ----------------------------------------------------------------------------
    def usable_login(self, login_id: str, flavour: Flavour) -> PendingLogin | None:
        with self.lock:
            login = self.logins.get(login_id)
            if login is None or login.flavour != flavour or login.used or login.expires_at <= self.now():
                return None
            return login

    def issue_token(self, kind: Literal["access", "refresh"], grant_id: str, ttl: int | None) -> Token:
        with self.lock:
            now = self.now_int()
            token = Token(
                value=new_secret(),
                kind=kind,
                grant_id=grant_id,
                issued_at=now,
                expires_at=None if ttl is None else now + ttl,
            )
            self.tokens[token.value] = token
            return token

    # -- faults and counters -------------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path == path and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
            return None

    def count_call(self, key: str) -> None:
        with self.lock:
            self.calls[key] += 1

    # -- debugging -----------------------------------------------------------------------------------
    def snapshot(self) -> JSON:
        """Everything worth seeing, without secrets (client secrets masked, no tokens or codes)."""
        with self.lock:
            now = self.now()
            return {
                "now": int(now),
                "clock_offset_seconds": self.clock_offset,
                "grants": [{**g.to_v3(), "verified": g.verified} for g in self.grants.values()],
                "connectors": [c.masked() for c in self.connectors.values()],
                "redirect_uris": [r.to_v3() for r in self.redirect_uris.values()],
                "integrations": [i.masked() for i in self.integrations.values()],
                "pending_logins": sum(
                    1 for lg in self.logins.values() if not lg.used and lg.expires_at > now
                ),
                "unused_codes": sum(1 for c in self.codes.values() if not c.used and c.expires_at > now),
                "tokens": len(self.tokens),
                "events": {grant_id: len(events) for grant_id, events in self.events.items()},
                "faults": [f.to_json() for f in self.faults],
                "tenants": [t.to_json() for t in self.tenants.values()],
            }
