"""The third security review (shared/reference/security-review-3.md) and issue 19's ties, one test per
defence. Each test fails on the code the review was done against (commit 2eb86f7): it reproduces the
reviewer's scenario (or the issue's measurement) and asserts the fixed behaviour."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
import respx

from teams_connect.adapters.nylas.http import NylasError, NylasHttp, counts_as_outage
from teams_connect.adapters.store.notifications import NotificationStore
from teams_connect.domain.webhooks import WebhookService, challenge

from .conftest import GRANTS, Aws
from .test_meetings import meetings_env  # noqa: F401  (the fixture, for G10)
from .test_webhooks import REQUIRED, SECRET, T0, Secrets, note, post, record, seed


class Nylas:
    """What Nylas says of each grant (the webhook's `read_grant`), and how often it was asked."""

    def __init__(self, **states: str) -> None:
        self.states = states
        self.asked: list[str] = []

    def __call__(self, grant_id: str) -> tuple[str, tuple[str, ...] | None]:
        self.asked.append(grant_id)
        state = self.states[grant_id]
        if state == "down":
            from teams_connect.errors import UpstreamUnavailable

            raise UpstreamUnavailable()
        return state, None


def tie_service(aws: Aws, nylas: Nylas, now: float = T0 + 500) -> WebhookService:
    ticks = iter(range(0, 10_000, 100))
    return WebhookService(
        store=NotificationStore(GRANTS, aws.client),
        load_secrets=Secrets(SECRET),
        required_scopes=REQUIRED,
        read_grant=nylas,
        clock=lambda: now,
        monotonic=lambda: float(next(ticks)),
    )


def status_of(answer: Any) -> str:
    return str(json.loads(answer.body)["status"])


# --------------------------------------------------------------------------- issue 19, item 1: ties
def test_connect_then_expire_in_the_same_second_ends_expired(aws: Aws) -> None:
    """The issue's measurement: the callback wrote at T0, Nylas expired the grant in that second."""
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "invalid"})
    svc = tie_service(aws, nylas)
    assert status_of(svc.handle(post(note("grant.expired", T0)))) == "applied"
    assert nylas.asked == ["g-1"]
    assert (record(aws).status, record(aws).status_changed_at) == ("expired", T0)


def test_a_same_second_notification_nylas_contradicts_changes_nothing(aws: Aws) -> None:
    """A reconnect at T0 and an expiry notification of T0 that came before it: Nylas says valid."""
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "valid"})
    assert status_of(tie_service(aws, nylas).handle(post(note("grant.expired", T0)))) == "applied"
    assert record(aws).status == "valid"


def test_two_notifications_in_one_second_end_as_nylas_says(aws: Aws) -> None:
    for order in (("grant.expired", "grant.updated"), ("grant.updated", "grant.expired")):
        aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": "USER#u1"}})
        aws.client.delete_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-1"}})
        seed(aws, at=T0)
        nylas = Nylas(**{"g-1": "valid"})  # re-authenticated: the grant.updated came last
        svc = tie_service(aws, nylas)
        for kind in order:
            svc.handle(post(note(kind, T0 + 7)))
        assert record(aws).status == "valid", order
        nylas.states["g-1"] = "invalid"  # and the other way round
        svc.handle(post(note("grant.expired", T0 + 7)))
        assert record(aws).status == "expired", order


def test_a_gone_grant_reads_revoked_and_nylas_down_is_503_and_changes_nothing(aws: Aws) -> None:
    seed(aws, at=T0)
    down = Nylas(**{"g-1": "down"})
    answer = tie_service(aws, down).handle(post(note("grant.deleted", T0)))
    assert answer.status == 503  # Nylas redelivers
    assert record(aws).status == "valid"
    gone = Nylas(**{"g-1": "gone"})
    assert status_of(tie_service(aws, gone).handle(post(note("grant.deleted", T0)))) == "applied"
    assert record(aws).status == "revoked"


def test_a_same_second_notification_that_changes_nothing_never_asks_nylas(aws: Aws) -> None:
    """The grant.created of the connection just stored, in the same second: nothing to decide."""
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "down"})
    assert status_of(tie_service(aws, nylas).handle(post(note("grant.created", T0)))) == "stale"
    assert nylas.asked == []


