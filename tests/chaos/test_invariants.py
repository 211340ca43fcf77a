"""The campaign's checkers can fail: each invariant, given a planted violation, reports it (and
passes the consistent case). Pure: no stack."""

from __future__ import annotations

from typing import Any

from teams_connect.adapters.store.grants import mailbox_key
from tests.chaos.invariants import (
    REQUIRED_SCOPES,
    Answer,
    Event,
    NylasGrant,
    Record,
    Tally,
    check_answers,
    check_events,
    check_grants,
    check_records,
    check_statuses,
    event_id_of,
    expected_event,
    nylas_says,
)

FULL = (*REQUIRED_SCOPES, "openid")


def grant(gid: str, email: str, status: str = "valid", scopes: tuple[str, ...] = FULL) -> NylasGrant:
    return NylasGrant(gid, email, status, scopes, verified=True)


def record(user: str, gid: str, email: str, status: str = "valid") -> Record:
    return Record(user, gid, email, status, FULL)


def image(**fields: str) -> dict[str, Any]:
    return {k: ({"N": v} if k == "connected_at" else {"S": v}) for k, v in fields.items()}


def change(name: str, seq: int, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"SequenceNumber": str(seq), "Keys": {"pk": {"S": "USER#u"}}}
    if old:
        dynamodb["OldImage"] = old
    if new:
        dynamodb["NewImage"] = new
    return {"eventID": f"e{seq}", "eventName": name, "dynamodb": dynamodb}


def test_nylas_says() -> None:
    assert nylas_says(None) == "revoked"
    assert nylas_says(grant("g", "m", "invalid")) == "expired"
    assert nylas_says(grant("g", "m")) == "valid"
    assert nylas_says(grant("g", "m", scopes=("Calendars.ReadWrite",))) == "needs_reauth"
    assert (
        nylas_says(
            grant(
                "g",
                "m",
                scopes=("https://graph.microsoft.com/calendars.readwrite", "OnlineMeetings.ReadWrite"),
            )
        )
        == "valid"
    )
    assert nylas_says(grant("g", "m", "invalid", scopes=("Calendars.ReadWrite",))) == "expired"


def test_a_grants_every_alive_grant_is_held_once_or_revoked_by_the_sweep() -> None:
    held, loose, swept = grant("g1", "a"), grant("g2", "b"), grant("g3", "c")
    unseen = NylasGrant("g4", "d", "valid", FULL, verified=False)
    tally = Tally()
    check_grants(tally, [held, loose, swept, unseen], {"g2", "g3"}, [held, loose], [record("u1", "g1", "a")])
    assert tally.violations == ["(a) grant b is still alive at Nylas after one sweep"]

    tally = Tally()
    check_grants(tally, [loose], set(), [], [])
    assert tally.violations == [
        "(a) grant b is alive at Nylas, held by no record, and not in the revoke outbox"
    ]

    tally = Tally()
    check_grants(tally, [held], set(), [held], [record("u1", "g1", "a"), record("u2", "g1", "a")])
    assert len(tally.violations) == 1
    assert "held by 2 records" in tally.violations[0]

    tally = Tally()
    check_grants(tally, [held], set(), [], [record("u1", "g1", "a")])
    assert tally.violations == ["(a) the held grant of a was revoked by the sweep"]

    # a lost exchange: no REVOKE# entry names the grant, but a LOST# window holds its creation
    lost = NylasGrant("g5", "e", "valid", FULL, verified=True, created_at=100)
    tally = Tally()
    check_grants(tally, [lost], set(), [], [], [(40, 100)])
    assert tally.violations == []
    tally = Tally()
    check_grants(tally, [lost], set(), [lost], [], [(40, 100)])
    assert tally.violations == ["(a) grant e is still alive at Nylas after one sweep"]
    tally = Tally()
    check_grants(tally, [lost], set(), [], [], [(101, 160)])
    assert tally.violations == [
        "(a) grant e is alive at Nylas, held by no record, and not in the revoke outbox"
    ]


def test_b_no_shared_grant_or_mailbox_and_the_guards_agree() -> None:
    tally = Tally()
    check_records(
        tally, [record("u1", "g1", "a"), record("u2", "g2", "b")], {"g1": "u1", "g2": "u2"}, ["u1", "u2"]
    )
    assert tally.violations == []
    assert tally.checked["b"] == 8

    tally = Tally()
    check_records(
        tally, [record("u1", "g1", "a"), record("u2", "g2", "A")], {"g1": "u1", "g2": "u2"}, ["u1", "u2"]
    )
    assert tally.violations == ["(b) u2 and u1 share A"]

    tally = Tally()
    check_records(tally, [record("u1", "g1", "a")], {"g1": "u2", "g9": "u1"}, ["u1"])
    assert tally.violations == [
        "(b) the guard of u1's grant names 'u2'",
        "(b) a guard names u1 for a grant no record holds",
    ]

    tally = Tally()
    mailboxes = {str(mailbox_key("a")): "u2", str(mailbox_key("z")): "u1"}
    check_records(tally, [record("u1", "g1", "A")], {"g1": "u1"}, ["u1"], mailboxes)
    assert tally.violations == [
        "(b) the guard of u1's mailbox names 'u2'",
        "(b) a guard names u1 for a mailbox no record holds",
    ]


