"""GET /v1/grants: index queries (never a scan), the signed cursor, and exactly-once paging while
records change (a Hypothesis property test interleaving writes with page reads)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from teams_connect.adapters.store.grants import GrantRecord
from teams_connect.adapters.store.listing import GrantListing
from teams_connect.config import Settings
from teams_connect.domain.listing import GrantLister
from teams_connect.errors import InvalidRequest
from teams_connect.rules.listing import make_cursor, parse_list_query

from .conftest import GRANTS, CountingClient

KEY = b"k" * 48
STATUSES = ("valid", "expired", "revoked", "needs_reauth")


FULL = ("Calendars.ReadWrite", "OnlineMeetings.ReadWrite")
LACKING = ("Calendars.ReadWrite",)  # what a needs_reauth grant holds (OnlineMeetings.ReadWrite missing)


def scopes_for(status: str) -> tuple[str, ...]:
    return LACKING if status == "needs_reauth" else FULL


def record(
    user_id: str,
    status: str = "valid",
    email: str | None = None,
    scopes: tuple[str, ...] | None = None,
    **extra: Any,
) -> GrantRecord:
    return GrantRecord(
        user_id=user_id,
        grant_id=f"g-{user_id}",
        email=email or f"{user_id}@Example.com",
        provider="microsoft",
        status=status,
        scopes=scopes_for(status) if scopes is None else scopes,
        connected_at=1_800_000_000,
        updated_at=1_800_000_000,
        flow_started_at=1_800_000_000,
        status_changed_at=1_800_000_000,
        **extra,
    )


def put(client: Any, rec: GrantRecord) -> None:
    client.put_item(TableName=GRANTS, Item=rec.to_item())


def set_status(client: Any, user_id: str, status: str) -> None:
    client.update_item(
        TableName=GRANTS,
        Key={"pk": {"S": f"USER#{user_id}"}},
        UpdateExpression="SET #st = :s, scopes = :scopes",
        ConditionExpression="attribute_exists(pk)",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={
            ":s": {"S": status},
            ":scopes": {"L": [{"S": x} for x in scopes_for(status)]},
        },
    )


def lister(aws: Any, client: Any = None) -> GrantLister:
    settings = Settings.from_env(aws.env())
    return GrantLister(settings, GrantListing(GRANTS, client or aws.client), lambda: KEY)


def all_pages(lst: GrantLister, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = lst.list({**params, **({"cursor": cursor} if cursor else {})})
        out.extend(page["grants"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_lists_every_grant_in_user_id_order_a_page_at_a_time(aws):
    for n in range(7):
        put(aws.client, record(f"u{n}", STATUSES[n % 4], metadata={"n": str(n)}))
    aws.client.put_item(TableName=GRANTS, Item={"pk": {"S": "GRANT#g-u1"}, "owner": {"S": "u1"}})
    page = lister(aws).list({"limit": "3"})
    assert [g["user_id"] for g in page["grants"]] == ["u0", "u1", "u2"]
    assert page["next_cursor"]
    everything = all_pages(lister(aws), limit="3")
    assert [g["user_id"] for g in everything] == [f"u{n}" for n in range(7)]
    assert everything[3]["metadata"] == {"n": "3"}
    assert set(everything[0]) >= {"user_id", "grant_id", "email", "status", "metadata", "teams", "scopes"}


def test_a_status_or_email_filter_is_an_index_query_never_a_scan(aws):
    for n in range(6):
        put(aws.client, record(f"u{n}", STATUSES[n % 2]))
    counting = CountingClient(aws.client)
    lst = lister(aws, counting)
    assert [g["user_id"] for g in all_pages(lst, status="expired")] == ["u1", "u3", "u5"]
    assert [g["user_id"] for g in all_pages(lst, email="U2@example.COM")] == ["u2"]
    assert all_pages(lst, email="u2@example.com", status="expired") == []
    assert [g["user_id"] for g in all_pages(lst, email="u3@example.com", status="expired")] == ["u3"]
    assert set(counting.calls) == {"query"}


def test_a_grant_listed_under_its_stored_status_is_shown_as_get_shows_it(aws):
    # Stored needs_reauth, but the deployment's required scopes are all there now (NylasScopes
    # changed): GET shows it valid; the listing finds it under the stored status, never nowhere.
    put(aws.client, record("u1", "needs_reauth", scopes=FULL))
    (shown,) = all_pages(lister(aws), status="needs_reauth")
    assert (shown["user_id"], shown["status"]) == ("u1", "valid")
    assert all_pages(lister(aws), status="valid") == []


def test_the_last_page_has_no_cursor_and_an_empty_listing_is_fine(aws):
    assert lister(aws).list({}) == {"grants": [], "next_cursor": None}
    for n in range(3):
        put(aws.client, record(f"u{n}"))
    assert lister(aws).list({"limit": "3"})["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"status": "active"},
        {"status": ""},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "٣"},
        {"email": "not-an-email"},
        {"page": "2"},
        {"cursor": "garbage"},
        {"cursor": ""},
    ],
)
def test_bad_parameters_are_invalid_request(params):
    with pytest.raises(InvalidRequest):
        parse_list_query(params, KEY)


def test_a_tampered_or_foreign_cursor_is_refused():
    query = parse_list_query({"status": "valid"}, KEY)
    cursor = make_cursor(query, "u5", KEY)
    assert parse_list_query({"status": "valid", "cursor": cursor}, KEY).after == "u5"
    payload, mac = cursor.split(".")
    import base64

    forged = base64.urlsafe_b64encode(json.dumps({"s": ["valid", None], "u": "a"}).encode()).rstrip(b"=")
    for bad in (
        forged.decode() + "." + mac,  # another key position, old signature
        payload + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),
        cursor + "x",
        make_cursor(query, "u5", b"another deployment's key" * 2),
    ):
        with pytest.raises(InvalidRequest):
            parse_list_query({"status": "valid", "cursor": bad}, KEY)
    with pytest.raises(InvalidRequest):  # made for another filter
        parse_list_query({"status": "expired", "cursor": cursor}, KEY)
    with pytest.raises(InvalidRequest):
        parse_list_query({"cursor": cursor}, KEY)


def test_the_route_answers_the_page_and_400_for_a_bad_cursor(handler_env, aws):
    from .conftest import API_KEY, FakeContext, http_event, load_handler

    put(aws.client, record("u1"))
    module = load_handler("list_grants")
    module.lister.cursor_key = lambda: KEY
    auth = {"authorization": f"Bearer {API_KEY}"}
    ok = module.lambda_handler(
        http_event("GET", "/v1/grants", raw_query="limit=1", headers=auth), FakeContext()
    )
    assert ok["statusCode"] == 200
    assert [g["user_id"] for g in json.loads(ok["body"])["grants"]] == ["u1"]
    bad = module.lambda_handler(
        http_event("GET", "/v1/grants", raw_query="cursor=x.y", headers=auth), FakeContext()
    )
    assert bad["statusCode"] == 400
    assert json.loads(bad["body"])["error"]["code"] == "invalid_request"
    assert module.lambda_handler(http_event("GET", "/v1/grants"), FakeContext())["statusCode"] == 401


# --------------------------------------------------------------------------- exactly once, while changing

OPS = st.one_of(
    st.tuples(st.just("status"), st.integers(0, 11), st.sampled_from(STATUSES)),
    st.tuples(st.just("delete"), st.integers(0, 11), st.just("")),
    st.tuples(st.just("insert"), st.integers(0, 23), st.sampled_from(STATUSES)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.lists(st.sampled_from(STATUSES), min_size=0, max_size=12),
    status_filter=st.sampled_from((None, *STATUSES)),
    limit=st.integers(1, 4),
    ops=st.lists(st.lists(OPS, max_size=3), max_size=12),
)
def test_every_matching_grant_exactly_once_while_records_change(aws, initial, status_filter, limit, ops):
    for item in aws.client.scan(TableName=GRANTS)["Items"]:
        aws.client.delete_item(TableName=GRANTS, Key={"pk": item["pk"]})
    users = {f"u{n:02d}": s for n, s in enumerate(initial)}
    for user_id, status in users.items():
        put(aws.client, record(user_id, status))
    # Who must appear exactly once: present from start to end and matching the filter all along.
    steady = {u for u, s in users.items() if status_filter in (None, s)}
    lst = lister(aws)
    params = {"limit": str(limit), **({"status": status_filter} if status_filter else {})}
    seen: list[str] = []
    cursor: str | None = None
    step = 0
    while True:
        page = lst.list({**params, **({"cursor": cursor} if cursor else {})})
        for grant in page["grants"]:
            assert status_filter in (None, grant["status"])  # matched when it was read
            seen.append(grant["user_id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        for kind, n, status in ops[step] if step < len(ops) else []:
            user_id = f"u{n:02d}"
            if kind == "status" and user_id in users:
                set_status(aws.client, user_id, status)
                users[user_id] = status
                if status_filter not in (None, status):
                    steady.discard(user_id)
            elif kind == "delete" and user_id in users:
                aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": f"USER#{user_id}"}})
                del users[user_id]
                steady.discard(user_id)
            elif kind == "insert" and user_id not in users:
                put(aws.client, record(user_id, status))
                users[user_id] = status
        step += 1
        assert step < 100
    assert len(seen) == len(set(seen)), f"listed twice: {seen}"
    assert steady <= set(seen), f"missing: {steady - set(seen)}"
    assert seen == sorted(seen)