def test_a_duplicate_in_the_same_second_never_asks_nylas(aws: Aws) -> None:
    seed(aws, at=T0)
    nylas = Nylas(**{"g-1": "invalid"})
    svc = tie_service(aws, nylas)
    body = note("grant.expired", T0, nid="n-1")
    assert status_of(svc.handle(post(body))) == "applied"
    assert status_of(svc.handle(post(body))) == "duplicate"
    assert nylas.asked == ["g-1"]


def test_g3_a_future_time_cannot_pin_the_record(aws: Aws) -> None:
    """Review 3, G3 step 5-6: `time=99999999999` must not make every later genuine notification stale."""
    seed(aws, at=T0)
    now = T0 + 500
    nylas = Nylas(**{"g-1": "valid"})
    svc = tie_service(aws, nylas, now=now)
    assert status_of(svc.handle(post(note("grant.deleted", 99_999_999_999)))) == "applied"
    assert nylas.asked == ["g-1"]  # a future stamp orders nothing: Nylas decides (the grant is fine)
    assert (record(aws).status, record(aws).notified_at) == ("valid", now)  # as of now, not the future
    # A future grant.updated that shows nothing new (its scopes are the record's) changes nothing.
    assert status_of(svc.handle(post(note("grant.updated", 99_999_999_998, scope=list(REQUIRED))))) == "stale"
    assert nylas.asked == ["g-1"]
    # One without scopes only Nylas can judge: asked again, and still recorded as of now.
    assert status_of(svc.handle(post(note("grant.updated", 99_999_999_997)))) == "applied"
    assert nylas.asked == ["g-1", "g-1"]
    assert (record(aws).status, record(aws).notified_at) == ("valid", now)
    # The genuine expiry that follows is applied.
    assert status_of(svc.handle(post(note("grant.expired", now + 1)))) == "applied"
    assert record(aws).status == "expired"


# --- G3: the previous secret expires
def test_g3_the_rotated_out_webhook_secret_stops_working_after_the_overlap(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from teams_connect.adapters import secrets as tc_secrets
    from teams_connect.config import Settings

    now = 1_800_000_000.0
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"wh-{now}",
        SecretString=json.dumps(
            {
                "webhook_id": "w",
                "webhook_secret": "new-secret-0123",
                "previous_webhook_secret": "old-secret-0123",
                "previous_expires_at": int(now) + 3600,
            }
        ),
    )["ARN"]
    settings = Settings.from_env(aws.env(WEBHOOK_SECRET_ARN=arn))
    assert tc_secrets.webhook_secrets(settings, now=lambda: now) == ("new-secret-0123", "old-secret-0123")
    assert tc_secrets.webhook_secrets(settings, now=lambda: now + 3601) == ("new-secret-0123",)


def test_g3_a_previous_secret_without_an_expiry_is_not_accepted(aws: Aws) -> None:
    from teams_connect.adapters import secrets as tc_secrets
    from teams_connect.config import Settings

    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="wh-legacy",
        SecretString=json.dumps(
            {"webhook_secret": "new-secret-0123", "previous_webhook_secret": "old-secret-0123"}
        ),
    )["ARN"]
    settings = Settings.from_env(aws.env(WEBHOOK_SECRET_ARN=arn))
    assert tc_secrets.webhook_secrets(settings) == ("new-secret-0123",)


# --- G4: per-grant failures
BASE = "https://api.us.nylas.com"
PROVIDER_504 = {
    "request_id": "r",
    "error": {
        "type": "provider_error",
        "message": "mailbox",
        "provider_error": {"error": "ErrorMailboxMoveInProgress"},
    },
}
PROVIDER_429 = {
    "request_id": "r",
    "error": {"type": "rate_limit_error", "message": "slow down", "provider_error": {}},
}


@pytest.mark.parametrize(("status", "body"), [(504, PROVIDER_504), (429, PROVIDER_429)], ids=["504", "429"])
def test_g4_one_mailboxs_failures_do_not_open_the_breaker_for_everyone(status: int, body: Any) -> None:
    http = NylasHttp(BASE, sleep=lambda _: None)
    with respx.mock() as router:
        attacker = router.get(f"{BASE}/v3/grants/a/events/e").mock(
            return_value=httpx.Response(status, json=body)
        )
        victim = router.get(f"{BASE}/v3/grants/v/events/e").mock(
            return_value=httpx.Response(200, json={"data": {}})
        )
        for _ in range(4):  # 12 failed attempts of one grant
            with pytest.raises(NylasError) as err:
                http.request("GET", "/v3/grants/a/events/e", route="t", idempotent=True)
            assert err.value.grant_scoped
        assert http.breaker.current_state == "closed"
        assert http.request("GET", "/v3/grants/v/events/e", route="t", idempotent=True).status == 200
    assert (attacker.call_count, victim.call_count) == (12, 1)