def test_c_status_is_what_nylas_says() -> None:
    tally = Tally()
    check_statuses(
        tally,
        [record("u1", "g1", "a"), record("u2", "g2", "b", "valid"), record("u3", "g3", "c", "revoked")],
        [grant("g1", "a"), grant("g2", "b", "invalid")],
    )
    assert len(tally.violations) == 1
    assert "u2 (b) is 'valid'; Nylas says invalid" in tally.violations[0]


def test_the_event_oracle_follows_the_contract() -> None:
    a = image(user_id="u", grant_id="g1", status="valid", connected_at="1")
    assert expected_event(change("INSERT", 1, None, a)) == (
        "Grant Connected",
        {"user_id": "u", "grant_id": "g1", "status": "valid"},
    )
    assert expected_event(change("REMOVE", 2, a, None))[0] == "Grant Disconnected"  # type: ignore[index]
    touched = {**a, "notified_at": {"N": "5"}}
    assert expected_event(change("MODIFY", 3, a, touched)) is None  # no lifecycle step
    reconsent = {**a, "connected_at": {"N": "2"}}
    assert expected_event(change("MODIFY", 4, a, reconsent))[0] == "Grant Reconnected"  # type: ignore[index]
    expired = {**a, "status": {"S": "expired"}}
    assert expected_event(change("MODIFY", 5, a, expired))[0] == "Grant Expired"  # type: ignore[index]
    assert expected_event(change("MODIFY", 6, expired, {**expired, "notified_at": {"N": "9"}})) is None
    assert expected_event(change("MODIFY", 7, expired, a))[0] == "Grant Reconnected"  # type: ignore[index]


def test_d_every_change_published_once_per_id_and_nothing_else() -> None:
    a = image(user_id="u", grant_id="g1", status="valid", connected_at="1")
    b = {**a, "status": {"S": "expired"}}
    stream = [
        change("INSERT", 1, None, a),
        change("MODIFY", 2, a, {**a, "x": {"S": "y"}}),
        change("MODIFY", 3, a, b),
    ]
    connected = Event(
        event_id_of(stream[0]), "Grant Connected", {"user_id": "u", "grant_id": "g1", "status": "valid"}
    )
    expired = Event(
        event_id_of(stream[2]), "Grant Expired", {"user_id": "u", "grant_id": "g1", "status": "expired"}
    )

    tally = Tally()
    check_events(tally, "bus", stream, [connected, expired, expired], ["u"])  # a redelivery is fine
    assert tally.violations == []

    tally = Tally()
    check_events(tally, "bus", stream, [connected], ["u"])
    assert tally.violations == [
        "(d) bus: no Grant Expired for {'user_id': 'u', 'grant_id': 'g1', 'status': 'expired'} "
        f"(event {expired.event_id[:8]})"
    ]

    tally = Tally()
    spurious = Event(
        event_id_of(stream[1]), "Grant Reconnected", {"user_id": "u", "grant_id": "g1", "status": "valid"}
    )
    check_events(tally, "bus", stream, [connected, expired, spurious], ["u"])
    assert len(tally.violations) == 1
    assert "a change that is no lifecycle step: MODIFY of x" in tally.violations[0]

    tally = Tally()
    other = Event("f" * 32, "Grant Connected", {"user_id": "u", "grant_id": "g2", "status": "valid"})
    check_events(tally, "bus", stream, [connected, expired, other], ["u"])
    assert len(tally.violations) == 1
    assert "for no change of a record" in tally.violations[0]

    tally = Tally()
    altered = Event(
        expired.event_id, "Grant Expired", {"user_id": "u", "grant_id": "g1", "status": "revoked"}
    )
    check_events(tally, "bus", stream, [connected, expired, altered], ["u"])
    assert any("differ" in v for v in tally.violations)


def test_e_no_5xx_for_bad_input_nor_without_a_fault() -> None:
    tally = Tally()
    check_answers(
        tally,
        [
            Answer(1, "POST /v1/sessions", 400, bad_input=True, faults_possible=False),
            Answer(2, "POST /v1/sessions", 503, bad_input=False, faults_possible=True),
            Answer(3, "GET /v1/grants/{user_id}", 200, bad_input=False, faults_possible=False),
        ],
    )
    assert tally.violations == []
    tally = Tally()
    check_answers(
        tally,
        [
            Answer(4, "POST /nylas/webhooks", 500, bad_input=True, faults_possible=False),
            Answer(5, "GET /connect/start", 302, bad_input=True, faults_possible=False),
            Answer(6, "DELETE /v1/grants/{user_id}", 502, bad_input=False, faults_possible=False),
        ],
    )
    assert tally.violations == [
        "(e) step 4: bad input to POST /nylas/webhooks answered 500",
        "(e) step 4: bad input to POST /nylas/webhooks answered 500, not a 4xx",
        "(e) step 5: bad input to GET /connect/start answered 302, not a 4xx",
        "(e) step 6: DELETE /v1/grants/{user_id} answered 502 with no fault injected",
    ]
