"""`metadata` on POST /v1/sessions: validated (400 invalid_request, nothing created), kept on the
session, written on the grant by a successful flow, answered by GET /v1/grants/{user_id}, and carried
in every lifecycle event of the grant (from the table's stream images)."""

from __future__ import annotations

from typing import Any

import pytest

from teams_connect.adapters.store.grants import GrantRecord
from teams_connect.domain.flow import grant_json
from teams_connect.errors import InvalidRequest
from teams_connect.rules.lifecycle import event_for
from teams_connect.rules.metadata import check_metadata

from .conftest import RETURN_TO, SESSIONS


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"org": "acme"},
        {"a": ""},
        {"A-Z_a.z-0.9": "x" * 256},
        {f"k{n}": str(n) for n in range(10)},
        {"x" * 40: "é ☃ 𝄞"},
    ],
)
def test_valid_metadata(metadata):
    assert check_metadata(metadata) == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        "org=acme",
        ["org"],
        {f"k{n}": "v" for n in range(11)},
        {"": "v"},
        {"x" * 41: "v"},
        {"with space": "v"},
        {"slash/key": "v"},
        {"ünï": "v"},
        {"org": 5},
        {"org": None},
        {"org": {"nested": "v"}},
        {"org": "x" * 257},
        {"org": "\ud800"},
    ],
)
def test_invalid_metadata_is_invalid_request(metadata):
    with pytest.raises(InvalidRequest):
        check_metadata(metadata)


def test_invalid_metadata_creates_no_session(v3):
    with pytest.raises(InvalidRequest):
        v3.flow.create_session({"user_id": "u1", "return_to": RETURN_TO, "metadata": {"bad key": "v"}})
    assert v3.client.scan(TableName=SESSIONS)["Count"] == 0


def test_metadata_is_kept_on_the_session(v3):
    created = v3.flow.create_session({"user_id": "u1", "metadata": {"org": "acme"}})
    item = v3.client.get_item(TableName=SESSIONS, Key={"session_id": {"S": created.session_id}})["Item"]
    assert item["metadata"] == {"M": {"org": {"S": "acme"}}}
    plain = v3.flow.create_session({"user_id": "u2"})
    item = v3.client.get_item(TableName=SESSIONS, Key={"session_id": {"S": plain.session_id}})["Item"]
    assert "metadata" not in item  # absent = {}


def grant(**extra: Any) -> GrantRecord:
    return GrantRecord(
        user_id="u1",
        grant_id="g1",
        email="ada@example.com",
        provider="microsoft",
        status="valid",
        scopes=(),
        connected_at=1,
        updated_at=2,
        flow_started_at=1,
        **extra,
    )


def test_the_grant_record_keeps_and_answers_metadata():
    rec = grant(metadata={"org": "acme"})
    assert GrantRecord.from_item(rec.to_item()).metadata == {"org": "acme"}
    assert grant_json(rec)["metadata"] == {"org": "acme"}
    assert grant_json(grant())["metadata"] == {}
    assert "metadata" not in grant().to_item()


def stream(name: str, old: GrantRecord | None, new: GrantRecord | None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "Keys": {"pk": {"S": "USER#u1"}},
        "SequenceNumber": "1",
        "ApproximateCreationDateTime": 5,
    }
    if old is not None:
        dynamodb["OldImage"] = old.to_item()
    if new is not None:
        dynamodb["NewImage"] = new.to_item()
    return {"eventID": "e1", "eventName": name, "dynamodb": dynamodb}


def test_every_grant_event_carries_the_metadata():
    tagged = grant(metadata={"org": "acme"})
    connected = event_for(stream("INSERT", None, tagged))
    assert connected is not None
    assert connected.detail()["metadata"] == {"org": "acme"}
    from dataclasses import replace

    expired = event_for(stream("MODIFY", tagged, replace(tagged, status="expired", status_changed_at=9)))
    assert expired is not None
    assert expired.detail()["metadata"] == {"org": "acme"}
    gone = event_for(stream("REMOVE", tagged, None))
    assert gone is not None
    assert gone.detail()["metadata"] == {"org": "acme"}
    untagged = event_for(stream("INSERT", None, grant()))
    assert untagged is not None
    assert untagged.detail()["metadata"] == {}
    assert set(untagged.detail()) == {
        "event_id",
        "user_id",
        "grant_id",
        "email",
        "status",
        "occurred_at",
        "metadata",
    }
