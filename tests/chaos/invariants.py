"""The campaign's invariants (issue 19, (a)-(e)), as pure functions over what a quiet stack shows.

Each check returns the violations it found (empty: it holds) and counts what it checked, so that a
run can say how many facts it verified. The inputs are plain data read from the stack's public
surfaces (tests/chaos/harness.py): the Nylas side (the emulator's grants), the grants table (USER#
records, GRANT# guards, REVOKE# outbox, its change stream) and each event sink.

The event oracle (`expected_event`) is the contract's rule for which change of a grant record is a
lifecycle event (contract.md "Events"), written here independently of teams_connect.rules.lifecycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teams_connect.adapters.store.grants import mailbox_key

#: The scopes a v3 deployment requires when `NylasScopes` is empty (contract.md "Grants").
REQUIRED_SCOPES = ("Calendars.ReadWrite", "OnlineMeetings.ReadWrite")
LIFECYCLE_EVENT = {
    "expired": "Grant Expired",
    "revoked": "Grant Revoked",
    "needs_reauth": "Grant Needs Reauth",
}


@dataclass(frozen=True)
class NylasGrant:
    id: str
    email: str
    status: str  # valid | invalid
    scopes: tuple[str, ...]
    verified: bool  # its code was exchanged: the service has seen it, or may have (a lost answer)
    created_at: int = 0  # Nylas's created_at (epoch seconds)


@dataclass(frozen=True)
class Record:
    user_id: str
    grant_id: str
    email: str
    status: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Event:
    event_id: str
    detail_type: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer the campaign got from a public route."""

    step: int
    route: str
    status: int
    bad_input: bool
    faults_possible: bool  # a fault was armed or had fired recently when it was sent


@dataclass
class Tally:
    checked: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def check(self, invariant: str, ok: bool, message: str) -> None:
        self.checked[invariant] = self.checked.get(invariant, 0) + 1
        if not ok:
            self.violations.append(f"({invariant}) {message}")


def _norm(scope: str) -> str:
    return scope.strip().lower().removeprefix("https://graph.microsoft.com/")


def nylas_says(grant: NylasGrant | None, required: Sequence[str] = REQUIRED_SCOPES) -> str:
    """The record status that matches what Nylas says of a grant."""
    if grant is None:
        return "revoked"
    if grant.status != "valid":
        return "expired"
    have = {_norm(s) for s in grant.scopes}
    return "needs_reauth" if have and any(_norm(s) not in have for s in required) else "valid"


def check_grants(
    tally: Tally,
    nylas_before_sweep: Iterable[NylasGrant],
    outbox_before_sweep: set[str],
    nylas_after_sweep: Iterable[NylasGrant],
    records: Iterable[Record],
    lost_before_sweep: Iterable[tuple[int, int]] = (),
) -> None:
    """(a) every grant alive at Nylas (that the service has seen) is held by exactly one record, or is
    in the revoke outbox (a REVOKE# entry, or created in the window of a lost exchange's LOST# entry)
    and gone after one sweep."""
    holders: dict[str, list[str]] = {}
    for record in records:
        holders.setdefault(record.grant_id, []).append(record.user_id)
    after = {g.id for g in nylas_after_sweep}
    windows = list(lost_before_sweep)
    for grant in nylas_before_sweep:
        if not grant.verified:
            continue  # consent given, code never exchanged: the service never learnt of it
        held = holders.get(grant.id, [])
        tally.check("a", len(held) <= 1, f"grant {grant.email} is held by {len(held)} records: {held}")
        if held:
            tally.check("a", grant.id in after, f"the held grant of {grant.email} was revoked by the sweep")
            continue
        in_a_window = any(since <= grant.created_at <= before for since, before in windows)
        tally.check(
            "a",
            grant.id in outbox_before_sweep or in_a_window,
            f"grant {grant.email} is alive at Nylas, held by no record, and not in the revoke outbox",
        )
        tally.check(
            "a", grant.id not in after, f"grant {grant.email} is still alive at Nylas after one sweep"
        )


def check_records(
    tally: Tally,
    records: Sequence[Record],
    guards: Mapping[str, str],
    users: Iterable[str],
    mailboxes: Mapping[str, str] | None = None,
) -> None:
    """(b) no two records share a grant or a mailbox; each record's GRANT# guard (and, when given,
    its MAILBOX# guard) names its owner, and no guard of these users names a grant or mailbox their
    record does not hold."""
    by_grant: dict[str, str] = {}
    by_email: dict[str, str] = {}
    for record in records:
        other = by_grant.setdefault(record.grant_id, record.user_id)
        tally.check("b", other == record.user_id, f"{record.user_id} and {other} share a grant")
        other = by_email.setdefault(record.email.lower(), record.user_id)
        tally.check("b", other == record.user_id, f"{record.user_id} and {other} share {record.email}")
        tally.check(
            "b",
            guards.get(record.grant_id) == record.user_id,
            f"the guard of {record.user_id}'s grant names {guards.get(record.grant_id)!r}",
        )
        if mailboxes is not None:
            owner = mailboxes.get(str(mailbox_key(record.email)))
            tally.check(
                "b", owner == record.user_id, f"the guard of {record.user_id}'s mailbox names {owner!r}"
            )
    mine = set(users)
    held = {r.grant_id for r in records}
    for grant_id, owner in guards.items():
        if owner in mine:
            tally.check("b", grant_id in held, f"a guard names {owner} for a grant no record holds")
    held_mailboxes = {str(mailbox_key(r.email)) for r in records}
    for key, owner in (mailboxes or {}).items():
        if owner in mine:
            tally.check("b", key in held_mailboxes, f"a guard names {owner} for a mailbox no record holds")


