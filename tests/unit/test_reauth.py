"""Scope re-authentication: an operator adds a required scope; existing grants read `needs_reauth` with
the missing scopes; a new session with `login_hint` = the stored email takes the user through consent
again and the same record returns to `valid` with the same grant id."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import respx

from teams_connect.domain.flow import grant_json

from .conftest import Aws, Harness, make_harness
from .test_flow_v3 import GRANT_ID, TOKEN_URL, cookies_of, start, token_response

REQUIRED = "Calendars.ReadWrite,OnlineMeetings.ReadWrite"


def connect(h: Harness, scope: str, **extra: str) -> None:
    state, started = start(h, **extra)
    answer = token_response()
    body = answer.json() | {"scope": scope}
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=httpx.Response(200, json=body))
        outcome = h.flow.complete({"code": "c", "state": state}, cookies_of(started))
    assert outcome.connected


def test_an_added_required_scope_turns_existing_grants_to_needs_reauth(aws: Aws) -> None:
    before = make_harness(aws, NYLAS_SCOPES="Calendars.ReadWrite")
    connect(before, "Calendars.ReadWrite User.Read")
    assert grant_json(before.flow.get_grant("user-1"))["status"] == "valid"

    # The operator adds OnlineMeetings.ReadWrite (a new deployment: new settings).
    after = make_harness(aws, NYLAS_SCOPES=REQUIRED)
    record = grant_json(after.flow.get_grant("user-1"))
    assert (record["status"], record["missing_scopes"]) == ("needs_reauth", ["OnlineMeetings.ReadWrite"])
    assert record["email"] == "ada@contoso.example"

    # The SaaS app sends the user through a new session with login_hint = the stored email.
    state, started = start(after, login_hint=record["email"])
    query = parse_qs(urlsplit(started.location).query)
    assert query["login_hint"] == ["ada@contoso.example"]
    assert query["scope"] == ["Calendars.ReadWrite OnlineMeetings.ReadWrite"]
    with respx.mock() as router:
        router.post(TOKEN_URL).mock(return_value=token_response())  # both scopes granted
        assert after.flow.complete({"code": "c2", "state": state}, cookies_of(started)).connected
    back = grant_json(after.flow.get_grant("user-1"))
    assert (back["status"], back["missing_scopes"], back["grant_id"]) == ("valid", [], GRANT_ID)


def test_consent_without_the_scope_is_stored_as_needs_reauth(aws: Aws) -> None:
    h = make_harness(aws, NYLAS_SCOPES=REQUIRED)
    connect(h, "Calendars.ReadWrite")
    stored = h.flow.grants.get("user-1")
    assert stored is not None
    assert (stored.status, stored.missing_scopes) == ("needs_reauth", ("OnlineMeetings.ReadWrite",))
    assert stored.status_changed_at == stored.connected_at


def test_expired_stays_expired_whatever_the_scopes(aws: Aws) -> None:
    h = make_harness(aws, NYLAS_SCOPES=REQUIRED)
    connect(h, "Calendars.ReadWrite")
    stored = h.flow.grants.get("user-1")
    assert stored is not None
    aws.client.update_item(
        TableName="tc-grants",
        Key={"pk": {"S": "USER#user-1"}},
        UpdateExpression="SET #s = :e",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":e": {"S": "expired"}},
    )
    assert h.flow.get_grant("user-1").status == "expired"
