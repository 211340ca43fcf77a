"""The one small interface between the flow and a Nylas flavour, and its value types.

No HTTP library is imported here, so functions that never call Nylas do not pay for httpx.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

PROVIDER = "microsoft"


@dataclass(frozen=True)
class BeginRequest:
    """Everything an adapter needs to send the browser to Nylas."""

    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    login_hint: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class CallbackInput:
    """The callback query after the adapter's syntax checks (no I/O was done to build it).

    `error` is a contract code (`access_denied`, `grant_invalid`, `upstream_unavailable`) when
    Nylas reported a failure; otherwise `code` (v3) or `grant_id` (beta) is set.
    """

    state: str = field(repr=False)
    error: str | None = None
    code: str | None = field(default=None, repr=False)
    grant_id: str | None = None


@dataclass(frozen=True)
class PendingFlow:
    """What the consumed session tells the adapter."""

    started_at: int
    redirect_uri: str
    code_verifier: str | None = field(default=None, repr=False)
    state_hash: str | None = field(default=None, repr=False)
    now: int = 0
    login_hint: str | None = None


@dataclass(frozen=True)
class VerifiedGrant:
    """A grant as Nylas reports it over the back channel (never as the browser claims)."""

    grant_id: str
    email: str
    provider: str
    scopes: tuple[str, ...]
    grant_status: str = "valid"
    #: True when Nylas ties the grant to THIS flow (v3: the PKCE-bound code exchange; beta: the grant's
    #: `state` equals the flow's). A grant that is not bound may be stored only for the user who
    #: already holds it, or whose earlier flow made it (beta re-authentication keeps the first
    #: login's `state`, which names that flow's session).
    bound: bool = True
    #: beta: the `state` Nylas keeps on the grant (never stored; compared only).
    origin_state: str | None = field(default=None, repr=False)


class NylasPort(Protocol):
    flavour: str
    base_url: str

    def client_id(self) -> str:
        """The Nylas application's client id (stored on the session, compared at callback)."""
        ...

    def begin(self, request: BeginRequest, *, deadline: float | None = None) -> str:
        """The URL the browser is sent to (v3: built locally; beta: `POST /connect/auth`)."""
        ...

    def parse_callback(self, query: Mapping[str, str]) -> CallbackInput:
        """Strict syntax checks of the callback query, before any I/O."""
        ...

    def complete(
        self, callback: CallbackInput, pending: PendingFlow, *, deadline: float | None = None
    ) -> VerifiedGrant:
        """Turn a successful callback into a verified grant (v3: code exchange; beta: lookup)."""
        ...

    def revoke(self, grant_id: str, *, deadline: float | None = None) -> None:
        """Revoke the grant at Nylas; an already missing grant is fine."""
        ...


@runtime_checkable
class GrantsCreated(Protocol):
    """A flavour that can list the grants created in a time window (v3: `GET /v3/grants`). The
    sweeper uses it for a lost code exchange, whose grant id was never learnt."""

    def grants_created(self, since: int, before: int, *, deadline: float | None = None) -> list[str]:
        """Ids of this application's Microsoft grants whose `created_at` is in [since, before]."""
        ...
