"""Pure rules of admin consent (teams_connect.rules.microsoft) and the sessions-stream events."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import pytest

from teams_connect.rules import microsoft as rules
from teams_connect.rules import session_events

GUID = "0b1f3c9e-7a2d-4c55-9f0e-2b8a6d4e1c77"


@pytest.mark.parametrize(
    "values",
    [
        ["access_denied", "AADSTS65001: The user or administrator has not consented to use the application."],
        ["access_denied", "AADSTS90094: The grant requires admin permission."],
        ["invalid_request", "AADSTS90093: This application requires admin consent"],
        [
            "access_denied",
            "cancel",
            "AADSTS65004: User declined to consent. An admin consent request was sent.",
        ],
        [
            "access_denied",
            "AADSTS65004: User declined to consent.",
            "requested approval from an administrator",
        ],
        ["provider_error", None, "45001", "Provider says: AADSTS90094 grant requires admin"],
    ],
)
def test_admin_refusals_are_named(values: list[str | None]) -> None:
    assert rules.refusal_code(values) == "admin_consent_required"


@pytest.mark.parametrize(
    "values",
    [
        ["access_denied", "The user denied the consent request"],
        ["access_denied", "cancel", "AADSTS65004: User declined to consent to access the app."],
        ["access_denied", "cancel"],  # Microsoft without any AADSTS text: cannot be told apart
        ["invalid_request", "AADSTS500200: User account 'x@outlook.com' is a personal Microsoft account."],
        ["access_denied", "AADSTS650010 is not 65001"],
        ["access_denied", "XAADSTS90094"],
        [],
    ],
)
def test_other_refusals_are_left_to_the_caller(values: list[str | None]) -> None:
    assert rules.refusal_code(values) is None


def test_only_the_start_of_long_values_is_scanned() -> None:
    assert rules.refusal_code(["x" * 5000 + " AADSTS65001"]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (GUID, ("id", GUID)),
        (GUID.upper(), ("id", GUID)),
        ("Contoso.com", ("domain", "contoso.com")),
        ("contoso.onmicrosoft.com", ("domain", "contoso.onmicrosoft.com")),
        ("common", None),
        ("organizations", None),
        ("Consumers", None),
        ("outlook.com", None),
        (rules.CONSUMER_TENANT_ID, None),
        ("contoso", None),
        ("contoso.com/../x", None),
        ("cont oso.com", None),
        ("xn--bcher-kva.example", ("domain", "xn--bcher-kva.example")),
        ("bücher.example", None),
        ("a" * 300 + ".com", None),
        ("", None),
        (42, None),
        (None, None),
        (GUID + "\n", None),
    ],
)
def test_tenant_input(value: object, expected: tuple[str, str] | None) -> None:
    assert rules.check_tenant_input(value) == expected


def test_admin_consent_url_names_the_tenant_or_organizations_never_common() -> None:
    url = rules.admin_consent_url(
        "https://login.microsoftonline.com/",
        GUID,
        client_id="app-id",
        redirect_uri="https://connect.example.com/connect/admin-consent/callback",
        state="s.t",
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        f"https://login.microsoftonline.com/{GUID}/v2.0/adminconsent"
    )
    assert parse_qs(parts.query) == {
        "client_id": ["app-id"],
        "scope": ["https://graph.microsoft.com/.default"],
        "redirect_uri": ["https://connect.example.com/connect/admin-consent/callback"],
        "state": ["s.t"],
    }
    for tenant in (None, "common", "contoso.com"):
        other = rules.admin_consent_url(
            "https://login.example", tenant, client_id="a", redirect_uri="r", state="s"
        )
        assert urlsplit(other).path == "/organizations/v2.0/adminconsent"


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        (f"https://login.microsoftonline.com/{GUID}/v2.0", GUID),
        (f"https://login.microsoftonline.com/{GUID.upper()}/v2.0", GUID),
        (f"https://evil.example/{GUID}/v2.0", None),
        ("https://login.microsoftonline.com/contoso.com/v2.0", None),
        (f"https://login.microsoftonline.com/{GUID}/v2.0/extra", None),
        (None, None),
    ],
)
def test_tenant_id_from_issuer(issuer: object, expected: str | None) -> None:
    assert rules.tenant_id_from_issuer(issuer, "https://login.microsoftonline.com") == expected


def _record(
    event: str, old: Mapping[str, object] | None, new: Mapping[str, object] | None, seq: str = "1"
) -> dict[str, object]:
    dynamodb: dict[str, object] = {"SequenceNumber": seq, "ApproximateCreationDateTime": 1_800_000_000}
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return {"eventID": f"e{seq}", "eventName": event, "dynamodb": dynamodb}


def _session(status: str, **extra: object) -> dict[str, object]:
    item: dict[str, object] = {"session_id": {"S": "sid"}, "user_id": {"S": "u-1"}, "status": {"S": status}}
    item.update(extra)
    return item


def test_a_failed_connect_session_is_a_connect_failed_event() -> None:
    record = _record(
        "MODIFY",
        _session("consumed"),
        _session(
            "failed",
            error_code={"S": "admin_consent_required"},
            updated_at={"N": "1800000005"},
            metadata={"M": {"plan": {"S": "pro"}, "bad": {"N": "1"}}},
        ),
    )
    event = session_events.event_for(record)
    assert isinstance(event, session_events.ConnectFailed)
    assert event.detail_type == "Connect Failed"
    detail = event.detail()
    assert detail == {
        "event_id": detail["event_id"],
        "user_id": "u-1",
        "error": "admin_consent_required",
        "occurred_at": "2027-01-15T08:00:05Z",
        "metadata": {"plan": "pro"},
    }
    again = session_events.event_for(record)
    assert again is not None
    assert again.detail()["event_id"] == detail["event_id"], "stable on redelivery"
    other = session_events.event_for(_record("MODIFY", _session("consumed"), _session("failed"), "2"))
    assert other is not None
    assert other.detail()["event_id"] != detail["event_id"]


@pytest.mark.parametrize(
    "record",
    [
        _record("MODIFY", _session("started"), _session("consumed")),
        _record("MODIFY", _session("consumed"), _session("completed")),
        _record(
            "MODIFY", _session("failed", error_code={"S": "x"}), _session("failed", error_code={"S": "x"})
        ),
        _record("INSERT", None, _session("pending")),
        _record("REMOVE", _session("failed"), None),
        _record("MODIFY", _session("consumed"), {"session_id": {"S": "s"}, "status": {"S": "failed"}}),
        _record(
            "MODIFY",
            {**_session("consent_consumed"), "kind": {"S": "admin_consent"}},
            {"session_id": {"S": "c"}, "kind": {"S": "admin_consent"}, "status": {"S": "failed"}},
        ),
    ],
)
def test_steps_that_end_nothing_publish_nothing(record: dict[str, object]) -> None:
    assert session_events.event_for(record) is None


def test_a_completed_admin_consent_is_a_tenant_admin_consented_event() -> None:
    old = {"session_id": {"S": "cid"}, "kind": {"S": "admin_consent"}, "status": {"S": "consent_consumed"}}
    new = {
        **old,
        "status": {"S": "completed"},
        "consented_tenant_id": {"S": GUID},
        "updated_at": {"N": "1800000000"},
    }
    event = session_events.event_for(_record("MODIFY", old, new))
    assert isinstance(event, session_events.TenantAdminConsented)
    assert event.detail_type == "Tenant Admin Consented"
    detail = event.detail()
    assert detail["tenant_id"] == GUID
    assert detail["consent_id"] == "cid"
    assert detail["occurred_at"] == "2027-01-15T08:00:00Z"
    assert set(detail) == {"event_id", "tenant_id", "consent_id", "occurred_at"}
