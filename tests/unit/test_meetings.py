"""The meetings API through its four handlers, in process: moto for DynamoDB and Secrets Manager,
respx for Nylas (exact control of timeouts, error types, missing Teams links)."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from .conftest import API_KEY, GRANTS, NYLAS_API_KEY, V3_BASE, Aws, FakeContext, http_event, load_handler

IDEMPOTENCY = "tc-idempotency"
AUTH = {"authorization": f"Bearer {API_KEY}"}
JSON = {"content-type": "application/json"}
GRANT_ID = "8a5a1d6e-2f3b-4c1a-9d1e-0f8e7c6b5a49"
USER = "user/ä 1"
USER_PATH = "user%2F%C3%A4%201"
EVENTS = f"{V3_BASE}/v3/grants/{GRANT_ID}/events"
JOIN = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0"
START, END = "2030-03-01T10:00:00+01:00", "2030-03-01T10:30:00+01:00"
START_EPOCH = 1898586000  # 2030-03-01T09:00:00Z
BODY = {"title": "Interview", "start": START, "end": END, "participants": [{"email": "c@x.com", "name": "C"}]}


@pytest.fixture
def meetings_env(handler_env: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    handler_env.client.create_table(
        TableName=IDEMPOTENCY,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY)
    return handler_env


def put_grant(aws: Aws, *, status: str = "valid", teams: str | None = None) -> None:
    item: dict[str, Any] = {
        "pk": {"S": f"USER#{USER}"},
        "user_id": {"S": USER},
        "grant_id": {"S": GRANT_ID},
        "email": {"S": "max@contoso.com"},
        "provider": {"S": "microsoft"},
        "status": {"S": status},
        "scopes": {"L": []},
        "connected_at": {"N": "1800000000"},
        "updated_at": {"N": "1800000000"},
        "flow_started_at": {"N": "1800000000"},
    }
    if teams is not None:
        item["teams"] = {"S": teams}
    aws.client.put_item(TableName=GRANTS, Item=item)


def grant_item(aws: Aws) -> dict[str, Any]:
    item: dict[str, Any] = aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": f"USER#{USER}"}})["Item"]
    return item


def nylas_event(
    event_id: str = "ev1", *, url: str | None = JOIN, tag: str = "tc1.x", ours: bool = True
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "grant_id": GRANT_ID,
        "calendar_id": "AQMk1",
        "busy": True,
        "title": "Interview",
        "when": {"object": "timespan", "start_time": START_EPOCH, "end_time": START_EPOCH + 1800},
        "participants": [{"email": "c@x.com", "name": "C", "status": "noreply"}],
        "organizer": {"email": "max@contoso.com", "name": ""},
        "metadata": {"key1": tag, "key2": "teams-connect"} if ours else {"key1": "other"},
    }
    if url is not None:
        event["conferencing"] = {"provider": "Microsoft Teams", "details": {"url": url}}
    return event


def ok(event: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"request_id": "r", "data": event})


def call(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = handler.lambda_handler(event, FakeContext())
    return response


def create(
    handler: Any, body: Any, *, key: str | None = None, user: str = USER_PATH, **headers: str
) -> dict[str, Any]:
    extra = {"idempotency-key": key} if key is not None else {}
    raw = body if isinstance(body, str) else json.dumps(body)
    path = f"/v1/users/{user}/meetings"
    return call(handler, http_event("POST", path, headers={**AUTH, **JSON, **extra, **headers}, body=raw))


def one(handler: Any, method: str, meeting_id: str = "ev1", body: Any = None) -> dict[str, Any]:
    headers = {**AUTH, **(JSON if body is not None else {})}
    event = http_event(
        method,
        f"/v1/users/{USER_PATH}/meetings/{meeting_id}",
        headers=headers,
        body=json.dumps(body) if body is not None else None,
    )
    return call(handler, event)


def error_code(resp: dict[str, Any]) -> str:
    return str(json.loads(resp["body"])["error"]["code"])


def sent_json(route: respx.Route, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


# --- create ------------------------------------------------------------------------------------------
def test_create_schedules_a_teams_meeting(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(return_value=ok(nylas_event()))
        resp = create(handler, {**BODY, "timezone": "Europe/Berlin", "description": "Hi"})
    assert resp["statusCode"] == 201, resp["body"]
    assert json.loads(resp["body"]) == {
        "meeting_id": "ev1",
        "join_url": JOIN,
        "title": "Interview",
        "start": "2030-03-01T09:00:00Z",
        "end": "2030-03-01T09:30:00Z",
        "participants": [{"email": "c@x.com", "name": "C"}],
        "organizer_email": "max@contoso.com",
    }
    request = post.calls[0].request
    assert request.headers["authorization"] == f"Bearer {NYLAS_API_KEY}"
    assert parse_qs(urlsplit(str(request.url)).query) == {"calendar_id": ["primary"]}
    sent = sent_json(post)
    assert sent["conferencing"] == {"provider": "Microsoft Teams", "autocreate": {}}
    assert sent["when"] == {
        "start_time": START_EPOCH,
        "end_time": START_EPOCH + 1800,
        "start_timezone": "Europe/Berlin",
        "end_timezone": "Europe/Berlin",
    }
    assert sent["metadata"]["key2"] == "teams-connect"
    assert sent["metadata"]["key1"].startswith("tc1.")
    assert sent["description"] == "Hi"
    assert grant_item(meetings_env)["teams"] == {"S": "available"}
    assert resp["headers"]["Cache-Control"] == "no-store"


BAD_BODIES: list[Any] = [
    "not json",
    [],
    {},
    {**BODY, "title": ""},
    {**BODY, "title": "   "},
    {**BODY, "title": "x" * 1025},
    {**BODY, "title": "a\x00b"},
    {**BODY, "title": 5},
    {k: v for k, v in BODY.items() if k != "end"},
    {**BODY, "start": "2030-03-01T10:00:00"},  # no offset
    {**BODY, "start": "2030-03-01 10:00:00Z"},
    {**BODY, "start": "2030-02-30T10:00:00Z"},
    {**BODY, "start": 1898586000},
    {**BODY, "end": START},  # end == start
    {**BODY, "end": "2030-03-01T09:00:00+01:00"},  # end before start
    {**BODY, "end": "2030-03-02T10:00:01+01:00"},  # longer than 24 h
    {**BODY, "start": "1999-12-31T10:00:00Z", "end": "1999-12-31T11:00:00Z"},
    {**BODY, "participants": "c@x.com"},
    {**BODY, "participants": [{"email": "not-an-email"}]},
    {**BODY, "participants": [{"email": "c@x.com"}, {"email": "C@X.com"}]},
    {**BODY, "participants": [{"email": "c@x.com", "role": "admin"}]},
    {**BODY, "participants": [{"email": f"p{i}@x.com"} for i in range(101)]},
    {**BODY, "participants": [{"email": "c@x.com", "name": "n" * 257}]},
    {**BODY, "timezone": "Mars/Olympus"},
    {**BODY, "timezone": "../../etc/passwd"},
    {**BODY, "description": "d" * 8193},
    {**BODY, "location": "Room 1"},  # unknown field
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_invalid_create_is_400_before_any_io(meetings_env: Aws, body: Any) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock(assert_all_called=False) as router:
        post = router.post(EVENTS).mock(return_value=ok(nylas_event()))
        resp = create(handler, body)
    assert (resp["statusCode"], error_code(resp)) == (400, "invalid_request")
    assert not post.called


@pytest.mark.parametrize("key", ["", "a" * 256, "key with space", "ключ"])
def test_invalid_idempotency_key_is_400(meetings_env: Aws, key: str) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock(assert_all_called=False) as router:
        post = router.post(EVENTS).mock(return_value=ok(nylas_event()))
        resp = create(handler, BODY, key=key)
    assert (resp["statusCode"], error_code(resp)) == (400, "invalid_request")
    assert not post.called


def test_auth_comes_first_and_no_grant_is_404_not_connected(meetings_env: Aws) -> None:
    handler = load_handler("create_meeting")
    with respx.mock(assert_all_called=False) as router:
        post = router.post(EVENTS).mock(return_value=ok(nylas_event()))
        unauth = create(handler, BODY, authorization="Bearer wrong-key-0123456789")
        missing = create(handler, BODY)
    assert (unauth["statusCode"], error_code(unauth)) == (401, "unauthorized")
    assert (missing["statusCode"], error_code(missing)) == (404, "not_connected")
    assert not post.called


def test_same_key_same_body_returns_the_first_answer_and_creates_nothing_more(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(side_effect=[ok(nylas_event("ev1")), ok(nylas_event("ev2"))])
        first = create(handler, BODY, key="order-1")
        again = create(handler, BODY, key="order-1")
        reused = create(handler, {**BODY, "title": "Other"}, key="order-1")
        other_user_key = create(handler, BODY, key="order-2")
    assert first["statusCode"] == again["statusCode"] == 201
    assert json.loads(again["body"]) == json.loads(first["body"])
    assert (reused["statusCode"], error_code(reused)) == (422, "idempotency_key_reused")
    assert json.loads(other_user_key["body"])["meeting_id"] == "ev2"
    assert post.call_count == 2
    # The tag is derived from user + key: stable across retries, different per key.
    assert sent_json(post, 0)["metadata"]["key1"] != sent_json(post, 1)["metadata"]["key1"]


def test_a_timed_out_create_is_found_by_its_tag_not_made_twice(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(side_effect=httpx.ReadTimeout("slow"))
        listed: dict[str, Any] = {"request_id": "r", "data": [], "next_cursor": None}
        lookup = router.get(EVENTS).mock(side_effect=lambda request: httpx.Response(200, json=listed))
        # 1st attempt: Nylas never answered and the event is not (yet) listed → 503.
        lost = create(handler, BODY, key="k-timeout")
        assert (lost["statusCode"], error_code(lost)) == (503, "upstream_unavailable")
        tag = sent_json(post)["metadata"]["key1"]
        assert parse_qs(urlsplit(str(lookup.calls[0].request.url)).query)["metadata_pair"] == [f"key1:{tag}"]
        assert grant_item(meetings_env)["ambiguous_tags"] == {"SS": [tag]}
        # Meanwhile Nylas finished creating it. The retry looks before creating again.
        listed["data"] = [nylas_event("ev-late", tag=tag)]
        found = create(handler, BODY, key="k-timeout")
    assert found["statusCode"] == 201, found["body"]
    assert json.loads(found["body"])["meeting_id"] == "ev-late"
    assert post.call_count == 1  # one meeting, never a second POST
    assert lookup.call_count == 2
    assert "ambiguous_tags" not in grant_item(meetings_env)


def test_a_retry_that_finds_nothing_creates_with_the_same_tag(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(side_effect=[httpx.ReadTimeout("slow"), ok(nylas_event("ev2"))])
        empty: dict[str, Any] = {"request_id": "r", "data": [], "next_cursor": None}
        router.get(EVENTS).mock(side_effect=lambda request: httpx.Response(200, json=empty))
        assert create(handler, BODY, key="k2")["statusCode"] == 503
        retried = create(handler, BODY, key="k2")
    assert retried["statusCode"] == 201
    assert post.call_count == 2
    assert sent_json(post, 1)["metadata"]["key1"] == sent_json(post, 0)["metadata"]["key1"]
    assert "ambiguous_tags" not in grant_item(meetings_env)


def test_a_create_answered_503_looks_for_its_tag(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(return_value=httpx.Response(503, json={"error": {"type": "x"}}))
        lookup = router.get(EVENTS).mock(side_effect=lambda request: httpx.Response(500))
        resp = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (503, "upstream_unavailable")
    assert post.call_count == 1
    assert lookup.called


def test_nylas_429_is_429_with_retry_after(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    limited = httpx.Response(
        429,
        headers={"Retry-After": "7"},
        json={"error": {"type": "rate_limit_error", "message": "slow down"}},
    )
    with respx.mock() as router:
        router.post(EVENTS).mock(return_value=limited)
        resp = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (429, "rate_limited")
    assert resp["headers"]["Retry-After"] == "7"


def test_grant_401_is_reauth_required_and_the_record_turns_expired(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    expired = httpx.Response(
        401, json={"error": {"type": "grant.invalid_authentication", "message": "re-authenticate"}}
    )
    with respx.mock() as router:
        post = router.post(EVENTS).mock(return_value=expired)
        resp = create(handler, BODY)
        again = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (409, "reauth_required")
    item = grant_item(meetings_env)
    assert item["status"] == {"S": "expired"}
    assert "status_changed_at" in item
    assert (again["statusCode"], error_code(again)) == (409, "reauth_required")
    assert post.call_count == 1  # an expired record is refused without calling Nylas


def test_api_key_401_is_a_server_error_and_leaves_the_grant_alone(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(
            return_value=httpx.Response(401, json={"error": {"type": "unauthorized", "message": "bad key"}})
        )
        resp = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (500, "server_error")
    assert grant_item(meetings_env)["status"] == {"S": "valid"}
    assert post.call_count == 1  # the re-read secret is the same key: no blind retry
    assert NYLAS_API_KEY not in resp["body"]


def test_no_teams_link_deletes_the_event_and_remembers_unavailable(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        post = router.post(EVENTS).mock(return_value=ok(nylas_event("ev1", url=None)))
        reread = router.get(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event("ev1", url=None)))
        deleted = router.delete(f"{EVENTS}/ev1").mock(
            return_value=httpx.Response(200, json={"request_id": "r"})
        )
        resp = create(handler, BODY)
        again = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (422, "teams_unavailable")
    assert reread.call_count == 1
    assert deleted.call_count == 1
    assert grant_item(meetings_env)["teams"] == {"S": "unavailable"}
    assert (again["statusCode"], error_code(again)) == (422, "teams_unavailable")
    assert post.call_count == 1  # known up front: the calendar is not touched again


def test_a_link_that_arrives_on_the_second_read_is_used(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    with respx.mock() as router:
        router.post(EVENTS).mock(return_value=ok(nylas_event("ev1", url=None)))
        router.get(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event("ev1")))
        resp = create(handler, BODY)
    assert resp["statusCode"] == 201
    assert json.loads(resp["body"])["join_url"] == JOIN


def test_a_non_teams_link_is_not_a_teams_meeting(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    fake = nylas_event("ev1", url="https://evil.example/teams.microsoft.com/")
    with respx.mock() as router:
        router.post(EVENTS).mock(return_value=ok(fake))
        router.get(f"{EVENTS}/ev1").mock(return_value=ok(fake))
        deleted = router.delete(f"{EVENTS}/ev1").mock(return_value=httpx.Response(200, json={}))
        resp = create(handler, BODY)
    assert (resp["statusCode"], error_code(resp)) == (422, "teams_unavailable")
    assert deleted.called


# --- get / patch / delete ------------------------------------------------------------------------------
def test_get_patch_delete_a_meeting(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    get, patch, delete = (load_handler(n) for n in ("get_meeting", "update_meeting", "delete_meeting"))
    moved = nylas_event()
    moved["when"] = {"object": "timespan", "start_time": START_EPOCH + 3600, "end_time": START_EPOCH + 5400}
    moved["title"] = "Moved"
    with respx.mock() as router:
        router.get(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event()))
        put = router.put(f"{EVENTS}/ev1").mock(return_value=ok(moved))
        removed = router.delete(f"{EVENTS}/ev1").mock(
            return_value=httpx.Response(200, json={"request_id": "r"})
        )
        got = one(get, "GET")
        changed = one(
            patch,
            "PATCH",
            body={"title": "Moved", "start": "2030-03-01T10:00:00Z", "end": "2030-03-01T10:30:00Z"},
        )
        gone = one(delete, "DELETE")
    assert got["statusCode"] == 200
    assert json.loads(got["body"])["join_url"] == JOIN
    assert changed["statusCode"] == 200, changed["body"]
    assert json.loads(changed["body"])["title"] == "Moved"
    assert sent_json(put) == {
        "title": "Moved",
        "when": {"start_time": START_EPOCH + 3600, "end_time": START_EPOCH + 5400},
    }
    assert gone["statusCode"] == 204
    assert gone["body"] == ""
    assert removed.call_count == 1


def test_patch_checks_the_merged_times_before_writing(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    patch = load_handler("update_meeting")
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event()))
        put = router.put(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event()))
        before_start = one(patch, "PATCH", body={"end": "2030-03-01T08:00:00Z"})
        empty = one(patch, "PATCH", body={})
        timezone = one(patch, "PATCH", body={"timezone": "Europe/Berlin"})
    for resp in (before_start, empty, timezone):
        assert (resp["statusCode"], error_code(resp)) == (400, "invalid_request")
    assert not put.called


def test_events_teams_connect_did_not_create_are_not_found(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    get, delete = load_handler("get_meeting"), load_handler("delete_meeting")
    with respx.mock(assert_all_called=False) as router:
        router.get(f"{EVENTS}/ev1").mock(return_value=ok(nylas_event(ours=False)))
        removed = router.delete(f"{EVENTS}/ev1").mock(return_value=httpx.Response(200, json={}))
        router.get(f"{EVENTS}/missing").mock(
            return_value=httpx.Response(404, json={"error": {"type": "not_found_error", "message": "no"}})
        )
        foreign = one(get, "GET")
        foreign_delete = one(delete, "DELETE")
        missing = one(get, "GET", "missing")
    for resp in (foreign, foreign_delete, missing):
        assert (resp["statusCode"], error_code(resp)) == (404, "not_found")
    assert not removed.called


@pytest.mark.parametrize(
    "meeting_id", ["a%2Fb", "a b", "%00", "x" * 1025, "a%3Fcalendar_id%3Dother", "..", "%2E%2E", ".", "-._"]
)
def test_hostile_meeting_ids_are_400(meetings_env: Aws, meeting_id: str) -> None:
    put_grant(meetings_env)
    get = load_handler("get_meeting")
    with respx.mock(assert_all_called=False) as router:
        any_call = router.route().mock(return_value=ok(nylas_event()))
        resp = one(get, "GET", meeting_id)
    assert (resp["statusCode"], error_code(resp)) == (400, "invalid_request")
    assert not any_call.called


def test_grant_gone_at_nylas_is_reauth_required(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    get = load_handler("get_meeting")
    with respx.mock() as router:
        router.get(f"{EVENTS}/ev1").mock(
            return_value=httpx.Response(404, json={"error": {"type": "grant.not_found", "message": "no"}})
        )
        resp = one(get, "GET")
    assert (resp["statusCode"], error_code(resp)) == (409, "reauth_required")


# --- beta ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "method", "suffix", "body"),
    [
        ("create_meeting", "POST", "", BODY),
        ("get_meeting", "GET", "/ev1", None),
        ("update_meeting", "PATCH", "/ev1", {"title": "x"}),
        ("delete_meeting", "DELETE", "/ev1", None),
    ],
)
def test_beta_flavour_answers_unsupported_flavour(
    meetings_env: Aws, monkeypatch: pytest.MonkeyPatch, name: str, method: str, suffix: str, body: Any
) -> None:
    monkeypatch.setenv("NYLAS_API", "beta")
    put_grant(meetings_env)
    handler = load_handler(name)
    path = f"/v1/users/{USER_PATH}/meetings{suffix}"
    raw = json.dumps(body) if body is not None else None
    with respx.mock(assert_all_called=False) as router:
        any_call = router.route().mock(return_value=httpx.Response(200, json={}))
        resp = call(handler, http_event(method, path, headers={**AUTH, **JSON}, body=raw))
        unauth = call(handler, http_event(method, path, headers=JSON, body=raw))
    assert (resp["statusCode"], error_code(resp)) == (400, "unsupported_flavour")
    assert unauth["statusCode"] == 401
    assert not any_call.called


def test_the_same_key_while_the_first_create_runs_is_409_conflict(meetings_env: Aws) -> None:
    put_grant(meetings_env)
    handler = load_handler("create_meeting")
    entered, release = threading.Event(), threading.Event()

    def slow_nylas(request: httpx.Request) -> httpx.Response:
        entered.set()
        assert release.wait(10)
        return ok(nylas_event("ev-slow"))

    results: dict[str, dict[str, Any]] = {}
    with respx.mock() as router:
        post = router.post(EVENTS).mock(side_effect=slow_nylas)
        first = threading.Thread(
            target=lambda: results.setdefault("first", create(handler, BODY, key="same"))
        )
        first.start()
        assert entered.wait(10)
        racing = create(handler, BODY, key="same")
        release.set()
        first.join(10)
        replay = create(handler, BODY, key="same")
    assert (racing["statusCode"], error_code(racing)) == (409, "conflict")
    assert results["first"]["statusCode"] == 201
    assert json.loads(replay["body"]) == json.loads(results["first"]["body"])
    assert post.call_count == 1