def test_g4_nylas_wide_failures_still_open_the_breaker() -> None:
    assert counts_as_outage(NylasError(503, "api.internal_error"))
    assert counts_as_outage(NylasError(429, "nylas_rate_limit_exceeded"))
    assert counts_as_outage(NylasError(None, "ConnectError"))
    assert not counts_as_outage(NylasError(504, "provider_error", provider_error=""))
    assert not counts_as_outage(NylasError(429, "rate_limit_error", provider_error=""))


# --- G9: the challenge
def test_g9_the_challenge_echoes_only_a_token_and_sandboxes_it() -> None:
    assert challenge("challenge=%3Csvg%2Fonload%3Dalert(document.domain)%3E").status == 400
    assert challenge("challenge=" + "a" * 257).status == 400
    answer = challenge("challenge=Xy_9-abc.DEF~1").to_lambda()
    assert (answer["statusCode"], answer["body"]) == (200, "Xy_9-abc.DEF~1")
    assert answer["headers"]["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert answer["headers"]["Content-Disposition"] == 'inline; filename="challenge.txt"'
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"


# --- G11: unknown 401 types
def test_g11_only_a_grant_scoped_401_marks_the_user_expired() -> None:
    from teams_connect.adapters.nylas.events import GrantExpired, events_error
    from teams_connect.errors import ServerError

    assert isinstance(events_error(NylasError(401, "grant.refresh_token_invalid")), GrantExpired)
    invalid_grant = NylasError(401, "unauthorized_client", provider_error="invalid_grant")
    assert isinstance(events_error(invalid_grant), GrantExpired)
    for kind in ("api.wrong_region", "unknown", "api.authentication_error"):
        assert isinstance(events_error(NylasError(401, kind)), ServerError)


# --- G1: the sweeper never fails silently
class DeniedSecrets:
    """Secrets Manager as a role without kms:Decrypt on a customer-managed key sees it."""

    def get_secret_value(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed to decrypt"}}
        raise ClientError(error, "GetSecretValue")  # type: ignore[arg-type]


def test_g1_an_unreadable_secret_fails_the_sweep_invocation_and_is_counted(
    handler_env: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from teams_connect.adapters import secrets as tc_secrets
    from teams_connect.adapters.store.grants import GrantStore

    from .conftest import ROOT, SESSIONS, FakeContext, load_handler

    grants = GrantStore(GRANTS, SESSIONS, handler_env.client)
    now = int(time.time())
    grants.outbox.enqueue("g-old", due=now - 7200, now=now - 7200)
    sweeper = load_handler("revoke_sweeper")
    monkeypatch.setattr(tc_secrets, "_client", DeniedSecrets())
    event = json.loads((ROOT / "events" / "revoke_sweeper" / "scheduled.json").read_text())
    with respx.mock(assert_all_called=False) as router:
        delete = router.delete(url__regex=r".*/v3/grants/.*").mock(return_value=httpx.Response(200, json={}))
        with pytest.raises(sweeper.SecretUnreadable):
            sweeper.lambda_handler(event, FakeContext())
        assert delete.call_count == 0
    emitted = capsys.readouterr().out
    assert '"RevokeFailed":[1.0]' in emitted.replace(" ", "") or '"RevokeFailed":1.0' in emitted.replace(
        " ", ""
    )
    assert "OutboxOldestDueAge" in emitted
    (entry,) = grants.outbox.due(now + 10**6)
    assert (entry.grant_id, entry.attempts) == ("g-old", 1)  # postponed, retried by a later run


def test_g1_the_sweep_reports_how_overdue_the_oldest_entry_is(v3: Any, aws: Aws) -> None:
    from teams_connect.domain.revocations import Revoker

    now = int(v3.clock.now)
    v3.flow.grants.outbox.enqueue("g-a", due=now - 5000, now=now - 5000)
    v3.flow.grants.outbox.enqueue("g-b", due=now - 10, now=now - 10)
    with respx.mock() as router:
        router.delete(url__regex=r".*/v3/grants/.*").mock(return_value=httpx.Response(200, json={}))
        report = Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock).sweep()
    assert (report.revoked, report.oldest_due_age, report.secret_unreadable) == (2, 5000, False)


def test_g1_every_reader_of_the_nylas_secret_may_decrypt_it_with_the_secrets_key() -> None:
    """The template side of G1 (the least-privilege gate's KMS model is issue 20's): every function
    whose policy reads NylasSecretArn has the SecretsKey statement under HasSecretsKmsKey."""
    from local.template import load_template

    resources = load_template()["Resources"]
    readers = []
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        text = json.dumps(resource.get("Properties", {}).get("Policies", []))
        if '{"Ref": "NylasSecretArn"}' in text:
            readers.append(name)
            assert '"Sid": "SecretsKey"' in text, name
            assert "HasSecretsKmsKey" in text, name
    assert "RevokeSweeperFunction" in readers
    assert "NylasWebhooksFunction" in readers  # the ties read the grant from Nylas
    alarms = {
        r["Properties"]["MetricName"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {"RevokeFailed", "OutboxOldestDueAge"} <= alarms


# --- G7: no revoke of a re-linked grant
def test_g7_a_relink_while_the_sweep_revokes_the_grant_does_not_keep_a_revoked_grant(
    v3: Any, aws: Aws
) -> None:
    """The review's scenario: an abandoned attempt left a deferred REVOKE#G; the user re-links the same
    mailbox (v3 keeps the grant id) while the sweep's DELETE of G is in flight."""
    from teams_connect.domain.revocations import Revoker

    from .test_flow_v3 import GRANT_ID
    from .test_security_review_2 import connect, grants_items

    now = int(v3.clock.now)
    v3.flow.grants.outbox.enqueue(GRANT_ID, due=now, now=now)
    relinked: list[Any] = []
    with respx.mock() as router:

        def relink_during_delete(request: httpx.Request) -> httpx.Response:
            relinked.append(connect(v3, router, GRANT_ID))
            return httpx.Response(200, json={})

        router.delete(f"https://api.us.nylas.com/v3/grants/{GRANT_ID}").mock(side_effect=relink_during_delete)
        report = Revoker(v3.flow.grants, v3.flow.nylas, clock=v3.clock).sweep()
    assert report.revoked == 1
    (outcome,) = relinked
    assert not outcome.connected  # refused, retryably: a new flow gets Nylas's new grant id
    assert outcome.error is not None
    assert outcome.error.code == "upstream_unavailable"
    record = v3.flow.grants.get("user-1")
    assert record is None or record.grant_id != GRANT_ID  # no record holds the revoked grant
    assert f"GRANT#{GRANT_ID}" not in grants_items(aws)


def test_g7_a_held_grant_is_never_claimed_and_a_leased_entry_is_not_claimed_twice(v3: Any, aws: Aws) -> None:
    from .test_flow_v3 import GRANT_ID
    from .test_security_review_2 import connect

    outbox = v3.flow.grants.outbox
    now = int(v3.clock.now)
    outbox.enqueue("g-free", due=now, now=now)
    assert outbox.claim("g-free", now=now) == "claimed"
    assert outbox.claim("g-free", now=now + 1) == "busy"  # another attempt holds the lease
    assert outbox.claim("g-free", now=now + 121) == "claimed"  # the lease ran out
    with respx.mock() as router:
        assert connect(v3, router, GRANT_ID).connected
    outbox.enqueue(GRANT_ID, due=now, now=now)
    assert outbox.claim(GRANT_ID, now=now) == "held"


# --- G5: the meetings routes re-read keys
def test_g5_a_key_added_by_a_rotation_works_at_once_on_the_meetings_routes(
    handler_env: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    from teams_connect.rules.security import api_key_recognised, new_api_key

    from .conftest import API_KEY, FakeContext, http_event, load_handler

    get = load_handler("get_meeting")
    new_key = new_api_key()
    assert api_key_recognised(new_key.encode())

    def read(key: str) -> int:
        event = http_event("GET", "/v1/users/u1/meetings/ev1", headers={"authorization": f"Bearer {key}"})
        return int(get.lambda_handler(event, FakeContext())["statusCode"])

    assert read(API_KEY) == 404  # warm: keys cached (no such user)
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    before = sm.get_secret_value(SecretId=handler_env.api_keys_secret_arn)["SecretString"]
    keys = json.loads(before)["api_keys"]
    sm.put_secret_value(
        SecretId=handler_env.api_keys_secret_arn, SecretString=json.dumps({"api_keys": [*keys, new_key]})
    )
    try:
        assert read("not-a-key-of-anyone-0123456789") == 401  # spends the shared slot only
        assert read(new_key) == 404  # accepted at once: its own re-read slot
    finally:
        sm.put_secret_value(SecretId=handler_env.api_keys_secret_arn, SecretString=before)


def test_g5_random_tokens_cannot_use_up_the_re_read_of_recognisable_keys(aws: Aws) -> None:
    from teams_connect.adapters.secrets import SecretsProvider
    from teams_connect.config import Settings

    class Counting(SecretsProvider):
        reads = 0

        def api_keys(self, *, force_fetch: bool = False) -> tuple[str, ...]:
            self.reads += force_fetch
            return ("k" * 20,)

    now = [1000.0]
    provider = Counting(Settings.from_env(aws.env()), clock=lambda: now[0])
    for token in ("junk-0123456789abcdef", "tck_" + "a" * 43 + "_00000000"):  # a random one; a bad check
        with pytest.raises(Exception, match="API key"):
            provider.authenticate(f"Bearer {token}")
    assert provider.reads == 1  # only the shared slot was spent
    from teams_connect.rules.security import new_api_key

    with pytest.raises(Exception, match="API key"):
        provider.authenticate(f"Bearer {new_api_key()}")  # recognisable: its own slot
    assert provider.reads == 2


# --- G10: idempotency and the grant
def test_g10_a_replay_after_a_reconnect_with_another_mailbox_schedules_anew(
    meetings_env: Aws,  # noqa: F811 - the fixture imported above
) -> None:
    from . import test_meetings as m
    from .conftest import load_handler

    env = meetings_env
    handler = load_handler("create_meeting")
    m.put_grant(env)
    with respx.mock() as router:
        router.post(url__regex=rf".*/v3/grants/{m.GRANT_ID}/events.*").mock(
            return_value=m.ok(m.nylas_event("ev-old"))
        )
        first = m.create(handler, m.BODY, key="k-1")
        assert first["statusCode"] == 201
        other = "0b7c2d9e-2222-4c1a-9d1e-0f8e7c6b5a49"
        item = m.grant_item(env)
        item["grant_id"] = {"S": other}
        env.client.put_item(TableName=GRANTS, Item=item)  # disconnected, reconnected another mailbox
        new = router.post(url__regex=rf".*/v3/grants/{other}/events.*").mock(
            return_value=m.ok({**m.nylas_event("ev-new"), "grant_id": other})
        )
        second = m.create(handler, m.BODY, key="k-1")
    assert second["statusCode"] == 201
    assert json.loads(second["body"])["meeting_id"] == "ev-new"
    assert new.call_count == 1


# --- G8: IAM hygiene in the template
def test_g8_the_publisher_is_bounded_and_writes_are_scoped_to_their_items() -> None:
    from local.template import load_template

    resources = load_template()["Resources"]
    for name, table in (("GrantEvents", "Grants"), ("SessionEvents", "Sessions")):
        publisher = resources[f"{name}Function"]["Properties"]
        assert publisher["PermissionsBoundary"] == {"Ref": f"{name}Boundary"}
        boundary = resources[f"{name}Boundary"]["Properties"]["PolicyDocument"]["Statement"]
        stream = next(s for s in boundary if s["Sid"] == f"{table}StreamOnly")
        assert stream["Resource"] == {"Fn::Sub": f"${{{table}Table.Arn}}/stream/*"}

    def statements(function: str) -> dict[str, Any]:
        found = resources[function]["Properties"]["Policies"][0]["Statement"]
        return {s["Sid"]: s for s in found if isinstance(s, dict) and "Sid" in s}

    for name in ("GrantEventsFunction", "SessionEventsFunction"):
        assert "kms:ViaService" in statements(name)["StreamKey"]["Condition"]["StringEquals"]
    webhook = statements("NylasWebhooksFunction")
    leading = "dynamodb:LeadingKeys"
    assert webhook["GrantsWebhookMarkers"]["Condition"]["ForAllValues:StringLike"][leading] == [
        "NOTIFICATION#*"
    ]
    assert webhook["GrantsWebhookRecords"]["Condition"]["ForAllValues:StringLike"][leading] == ["USER#*"]
    assert webhook["GrantsWebhook"]["Action"] == ["dynamodb:GetItem"]  # no unscoped write
    for name in (
        "CreateMeetingFunction",
        "GetMeetingFunction",
        "UpdateMeetingFunction",
        "DeleteMeetingFunction",
    ):
        assert statements(name)["GrantsMeetings"]["Condition"]["ForAllValues:StringLike"][leading] == [
            "USER#*"
        ]
