"""Revoking grants this deployment no longer holds, durably (the REVOKE# outbox of `store`).

A grant is let go of when a user switches mailboxes (the old one), when a newer flow of the same
user wins, when the connected mailbox is not the `expected_email`, and when a flow whose grant was
verified never completes. The entry is written in the same transaction that lets go of the grant
(or, for a flow that may still complete, when the grant is verified, due after the flow expires);
the grant is then revoked right away, best effort, and the scheduled sweeper retries every entry
that is due until Nylas confirms.

One rule protects the users: a grant whose GRANT# guard names an owner is never revoked (it is
someone's current grant: the same mailbox re-linked, or another user's mailbox); its entry is
simply dropped. The check and the revoke are one claim (security review 3, G7): a transaction checks
that no guard exists and leases the REVOKE# entry, and a re-link (`save`) cannot cancel a leased entry,
so a grant re-linked while its DELETE is in flight is not kept as if it were live.

A v3 code exchange that may have completed at Nylas without an answer (a read timeout, a dropped
connection, a 5xx) leaves a grant whose id was never learnt. The callback then records a LOST# entry
with the window in which that grant was created (from the flow's start to the failure, `LOST_MARGIN_SECONDS`
either side for clock skew), due once every flow that may still keep a grant of that window has ended
(`lost_exchange`). The sweeper then lists the application's Microsoft grants created in the window and
enqueues and revokes every one that no GRANT# guard names, through the same claim; a grant someone
holds (the user retried and connected: Nylas keeps a re-authenticated grant's id and created_at) is
kept. This relies on the deployment owning its Nylas application (docs/security.md).

A secret the sweeper cannot read (e.g. no `kms:Decrypt` on a customer-managed key: security review 3,
G1) fails the sweep (`SweepReport.secret_unreadable`: the function then fails its invocation, which
the Lambda `Errors` alarm sees); every failed attempt counts in `RevokeFailed`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from teams_connect.adapters.nylas.port import GrantsCreated, NylasPort
from teams_connect.adapters.secrets import SecretInvalid, SecretUnavailable
from teams_connect.adapters.store.grants import GrantStore
from teams_connect.adapters.store.outbox import DueLostExchange, lost_key
from teams_connect.errors import ConnectError, ServerError
from teams_connect.observability import logger
from teams_connect.rules.security import hash_prefix

#: Retry delays after failed attempts (seconds), then every `MAX_BACKOFF` until Nylas confirms.
BACKOFF = (60, 300, 900, 3600)
MAX_BACKOFF = 6 * 3600
#: A verified grant whose flow never completes is revoked this long after the flow expired.
ABANDONED_GRACE_SECONDS = 300
#: A lost exchange's window is widened by this much either side (our clock against Nylas's).
LOST_MARGIN_SECONDS = 60


def next_attempt(now: int, attempts: int) -> int:
    return now + (BACKOFF[attempts] if attempts < len(BACKOFF) else MAX_BACKOFF)


@dataclass(frozen=True)
class LostExchange:
    key: str
    since: int
    before: int
    due: int


def lost_exchange(flow: str, *, started_at: int, failed_at: int, flow_ttl: int) -> LostExchange:
    """The LOST# entry of an exchange that failed at `failed_at` in a flow started at `started_at`.
    Its grant was created at consent, after the start and before the failure: the window is
    [started_at - margin, failed_at + margin]. Due when every flow that may keep a grant created in
    that window has expired (each started before the window's end, so by `before + flow_ttl`), plus the
    grace of an abandoned flow's deferred revoke."""
    since = max(0, started_at - LOST_MARGIN_SECONDS)
    before = failed_at + LOST_MARGIN_SECONDS
    due = before + flow_ttl + ABANDONED_GRACE_SECONDS
    return LostExchange(lost_key(flow, since=since, before=before), since, before, due)


@dataclass(frozen=True)
class SweepReport:
    revoked: int = 0
    kept: int = 0  # held again by someone (entry dropped), or claimed by another attempt: nothing revoked
    failed: int = 0
    oldest_due_age: int = 0  # seconds the oldest due entry has waited past its due time
    secret_unreadable: bool = False  # the Nylas secret could not be read: the sweep stopped


class Revoker:
    def __init__(
        self, grants: GrantStore, nylas: NylasPort, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.grants = grants
        self.nylas = nylas
        self._clock = clock

    def revoke(self, grant_id: str, *, attempts: int = 0, deadline: float | None = None) -> str:
        """One attempt for one outbox entry → "revoked" | "kept" | "failed" (entry postponed)."""
        now = int(self._clock())
        try:
            claim = (
                "held"
                if self.grants.owner(grant_id) is not None
                else self.grants.outbox.claim(grant_id, now=now)
            )
            if claim == "held":
                self.grants.outbox.confirmed(grant_id)
                logger.info(
                    "grant held again: pending revoke dropped", extra={"grant": hash_prefix(grant_id)}
                )
                return "kept"
            if claim != "claimed":  # gone meanwhile, or another attempt is revoking it
                return "kept"
            self.nylas.revoke(grant_id, deadline=deadline)
            self.grants.outbox.confirmed(grant_id)
            logger.info("grant revoked at Nylas", extra={"grant": hash_prefix(grant_id)})
            return "revoked"
        except ConnectError as exc:
            logger.warning(
                "revoke failed: retried later", extra={"grant": hash_prefix(grant_id), "error_code": exc.code}
            )
            with contextlib.suppress(ConnectError):  # else the entry stays due: the next sweep retries
                self.grants.outbox.postpone(grant_id, due=next_attempt(now, attempts))
            if isinstance(exc, SecretUnavailable | SecretInvalid):
                raise
            return "failed"

    def discard(self, grant_id: str, *, deadline: float | None = None) -> None:
        """A grant this flow must not keep: enqueue it (due now) and try at once. Never raises."""
        try:
            self.grants.outbox.enqueue(grant_id, due=int(self._clock()), now=int(self._clock()))
        except ConnectError:
            logger.warning("could not enqueue a revoke: the flow's deferred entry covers it")
        with contextlib.suppress(SecretUnavailable, SecretInvalid):  # the sweeper retries (and alarms)
            self.revoke(grant_id, deadline=deadline)

    def sweep(self, *, limit: int = 50, deadline: float | None = None) -> SweepReport:
        now = int(self._clock())
        entries, lost = self.grants.outbox.due_entries(now, limit=limit)
        oldest = max(
            (now - due_at for due_at in [*(e.due_at for e in entries), *(x.due_at for x in lost)]), default=0
        )
        counts = {"revoked": 0, "kept": 0, "failed": 0}
        try:
            for entry in entries:
                if deadline is not None and time.monotonic() > deadline:
                    break
                counts[self.revoke(entry.grant_id, attempts=entry.attempts, deadline=deadline)] += 1
            for exchange in lost:
                if deadline is not None and time.monotonic() > deadline:
                    break
                for outcome in self.settle_lost(exchange, deadline=deadline):
                    counts[outcome] += 1
        except (SecretUnavailable, SecretInvalid):
            logger.error(
                "the Nylas secret cannot be read: sweep stopped", extra={"due": len(entries) + len(lost)}
            )
            counts["failed"] += 1
            return SweepReport(
                counts["revoked"], counts["kept"], counts["failed"], max(0, oldest), secret_unreadable=True
            )
        return SweepReport(counts["revoked"], counts["kept"], counts["failed"], max(0, oldest))

    def settle_lost(self, exchange: DueLostExchange, *, deadline: float | None = None) -> list[str]:
        """A due lost exchange: every grant of its window that no GRANT# guard names is enqueued (due
        now), the entry goes, and each is revoked at once (the REVOKE# entries retry what fails). →
        the outcome of each revoke; ["failed"] when Nylas could not list the window (postponed)."""
        now = int(self._clock())
        try:
            orphans = self._unheld_in(exchange, deadline)
            for grant_id in orphans:
                self.grants.outbox.enqueue(grant_id, due=now, now=now)
            self.grants.outbox.forget_lost(exchange.key)
        except ConnectError as exc:
            logger.warning("lost exchange not settled: retried later", extra={"error_code": exc.code})
            with contextlib.suppress(ConnectError):
                self.grants.outbox.postpone_lost(exchange.key, due=next_attempt(now, exchange.attempts))
            if isinstance(exc, SecretUnavailable | SecretInvalid):
                raise
            return ["failed"]
        logger.info("lost exchange settled", extra={"unheld": len(orphans)})
        return [self.revoke(grant_id, deadline=deadline) for grant_id in orphans]

    def _unheld_in(self, exchange: DueLostExchange, deadline: float | None) -> list[str]:
        if not isinstance(self.nylas, GrantsCreated):
            logger.error("this Nylas flavour cannot list grants: a lost exchange waits")
            raise ServerError()
        created = self.nylas.grants_created(exchange.since, exchange.before, deadline=deadline)
        return [grant_id for grant_id in created if self.grants.owner(grant_id) is None]
