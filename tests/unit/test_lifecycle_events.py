"""Grants table stream → lifecycle events: the mapping, stable ids, partial failures, the function."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from teams_connect.adapters.publisher import publish
from teams_connect.config import Settings
from teams_connect.rules import lifecycle
from teams_connect.rules.lifecycle import event_for, event_id_of, missing_scopes, required_scopes, status_for

from .conftest import ROOT, Aws, FakeContext, load_handler

T0 = 1_800_000_000
# The grants table's stream, as in events/grant_events/*.json (the function's GRANTS_STREAM_ARN).
STREAM = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/teams-connect-GrantsTable/stream/2026-11-27T10:00:00.000"
)


def image(
    status: str = "valid", *, grant: str = "g-1", connected: int = T0, changed: int = T0
) -> dict[str, Any]:
    return {
        "pk": {"S": "USER#u1"},
        "user_id": {"S": "u1"},
        "grant_id": {"S": grant},
        "email": {"S": "ada@x.example"},
        "status": {"S": status},
        "connected_at": {"N": str(connected)},
        "updated_at": {"N": str(changed)},
        "status_changed_at": {"N": str(changed)},
    }


def rec(
    name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, seq: str = "100"
) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "Keys": {"pk": (new or old or {}).get("pk", {"S": "USER#u1"})},
        "SequenceNumber": seq,
        "ApproximateCreationDateTime": T0 + 5,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return {
        "eventID": f"ev-{seq}",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "eventSourceARN": STREAM,
        "dynamodb": dynamodb,
    }


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        ("INSERT", None, image(), "Grant Connected"),
        ("MODIFY", image("expired"), image("valid", changed=T0 + 9), "Grant Reconnected"),
        ("MODIFY", image("valid"), image("valid", grant="g-2", connected=T0 + 9), "Grant Reconnected"),
        ("MODIFY", image("valid"), image("valid", connected=T0 + 9), "Grant Reconnected"),
        ("MODIFY", image("valid"), image("expired", changed=T0 + 9), "Grant Expired"),
        ("MODIFY", image("valid"), image("revoked", changed=T0 + 9), "Grant Revoked"),
        ("MODIFY", image("valid"), image("needs_reauth", changed=T0 + 9), "Grant Needs Reauth"),
        ("REMOVE", image("valid"), None, "Grant Disconnected"),
        ("MODIFY", image("valid"), image("valid"), None),  # e.g. another feature's field changed
        ("MODIFY", image("expired"), image("expired", changed=T0), None),  # a later expired: no news
    ],
)
def test_detail_type_from_old_and_new_images(
    name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, expected: str | None
) -> None:
    event = event_for(rec(name, old, new))
    assert (event.detail_type if event else None) == expected


def test_detail_carries_the_contract_fields_and_a_stable_id() -> None:
    record = rec("MODIFY", image("valid"), image("expired", changed=T0 + 9), seq="4242")
    event = event_for(record)
    assert event is not None
    assert event.detail() == {
        "event_id": event_id_of(record),
        "user_id": "u1",
        "grant_id": "g-1",
        "email": "ada@x.example",
        "status": "expired",
        "occurred_at": "2027-01-15T08:00:09Z",
        "metadata": {},
    }
    again = event_for(json.loads(json.dumps(record)))  # the same record delivered again
    assert again is not None
    assert again.event_id == event.event_id
    other = event_for(rec("MODIFY", image("valid"), image("expired", changed=T0 + 9), seq="4243"))
    assert other is not None
    assert other.event_id != event.event_id
    gone = event_for(rec("REMOVE", image("valid"), None))
    assert gone is not None
    assert (gone.status, gone.occurred_at) == ("disconnected", "2027-01-15T08:00:05Z")


def test_items_other_than_grant_records_make_no_event() -> None:
    for pk in ("GRANT#g-1", "NOTIFICATION#abc"):
        item = {"pk": {"S": pk}, "owner": {"S": "u1"}}
        assert event_for(rec("INSERT", None, item)) is None
        assert event_for(rec("REMOVE", item, None)) is None


def test_scopes_rules() -> None:
    assert missing_scopes(["Calendars.ReadWrite"], ["Calendars.ReadWrite", "OnlineMeetings.ReadWrite"]) == (
        "OnlineMeetings.ReadWrite",
    )
    granted = ["https://graph.microsoft.com/CALENDARS.READWRITE", "onlinemeetings.readwrite"]
    assert missing_scopes(granted, ["Calendars.ReadWrite", "OnlineMeetings.ReadWrite", "openid"]) == ()
    assert missing_scopes([], ["Calendars.ReadWrite"]) == ()  # Nylas did not say: not "missing"
    assert status_for("valid", ["User.Read"], ["Calendars.ReadWrite"]) == (
        "needs_reauth",
        ("Calendars.ReadWrite",),
    )
    assert status_for("expired", ["User.Read"], ["Calendars.ReadWrite"]) == (
        "expired",
        ("Calendars.ReadWrite",),
    )


def test_required_scopes_follow_the_deployment(aws: Aws) -> None:
    assert required_scopes(Settings.from_env(aws.env())) == lifecycle.DEFAULT_REQUIRED_V3
    added = Settings.from_env(aws.env(NYLAS_SCOPES="Calendars.ReadWrite,Mail.Read"))
    assert required_scopes(added) == ("Calendars.ReadWrite", "Mail.Read")
    assert required_scopes(Settings.from_env(aws.env(NYLAS_API="beta"))) == ()


class FakeEvents:
    """put_events that fails whole calls or single entries as told."""

    def __init__(self, *, fail_calls: int = 0, fail_entries: set[str] | None = None) -> None:
        self.fail_calls = fail_calls
        self.fail_entries = fail_entries or set()
        self.sent: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        if self.fail_calls:
            self.fail_calls -= 1
            raise EndpointConnectionError(endpoint_url="https://events.example")
        out = []
        for e in Entries:
            if json.loads(e["Detail"])["grant_id"] in self.fail_entries:
                out.append({"ErrorCode": "InternalFailure", "ErrorMessage": "x"})
            else:
                self.sent.append(e)
                out.append({"EventId": f"id-{len(self.sent)}"})
        return {"FailedEntryCount": sum("ErrorCode" in o for o in out), "Entries": out}


def batch(n: int) -> list[dict[str, Any]]:
    return [rec("INSERT", None, image(grant=f"g-{i}"), seq=str(100 + i)) for i in range(n)]


def test_publish_sends_in_chunks_of_ten_on_the_bus() -> None:
    client = FakeEvents()
    failed, sent = publish(batch(23), client=client, bus="apps", sources={STREAM})
    assert (failed, sent) == ([], 23)
    assert {e["EventBusName"] for e in client.sent} == {"apps"}
    assert {e["Source"] for e in client.sent} == {"teams-connect"}
    assert [json.loads(e["Detail"])["grant_id"] for e in client.sent] == [f"g-{i}" for i in range(23)]


def test_failed_entries_and_failed_calls_are_reported_not_lost() -> None:
    failed, sent = publish(
        batch(12), client=FakeEvents(fail_entries={"g-3"}), bus="default", sources={STREAM}
    )
    assert (failed, sent) == (["103"], 11)
    failed, sent = publish(batch(12), client=FakeEvents(fail_calls=1), bus="default", sources={STREAM})
    assert (failed, sent) == ([str(100 + i) for i in range(10)], 2)


def test_a_crash_between_write_and_publish_loses_nothing() -> None:
    """The write is in the stream whatever happens to the publisher: the retried batch publishes it,
    with the same event_id, so a subscriber that saw a first copy can drop the second."""
    records = batch(3)
    down = FakeEvents(fail_calls=1)
    failed, _ = publish(records, client=down, bus="default", sources={STREAM})
    assert failed == ["100", "101", "102"]
    retry_from = records[[str((r["dynamodb"])["SequenceNumber"]) for r in records].index(min(failed)) :]
    failed, sent = publish(retry_from, client=down, bus="default", sources={STREAM})
    assert (failed, sent) == ([], 3)
    first = [json.loads(e["Detail"])["event_id"] for e in down.sent]
    assert first == [event_id_of(r) for r in records]


def test_function_reports_batch_item_failures(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENT_BUS_NAME", "apps-bus")
    monkeypatch.setenv("GRANTS_STREAM_ARN", STREAM)
    app = load_handler("grant_events")
    fake = FakeEvents(fail_entries={"g-1"})
    monkeypatch.setattr(app, "client", fake)
    sample = json.loads((ROOT / "events" / "grant_events" / "expired.json").read_text())
    assert app.lambda_handler(sample, FakeContext()) == {"batchItemFailures": []}
    assert json.loads(fake.sent[0]["Detail"])["status"] == "expired"
    assert fake.sent[0]["DetailType"] == "Grant Expired"
    assert fake.sent[0]["EventBusName"] == "apps-bus"
    answer = app.lambda_handler({"Records": batch(2)}, FakeContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "101"}]}


def test_g6_records_not_from_the_grants_stream_are_never_published() -> None:
    """Security review 3, G6: a forged MODIFY (`USER#ceo` revoked) passed by whoever may invoke the
    function is dropped; so is one naming another table's stream."""
    forged = rec("MODIFY", image("valid"), image("revoked", changed=T0 + 9), seq="900")
    client = FakeEvents()
    for record in (
        {k: v for k, v in forged.items() if k != "eventSourceARN"},
        {**forged, "eventSourceARN": STREAM.replace("GrantsTable", "OtherTable")},
        {**forged, "eventSource": "aws:kinesis"},
    ):
        assert publish([record], client=client, bus="apps", sources={STREAM}) == ([], 0)
    assert client.sent == []
    assert publish([forged], client=client, bus="apps", sources={STREAM}) == ([], 1)
