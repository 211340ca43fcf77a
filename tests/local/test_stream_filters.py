"""The stream mappings' `FilterCriteria` (template.yaml) and the local poller that applies them.

Lambda drops a stream record that no filter matches, without an invocation: a filter that is too
narrow would lose an event for good. So every record for which the pure rules make an event must pass
the template's filters (generated records, matched with moto's EventBridge pattern matcher, the
pattern language Lambda's filters use); and the filters must actually drop the steps that make none
(the reason they exist). The poller test runs the filters as the local stack does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from local.aws import client, start_moto
from local.streams import StreamPoller
from local.template import load_template, stream_filters
from moto.events.models import EventPattern

from teams_connect.rules import lifecycle, session_events

TEMPLATE = load_template()


def _matchers(logical_id: str) -> list[EventPattern]:
    return [EventPattern.load(json.dumps(p)) for p in stream_filters(TEMPLATE, logical_id)]


SESSION_FILTERS = _matchers("SessionEventsFunction")
GRANT_FILTERS = _matchers("GrantEventsFunction")


def _passes(filters: list[EventPattern], record: dict[str, Any]) -> bool:
    return any(f.matches_event(record) for f in filters)  # type: ignore[arg-type]


def test_both_stream_functions_have_filters_and_no_other_event_has() -> None:
    assert len(SESSION_FILTERS) == 2
    assert len(GRANT_FILTERS) == 1
    assert stream_filters(TEMPLATE, "RevokeSweeperFunction") == []


# --------------------------------------------------------------------------- generated records

STATUSES = ["pending", "started", "consumed", "completed", "failed", "valid", "expired", "needs_reauth"]
_s = st.builds(lambda v: {"S": v}, st.sampled_from(STATUSES))


@st.composite
def session_records(draw: st.DrawFn) -> dict[str, Any]:
    def image() -> dict[str, Any]:
        item: dict[str, Any] = {"session_id": {"S": "s1"}, "status": draw(_s)}
        if draw(st.booleans()):
            item["kind"] = {"S": draw(st.sampled_from(["admin_consent", "connect", "other"]))}
        if draw(st.booleans()):
            item["user_id"] = {"S": "u1"}
        if draw(st.booleans()):
            item["consented_tenant_id"] = {"S": "7d3a9f1e-1c2b-4e5f-8a9b-0c1d2e3f4a5b"}
        if draw(st.booleans()):
            item["error_code"] = {"S": draw(st.sampled_from(["access_denied", "admin_consent_required"]))}
        return item

    name = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    dynamodb: dict[str, Any] = {
        "Keys": {"session_id": {"S": "s1"}},
        "SequenceNumber": "1",
        "ApproximateCreationDateTime": 1_800_000_000,
    }
    if name != "INSERT":
        dynamodb["OldImage"] = image()
    if name != "REMOVE":
        dynamodb["NewImage"] = image()
    return {"eventID": "e1", "eventName": name, "dynamodb": dynamodb, "eventSourceARN": "arn:s"}


@st.composite
def grant_records(draw: st.DrawFn) -> dict[str, Any]:
    pk = draw(st.sampled_from(["USER#u1", "GRANT#g1", "OUTBOX#g1", "NOTE#n1", "TENANT#t"]))

    def image() -> dict[str, Any]:
        return {
            "pk": {"S": pk},
            "user_id": {"S": "u1"},
            "grant_id": {"S": draw(st.sampled_from(["g1", "g2"]))},
            "email": {"S": "ada@x.example"},
            "status": draw(_s),
            "connected_at": {"N": str(draw(st.sampled_from([1, 2])))},
        }

    name = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    dynamodb: dict[str, Any] = {"Keys": {"pk": {"S": pk}}, "SequenceNumber": "1"}
    if name != "INSERT":
        dynamodb["OldImage"] = image()
    if name != "REMOVE":
        dynamodb["NewImage"] = image()
    return {"eventID": "e1", "eventName": name, "dynamodb": dynamodb, "eventSourceARN": "arn:g"}


@settings(max_examples=400, deadline=None)
@given(session_records())
def test_the_session_filters_pass_every_record_that_makes_an_event(record: dict[str, Any]) -> None:
    if session_events.event_for(record) is not None:
        assert _passes(SESSION_FILTERS, record), record


@settings(max_examples=400, deadline=None)
@given(grant_records())
def test_the_grant_filter_passes_every_record_that_makes_an_event(record: dict[str, Any]) -> None:
    if lifecycle.event_for(record) is not None:
        assert _passes(GRANT_FILTERS, record), record


def _session(name: str, old: str | None, new: str, **extra: str) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"NewImage": {"status": {"S": new}, **{k: {"S": v} for k, v in extra.items()}}}
    if old is not None:
        dynamodb["OldImage"] = {"status": {"S": old}}
    return {"eventName": name, "dynamodb": dynamodb}


def test_the_filters_drop_the_steps_that_make_no_event() -> None:
    # A connect flow's creation, start and success: three writes, no invocation.
    assert not _passes(SESSION_FILTERS, _session("INSERT", None, "pending", user_id="u1"))
    assert not _passes(SESSION_FILTERS, _session("MODIFY", "pending", "started", user_id="u1"))
    assert not _passes(SESSION_FILTERS, _session("MODIFY", "consumed", "completed", user_id="u1"))
    assert not _passes(
        SESSION_FILTERS, {"eventName": "REMOVE", "dynamodb": {"OldImage": {"status": {"S": "failed"}}}}
    )
    # What does make one passes.
    assert _passes(SESSION_FILTERS, _session("MODIFY", "started", "failed", user_id="u1"))
    assert _passes(SESSION_FILTERS, _session("MODIFY", "started", "completed", kind="admin_consent"))
    # The grant guard, the revoke outbox: no invocation.
    for pk in ("GRANT#g1", "OUTBOX#g1"):
        assert not _passes(GRANT_FILTERS, {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": pk}}}})
    assert _passes(GRANT_FILTERS, {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "USER#u1"}}}})


# --------------------------------------------------------------------------- the local poller

TABLE = "stream-filters"


@pytest.fixture(scope="module")
def moto_table() -> Iterator[tuple[str, Any]]:
    server, url = start_moto()
    dynamodb = client("dynamodb", url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "session_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "session_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    yield url, dynamodb
    server.stop()


def test_the_poller_invokes_only_for_what_the_filters_pass_and_moves_past_the_rest(
    moto_table: tuple[str, Any],
) -> None:
    url, dynamodb = moto_table
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], _: Any) -> dict[str, Any]:
        seen.append([r["dynamodb"]["NewImage"]["session_id"]["S"] for r in event["Records"]])
        return {"batchItemFailures": []}

    poller = StreamPoller(
        url,
        TABLE,
        handler,
        lambda: None,
        interval=0.05,
        filters=stream_filters(TEMPLATE, "SessionEventsFunction"),
    )
    for sid, status in (("a", "pending"), ("b", "started"), ("c", "failed"), ("d", "completed")):
        dynamodb.put_item(
            TableName=TABLE, Item={"session_id": {"S": sid}, "status": {"S": status}, "user_id": {"S": "u"}}
        )
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while poller.idle_polls < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == [["c"]]  # one invocation, with the failed session only
        # Records written later are read from where the poller stopped (none of the first ones again).
        dynamodb.put_item(
            TableName=TABLE, Item={"session_id": {"S": "e"}, "status": {"S": "failed"}, "user_id": {"S": "u"}}
        )
        dynamodb.put_item(
            TableName=TABLE,
            Item={"session_id": {"S": "f"}, "status": {"S": "pending"}, "user_id": {"S": "u"}},
        )
        deadline = time.monotonic() + 10
        while seen == [["c"]] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen == [["c"], ["e"]]
    finally:
        poller.stop()