def check_statuses(tally: Tally, records: Iterable[Record], nylas: Iterable[NylasGrant]) -> None:
    """(c) each record's status is what Nylas says of its grant."""
    grants = {g.id: g for g in nylas}
    for record in records:
        grant = grants.get(record.grant_id)
        expected = nylas_says(grant)
        nylas_view = "gone" if grant is None else f"{grant.status}, scopes {list(grant.scopes)}"
        tally.check(
            "c",
            record.status == expected,
            f"{record.user_id} ({record.email}) is {record.status!r}; Nylas says {nylas_view} → {expected!r}",
        )


def _s(image: Mapping[str, Any], name: str) -> str:
    value = image.get(name)
    return str(value["S"]) if isinstance(value, Mapping) and "S" in value else ""


def _n(image: Mapping[str, Any], name: str) -> str:
    value = image.get(name)
    return str(value["N"]) if isinstance(value, Mapping) and "N" in value else ""


def event_id_of(stream_record: Mapping[str, Any]) -> str:
    """The event id of a stream record: stable across redeliveries (contract: "event_id"; the
    publisher derives it from the record's eventID and sequence number)."""
    seed = f"{stream_record.get('eventID', '')}/{stream_record['dynamodb'].get('SequenceNumber', '')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def expected_event(stream_record: Mapping[str, Any]) -> tuple[str, dict[str, str]] | None:
    """(detail type, expected detail fields) of the lifecycle event a change of a USER# record is,
    per the contract; None when the change is no lifecycle step."""
    dynamodb = stream_record["dynamodb"]
    old: Mapping[str, Any] = dynamodb.get("OldImage") or {}
    new: Mapping[str, Any] = dynamodb.get("NewImage") or {}
    name = stream_record.get("eventName")
    if name == "REMOVE":
        return "Grant Disconnected", {"user_id": _s(old, "user_id"), "grant_id": _s(old, "grant_id")}
    fields = {"user_id": _s(new, "user_id"), "grant_id": _s(new, "grant_id"), "status": _s(new, "status")}
    if name == "INSERT":
        return "Grant Connected", fields
    status, old_status = _s(new, "status"), _s(old, "status")
    new_flow = _s(old, "grant_id") != _s(new, "grant_id") or _n(old, "connected_at") != _n(
        new, "connected_at"
    )
    if status == "valid":
        return ("Grant Reconnected", fields) if old_status != "valid" or new_flow else None
    if status in LIFECYCLE_EVENT and (status != old_status or new_flow):
        return LIFECYCLE_EVENT[status], fields
    return None


def check_events(
    tally: Tally,
    sink: str,
    stream: Sequence[Mapping[str, Any]],
    events: Sequence[Event],
    users: Iterable[str],
) -> None:
    """(d) every change of a record was published once per event id (redeliveries carry the same id
    and the same content), and nothing was published for no change; the events of each user, folded
    in order, end where the record is."""
    mine = set(users)
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    for record in stream:
        found = expected_event(record)
        if found is not None:
            expected[event_id_of(record)] = found
    copies: dict[str, list[Event]] = {}
    for event in events:
        if event.detail.get("user_id") in mine:
            copies.setdefault(event.event_id, []).append(event)
    for event_id, (detail_type, fields) in expected.items():
        got = copies.get(event_id, [])
        tally.check("d", bool(got), f"{sink}: no {detail_type} for {fields} (event {event_id[:8]})")
        for event in got:
            same = event.detail_type == detail_type and all(
                event.detail.get(k) == v for k, v in fields.items()
            )
            tally.check(
                "d",
                same,
                f"{sink}: event {event_id[:8]} is {event.detail_type} {dict(event.detail)}, "
                f"the change was {detail_type} {fields}",
            )
        tally.check(
            "d",
            all(e == got[0] for e in got),
            f"{sink}: the copies of event {event_id[:8]} differ",
        )
    changes = {event_id_of(r): r for r in stream}
    for event_id, got in copies.items():
        change = changes.get(event_id)
        tally.check(
            "d",
            event_id in expected,
            f"{sink}: {got[0].detail_type} {dict(got[0].detail)} was published for "
            + (
                "no change of a record"
                if change is None
                else f"a change that is no lifecycle step: {_diff(change)}"
            ),
        )


def _diff(stream_record: Mapping[str, Any]) -> str:
    dynamodb = stream_record["dynamodb"]
    old: Mapping[str, Any] = dynamodb.get("OldImage") or {}
    new: Mapping[str, Any] = dynamodb.get("NewImage") or {}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return f"{stream_record.get('eventName')} of {', '.join(changed) or 'nothing'}: " + ", ".join(
        f"{k} {old.get(k)} -> {new.get(k)}"
        for k in changed
        if k in ("status", "grant_id", "connected_at", "email")
    )


def check_answers(tally: Tally, answers: Iterable[Answer]) -> None:
    """(e) no request was answered 5xx for bad input, nor at all while no fault could explain it."""
    for answer in answers:
        if answer.bad_input:
            tally.check(
                "e",
                answer.status < 500 or answer.faults_possible,
                f"step {answer.step}: bad input to {answer.route} answered {answer.status}",
            )
            tally.check(
                "e",
                400 <= answer.status < 500 or answer.faults_possible,
                f"step {answer.step}: bad input to {answer.route} answered {answer.status}, not a 4xx",
            )
        else:
            tally.check(
                "e",
                answer.status < 500 or answer.faults_possible,
                f"step {answer.step}: {answer.route} answered {answer.status} with no fault injected",
            )
