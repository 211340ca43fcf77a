"""POST|GET /nylas/webhooks: signature before parsing, dedupe by notification id, newest wins, unknown
grants acknowledged, our failures → 503 (Nylas retries), never a 5xx for bad input."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from teams_connect.adapters.store.grants import GrantRecord, GrantStore
from teams_connect.adapters.store.notifications import NotificationStore
from teams_connect.domain.webhooks import WebhookService, challenge, signature_matches
from teams_connect.errors import UpstreamUnavailable
from teams_connect.rules import lifecycle

from .conftest import GRANTS, SESSIONS, Aws, FakeContext, http_event, load_handler, log_text

SECRET = "whsec-current-0123456789"
OLD_SECRET = "whsec-previous-0123456789"
T0 = 1_800_000_000
REQUIRED = ("Calendars.ReadWrite", "OnlineMeetings.ReadWrite")


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def note(kind: str, at: int, *, grant_id: str = "g-1", nid: str | None = None, **obj: Any) -> bytes:
    doc = {
        "specversion": "1.0",
        "type": kind,
        "source": "/nylas/system",
        "id": nid or uuid.uuid4().hex,
        "time": at,
        "webhook_delivery_attempt": 1,
        "data": {"application_id": "app", "object": {"grant_id": grant_id, "email": "ada@x.example", **obj}},
    }
    return json.dumps(doc).encode()


def post(body: bytes, *, sig: str | None = "auto", b64: bool = False, **headers: str) -> dict[str, Any]:
    h = {"content-type": "application/json", **headers}
    if sig == "auto":
        h["x-nylas-signature"] = sign(body)
    elif sig is not None:
        h["x-nylas-signature"] = sig
    event = http_event("POST", "/nylas/webhooks", headers=h)
    if b64:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body.decode("utf-8", "surrogateescape")
    return event


class Secrets:
    def __init__(self, *values: str) -> None:
        self.values = values
        self.reads: list[bool] = []

    def __call__(self, force: bool) -> tuple[str, ...]:
        self.reads.append(force)
        return self.values


def seed(aws: Aws, *, user: str = "u1", grant: str = "g-1", status: str = "valid", at: int = T0) -> None:
    record = GrantRecord(
        user_id=user,
        grant_id=grant,
        email="ada@x.example" if user == "u1" else f"{user}@x.example",  # one mailbox each
        provider="microsoft",
        status=status,
        scopes=REQUIRED,
        connected_at=at,
        updated_at=at,
        flow_started_at=at,
        status_changed_at=at,
    )
    GrantStore(GRANTS, SESSIONS, aws.client).save(record)


def service(
    aws: Aws,
    secrets: Secrets | None = None,
    now: float = T0 + 500,
    nylas: tuple[str, tuple[str, ...] | None] = ("valid", REQUIRED),
) -> WebhookService:
    """The webhook service; `nylas` is what Nylas says of the grant when asked (a valid grant with
    the required scopes unless a test says otherwise)."""
    ticks = iter(range(0, 10_000, 100))
    return WebhookService(
        store=NotificationStore(GRANTS, aws.client),
        load_secrets=secrets or Secrets(SECRET),
        required_scopes=REQUIRED,
        read_grant=lambda grant_id: nylas,
        clock=lambda: now,
        monotonic=lambda: float(next(ticks)),
    )


def record(aws: Aws, user: str = "u1") -> GrantRecord:
    found = GrantStore(GRANTS, SESSIONS, aws.client).get(user)
    assert found is not None
    return found


# --- challenge --------------------------------------------------------------------------------------
def test_challenge_echoes_exactly_the_value_as_text() -> None:
    ok = challenge("challenge=abc-123_XYZ.~")
    assert (ok.status, ok.body, ok.content_type) == (200, "abc-123_XYZ.~", "text/plain; charset=utf-8")
    for bad in ("", "foo=1", "challenge=", "challenge=a&challenge=b", "challenge=a&x=1", "challenge=a%0Ab"):
        assert challenge(bad).status == 400, bad
    assert challenge("challenge=" + "a" * 1025).status == 400


# --- signature ------------------------------------------------------------------------------------
def test_signature_is_constant_time_hex_hmac_of_the_raw_bytes() -> None:
    body = b'{"a": 1}'
    assert signature_matches(sign(body), body, (SECRET,))
    assert signature_matches(sign(body).upper(), body, (SECRET,))
    assert signature_matches("sha256=" + sign(body), body, (SECRET,))
    assert signature_matches(sign(body, OLD_SECRET), body, (SECRET, OLD_SECRET))  # rotation overlap
    assert not signature_matches(sign(body, OLD_SECRET), body, (SECRET,))
    assert not signature_matches(sign(body), b'{"a":1}', (SECRET,))  # re-serialised JSON differs
    assert not signature_matches(None, body, (SECRET,))
    assert not signature_matches(sign(body), body, ())
    assert not signature_matches(sign(body)[:-1], body, (SECRET,))


def test_missing_or_forged_signature_is_401_and_changes_nothing(aws: Aws) -> None:
    seed(aws)
    svc = service(aws)
    body = note("grant.expired", T0 + 10)
    before = record(aws)
    for event in (
        post(body, sig=None),
        post(body, sig=sign(body, "attacker-secret-000")),
        post(body, sig="zz" * 32),
        post(body + b" ", sig=sign(body)),
    ):
        answer = svc.handle(event)
        assert answer.status == 401
        assert json.loads(answer.body)["error"]["code"] == "unauthorized"
    assert record(aws) == before


def test_a_wrong_signature_rereads_the_secret_at_most_once_per_interval(aws: Aws) -> None:
    seed(aws)
    secrets = Secrets(SECRET)
    ticks = iter([0.0, 10.0, 40.0, 41.0])
    svc = WebhookService(
        NotificationStore(GRANTS, aws.client), secrets, REQUIRED, monotonic=lambda: next(ticks)
    )
    svc._last_refresh = -100.0
    forged = post(note("grant.expired", T0 + 1), sig="ab" * 32)
    for _ in range(4):
        assert svc.handle(forged).status == 401
    assert secrets.reads.count(True) == 2  # at 0 s and at 40 s, not at 10 s or 41 s


def test_signature_is_checked_on_the_base64_decoded_gzip_bytes(aws: Aws) -> None:
    seed(aws)
    svc = service(aws)
    zipped = gzip.compress(note("grant.expired", T0 + 10))
    event = post(zipped, b64=True, **{"content-encoding": "gzip", "content-type": "application/json"})
    assert svc.handle(event).status == 200
    assert record(aws).status == "expired"
    # Signed over the decompressed JSON instead of the bytes received: refused.
    plain = gzip.decompress(zipped)
    event = post(zipped, sig=sign(plain), b64=True, **{"content-encoding": "gzip"})
    assert svc.handle(event).status == 401


# --- state ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status"),
    [("grant.expired", "expired"), ("grant.deleted", "revoked")],
)
def test_notifications_set_the_status_and_when_it_changed(aws: Aws, kind: str, status: str) -> None:
    seed(aws)
    answer = service(aws).handle(post(note(kind, T0 + 60)))
    assert (answer.status, json.loads(answer.body)) == (200, {"status": "applied"})
    rec = record(aws)
    assert (rec.status, rec.status_changed_at, rec.notified_at) == (status, T0 + 60, T0 + 60)


def test_reauthentication_makes_an_expired_record_valid_again(aws: Aws) -> None:
    seed(aws, status="expired")
    body = note("grant.updated", T0 + 60, code=25027, reauthentication_flag=True)
    assert service(aws).handle(post(body)).status == 200
    rec = record(aws)
    assert (rec.status, rec.status_changed_at, rec.grant_id) == ("valid", T0 + 60, "g-1")


def test_an_update_naming_no_scopes_is_decided_by_nylas_scopes_taken_away_need_reauth(aws: Aws) -> None:
    """Chaos campaign finding: Nylas's grant.updated names no scopes, so a scope reduction at Nylas
    must be read from Nylas, else the record stays `valid` with a grant that cannot create meetings."""
    seed(aws)
    body = note("grant.updated", T0 + 60)
    lacking = service(aws, nylas=("valid", ("Calendars.ReadWrite", "User.Read")))
    assert lacking.handle(post(body)).status == 200
    rec = record(aws)
    assert (rec.status, rec.missing_scopes) == ("needs_reauth", ("OnlineMeetings.ReadWrite",))


def test_an_update_naming_no_scopes_while_nylas_is_down_is_retried_not_guessed(aws: Aws) -> None:
    seed(aws, status="expired")

    def down(grant_id: str) -> tuple[str, tuple[str, ...] | None]:
        raise UpstreamUnavailable()

    svc = service(aws)
    svc.read_grant = down
    assert svc.handle(post(note("grant.updated", T0 + 60))).status == 503
    assert record(aws).status == "expired"  # unchanged: Nylas redelivers


def test_an_update_that_changes_nothing_shown_keeps_updated_at(aws: Aws) -> None:
    """A re-consent that keeps status and scopes (e.g. the same mailbox refused for another user) is
    recorded for ordering (`notified_at`) but leaves the record as the app sees it."""
    seed(aws)
    before = record(aws)
    assert service(aws).handle(post(note("grant.updated", T0 + 60, code=25027))).status == 200
    after = record(aws)
    assert (after.status, after.updated_at, after.status_changed_at) == ("valid", T0, T0)
    assert after.notified_at == T0 + 60 > before.notified_at
    # ... and a change that shows does move it
    assert service(aws, now=T0 + 900).handle(post(note("grant.expired", T0 + 120))).status == 200
    assert (record(aws).status, record(aws).updated_at) == ("expired", T0 + 900)


def test_granted_scopes_missing_a_required_one_read_needs_reauth(aws: Aws) -> None:
    seed(aws)
    body = note("grant.created", T0 + 60, scope=["Calendars.ReadWrite", "User.Read"])
    assert service(aws).handle(post(body)).status == 200
    rec = record(aws)
    assert (rec.status, rec.missing_scopes) == ("needs_reauth", ("OnlineMeetings.ReadWrite",))
    full = note(
        "grant.updated", T0 + 70, scope=["https://graph.microsoft.com/calendars.readwrite", *REQUIRED]
    )
    assert service(aws).handle(post(full)).status == 200
    assert (record(aws).status, record(aws).missing_scopes) == ("valid", ())


def test_a_duplicate_changes_nothing(aws: Aws) -> None:
    seed(aws)
    svc = service(aws)
    expired = note("grant.expired", T0 + 60, nid="n-1")
    assert json.loads(svc.handle(post(expired)).body) == {"status": "applied"}
    valid = note("grant.updated", T0 + 70, nid="n-2")
    assert svc.handle(post(valid)).status == 200
    after = record(aws)
    # The same notification again (Nylas's retry of n-1), and n-2 again: no change.
    assert json.loads(svc.handle(post(expired)).body) == {"status": "duplicate"}
    assert json.loads(svc.handle(post(valid)).body) == {"status": "duplicate"}
    assert record(aws) == after


def test_a_duplicate_id_with_a_newer_time_is_still_a_duplicate(aws: Aws) -> None:
    seed(aws)
    svc = service(aws)
    assert svc.handle(post(note("grant.expired", T0 + 60, nid="n-1"))).status == 200
    again = note("grant.updated", T0 + 90, nid="n-1")  # forged-looking replay, same id
    assert json.loads(svc.handle(post(again)).body) == {"status": "duplicate"}
    assert record(aws).status == "expired"


def test_an_older_notification_never_overwrites_a_newer_state(aws: Aws) -> None:
    seed(aws)
    svc = service(aws)
    assert svc.handle(post(note("grant.updated", T0 + 90))).status == 200  # newer, delivered first
    late = note("grant.expired", T0 + 60)  # older, delivered late
    assert json.loads(svc.handle(post(late)).body) == {"status": "stale"}
    assert record(aws).status == "valid"
    # Older than the connection itself (the callback wrote at T0): ignored as well.
    seed(aws, user="u2", grant="g-2", at=T0 + 200)
    assert json.loads(svc.handle(post(note("grant.expired", T0 + 100, grant_id="g-2"))).body) == {
        "status": "stale"
    }
    assert record(aws, "u2").status == "valid"
    # In the same second as our own write (the callback that stored the connection): time cannot
    # order them, Nylas decides (issue 19; tests/unit/test_security_review_3.py): it says valid.
    svc.read_grant = lambda grant_id: ("valid", None)
    assert json.loads(svc.handle(post(note("grant.expired", T0 + 200, grant_id="g-2"))).body) == {
        "status": "applied"
    }
    assert record(aws, "u2").status == "valid"
    assert json.loads(svc.handle(post(note("grant.expired", T0 + 201, grant_id="g-2"))).body) == {
        "status": "applied"
    }
    assert record(aws, "u2").status == "expired"


def test_unknown_grant_is_acknowledged_and_logged_without_pii(
    aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    seed(aws)
    answer = service(aws).handle(post(note("grant.expired", T0 + 60, grant_id="someone-elses-grant")))
    assert (answer.status, json.loads(answer.body)) == (200, {"status": "unknown_grant"})
    assert record(aws).status == "valid"
    logs = log_text(caplog)
    assert "someone-elses-grant" not in logs
    assert "ada@x.example" not in logs


def test_other_triggers_are_acknowledged_and_ignored(aws: Aws) -> None:
    seed(aws)
    answer = service(aws).handle(post(note("event.created", T0 + 60)))
    assert (answer.status, json.loads(answer.body)) == (200, {"status": "ignored"})
    assert record(aws).status == "valid"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "x", "type": "grant.expired"}',
        b'{"id": "x", "type": "grant.expired", "time": "yesterday", "data": {"object": {"grant_id": "g"}}}',
        b'{"id": "x", "type": "grant.expired", "time": 1800000000, "data": {"object": {}}}',
        b'{"id": "x", "id": "y", "type": "grant.expired", "time": 1, "data": {"object": {"grant_id": "g"}}}',
        b"\xff\xfe",
        b"[" * 5000,
    ],
)
def test_malformed_signed_bodies_are_400_never_5xx(aws: Aws, body: bytes) -> None:
    seed(aws)
    answer = service(aws).handle(post(body, b64=True))
    assert answer.status == 400
    assert record(aws).status == "valid"


def test_oversized_bodies_and_gzip_bombs_are_413(aws: Aws) -> None:
    svc = service(aws)
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert svc.handle(post(big, b64=True)).status == 413
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    assert svc.handle(post(bomb, b64=True, **{"content-encoding": "gzip"})).status == 413
    assert svc.handle(post(b"\x1f\x8bnot-gzip", b64=True)).status == 400


def test_other_methods_are_405(aws: Aws) -> None:
    assert service(aws).handle(http_event("PUT", "/nylas/webhooks")).status == 405


class Broken:
    def __getattr__(self, name: str) -> Any:
        def fail(**_: Any) -> Any:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, name)

        return fail


def test_our_failures_answer_503_so_that_nylas_retries(aws: Aws) -> None:
    svc = WebhookService(NotificationStore(GRANTS, Broken()), Secrets(SECRET), REQUIRED)
    answer = svc.handle(post(note("grant.expired", T0 + 60)))
    assert answer.status == 503

    def no_secret(_force: bool) -> tuple[str, ...]:
        from teams_connect.errors import UpstreamUnavailable

        raise UpstreamUnavailable()

    svc = WebhookService(NotificationStore(GRANTS, aws.client), no_secret, REQUIRED)
    assert svc.handle(post(note("grant.expired", T0 + 60))).status == 503


# --- the function ---------------------------------------------------------------------------------
def test_handler_with_the_secret_from_secrets_manager(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    arn = sm.create_secret(
        Name=f"tc/webhook-{uuid.uuid4().hex[:6]}",
        SecretString=json.dumps({"webhook_id": "wh-1", "webhook_secret": SECRET}),
    )["ARN"]
    for key, value in aws.env(WEBHOOK_SECRET_ARN=arn).items():
        monkeypatch.setenv(key, value)
    now = int(time.time())  # the handler's own clock: a notification from the future would ask Nylas
    seed(aws, at=now - 100)
    app = load_handler("nylas_webhooks")
    got = app.lambda_handler(http_event("GET", "/nylas/webhooks", raw_query="challenge=c-1"), FakeContext())
    assert (got["statusCode"], got["body"], got["headers"]["Content-Type"]) == (
        200,
        "c-1",
        "text/plain; charset=utf-8",
    )
    body = note("grant.expired", now)
    assert app.lambda_handler(post(body), FakeContext())["statusCode"] == 200
    assert record(aws).status == lifecycle.EXPIRED
    assert app.lambda_handler(post(body, sig=sign(body, OLD_SECRET)), FakeContext())["statusCode"] == 401
    assert SECRET not in log_text(caplog)
