from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from teams_connect.adapters.store.grants import GrantRecord, GrantStore, Superseded, mailbox_key
from teams_connect.adapters.store.sessions import AlreadyCompleted, SessionStore, StartData
from teams_connect.errors import (
    AccountAlreadyLinked,
    BrowserMismatch,
    SessionExpired,
    SessionInvalid,
    SessionUsed,
)
from teams_connect.rules import security

from .conftest import GRANTS, SESSIONS, Aws

NOW = 1_800_000_000


def _start_data(state_hash: str = "s" * 64, binding_hash: str = "b" * 64) -> StartData:
    return StartData(
        state_hash=state_hash,
        binding_hash=binding_hash,
        code_verifier="v" * 64,
        nylas_api="v3",
        nylas_base_url="https://api.us.nylas.com",
        client_id="cid",
    )


def _new(sessions: SessionStore, sid: str | None = None, ttl: int = 600) -> str:
    sid = sid or security.new_session_id()
    sessions.create(
        session_id=sid,
        user_id="u1",
        now=NOW,
        ttl_seconds=ttl,
        return_to="https://a.example/x",
        login_hint=None,
        account_id=None,
    )
    return sid


def _status(aws: Aws, sid: str) -> str:
    return str(aws.client.get_item(TableName=SESSIONS, Key={"session_id": {"S": sid}})["Item"]["status"]["S"])


def test_session_create_start_consume_happy_path(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    sid = _new(sessions)
    item = aws.client.get_item(TableName=SESSIONS, Key={"session_id": {"S": sid}})["Item"]
    assert item["status"]["S"] == "pending"
    assert int(item["expires_at"]["N"]) == NOW + 600
    assert int(item["ttl"]["N"]) > NOW + 600
    started = sessions.start(sid, _start_data(), now=NOW + 1, flow_ttl=900)
    assert started.status == "started"
    assert started.started_at == NOW + 1
    assert started.code_verifier == "v" * 64
    consumed = sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 2)
    assert consumed.status == "consumed"
    assert consumed.return_to == "https://a.example/x"


def test_start_only_once_and_only_while_unexpired(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    with pytest.raises(SessionInvalid):
        sessions.start(security.new_session_id(), _start_data(), now=NOW, flow_ttl=900)
    sid = _new(sessions)
    sessions.start(sid, _start_data(), now=NOW, flow_ttl=900)
    with pytest.raises(SessionUsed) as used:
        sessions.start(sid, _start_data("x" * 64), now=NOW, flow_ttl=900)
    assert used.value.return_to == "https://a.example/x"
    expired = _new(sessions)
    with pytest.raises(SessionExpired):
        sessions.start(expired, _start_data(), now=NOW + 600, flow_ttl=900)


def test_consume_refusals_are_classified_and_do_not_consume(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    sid = _new(sessions)
    with pytest.raises(SessionInvalid):  # pending: no state yet
        sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW)
    sessions.start(sid, _start_data(), now=NOW, flow_ttl=900)
    with pytest.raises(SessionInvalid) as wrong_state:
        sessions.consume(sid, state_hash="t" * 64, binding_hash="b" * 64, now=NOW)
    assert wrong_state.value.return_to is None  # unidentified: never redirect
    with pytest.raises(BrowserMismatch) as mismatch:
        sessions.consume(sid, state_hash="s" * 64, binding_hash="-", now=NOW)
    assert mismatch.value.return_to == "https://a.example/x"
    assert _status(aws, sid) == "started"  # the real browser can still finish
    with pytest.raises(SessionExpired):  # the flow's own lifetime (900 s from start) is over
        sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 900)
    sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 1)
    with pytest.raises(SessionUsed):
        sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 1)
    with pytest.raises(SessionInvalid):
        sessions.consume(security.new_session_id(), state_hash="s" * 64, binding_hash="b" * 64, now=NOW)


def test_release_makes_a_consumed_session_retryable_and_fail_is_terminal(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    sid = _new(sessions)
    sessions.start(sid, _start_data(), now=NOW, flow_ttl=900)
    sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW)
    sessions.release(sid, now=NOW)
    assert _status(aws, sid) == "started"
    sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW)
    sessions.fail(sid, error_code="grant_invalid", now=NOW)
    assert _status(aws, sid) == "failed"
    sessions.release(sid, now=NOW)  # only from consumed: no effect
    assert _status(aws, sid) == "failed"


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies a conditional write atomically; in-process moto evaluates the condition and
    writes without a lock, so threads can both pass. Serialise moto's item writes like the service."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    for name in ("update_item", "put_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.mark.usefixtures("atomic_moto")
def test_twenty_concurrent_consumes_have_exactly_one_winner(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    sid = _new(sessions)
    sessions.start(sid, _start_data(), now=NOW, flow_ttl=900)

    def attempt(_: int) -> str:
        try:
            sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 1)
            return "won"
        except SessionUsed:
            return "used"

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count("won") == 1
    assert results.count("used") == 19


def _grant(user: str, grant_id: str, started: int = NOW, email: str = "a@x.example") -> GrantRecord:
    return GrantRecord(
        user_id=user,
        grant_id=grant_id,
        email=email,
        provider="microsoft",
        status="valid",
        scopes=("Calendars.ReadWrite",),
        connected_at=started + 5,
        updated_at=started + 5,
        flow_started_at=started,
    )


def test_grant_save_completes_the_session_in_the_same_transaction(aws: Aws) -> None:
    sessions = SessionStore(SESSIONS, aws.client)
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    sid = _new(sessions)
    sessions.start(sid, _start_data(), now=NOW, flow_ttl=900)
    sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW)
    grants.save(_grant("u1", "g-1"), session_id=sid, binding_hash="b" * 64)
    assert _status(aws, sid) == "completed"
    assert grants.get("u1") == _grant("u1", "g-1")
    with pytest.raises(AlreadyCompleted):
        sessions.consume(sid, state_hash="s" * 64, binding_hash="b" * 64, now=NOW + 1)
    with pytest.raises(SessionUsed):  # a second transaction for the same session is refused
        grants.save(_grant("u1", "g-1", started=NOW + 1), session_id=sid, binding_hash="b" * 64)


def test_same_user_replaces_and_an_older_flow_cannot_overwrite(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("u1", "g-1", started=NOW))
    grants.save(_grant("u1", "g-1", started=NOW + 10, email="new@x.example"))
    record = grants.get("u1")
    assert record is not None
    assert record.email == "new@x.example"
    with pytest.raises(Superseded):
        grants.save(_grant("u1", "g-2", started=NOW + 5))
    record = grants.get("u1")
    assert record is not None
    assert record.grant_id == "g-1"


def test_mailbox_of_another_user_is_refused_and_untouched(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-shared"))
    with pytest.raises(AccountAlreadyLinked):
        grants.save(_grant("bob", "g-shared"))
    assert grants.get("bob") is None
    alice = grants.get("alice")
    assert alice is not None
    assert alice.grant_id == "g-shared"


def test_stale_guard_is_taken_over(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-old", email="old@x.example"))
    grants.save(_grant("alice", "g-new", started=NOW + 10, email="new@x.example"))  # another mailbox
    # A guard left behind by an older release (a switch now removes it): still says alice, stale.
    aws.client.put_item(TableName=GRANTS, Item={"pk": {"S": "GRANT#g-old"}, "owner": {"S": "alice"}})
    grants.save(_grant("bob", "g-old", started=NOW + 20, email="old@x.example"))
    bob = grants.get("bob")
    assert bob is not None
    assert bob.grant_id == "g-old"
    owner = aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-old"}})["Item"]["owner"]["S"]
    assert owner == "bob"
    alice = grants.get("alice")
    assert alice is not None
    assert alice.grant_id == "g-new"


def test_delete_removes_the_record_and_its_guards(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-1"))
    grants.delete("alice", "g-1", "A@x.example")
    assert grants.get("alice") is None
    assert "Item" not in aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-1"}})
    assert "Item" not in aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": mailbox_key("a@x.example")}})
    grants.save(_grant("bob", "g-2", started=NOW + 1))  # the mailbox is free again, with a new grant
    assert _owner(aws, mailbox_key("a@x.example")) == "bob"


def _owner(aws: Aws, key: str | None) -> str:
    assert key is not None
    return str(aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": key}})["Item"]["owner"]["S"])


def test_the_mailbox_guard_key_names_no_address_and_ignores_case() -> None:
    key = mailbox_key(" Alice@Contoso.com ")
    assert key == mailbox_key("alice@contoso.com")
    assert key is not None
    assert key.startswith("MAILBOX#")
    assert "contoso" not in key.lower()
    assert mailbox_key("") is None


def test_a_mailbox_stays_with_its_user_when_its_grant_is_deleted_at_nylas(aws: Aws) -> None:
    """Campaign seed 1051806548: the grant deleted at Nylas, the record `revoked`, and another user
    connecting that mailbox got a new grant id that no GRANT# guard knew: two records, one mailbox."""
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-1", email="shared@x.example"))
    aws.client.update_item(  # what the webhook writes for grant.deleted
        TableName=GRANTS,
        Key={"pk": {"S": "USER#alice"}},
        UpdateExpression="SET #st = :r",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={":r": {"S": "revoked"}},
    )
    with pytest.raises(AccountAlreadyLinked):
        grants.save(_grant("bob", "g-2", started=NOW + 10, email="Shared@X.example"))
    assert grants.get("bob") is None
    assert "Item" not in aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-2"}})
    alice = grants.get("alice")
    assert alice is not None
    assert (alice.grant_id, alice.status) == ("g-1", "revoked")
    # alice reconnects the mailbox: Nylas's new grant replaces the deleted one, the mailbox stays hers.
    assert grants.save(_grant("alice", "g-3", started=NOW + 20, email="shared@x.example")) == "g-1"
    assert _owner(aws, mailbox_key("shared@x.example")) == "alice"
    assert _owner(aws, "GRANT#g-3") == "alice"


def test_a_mailbox_switch_frees_the_old_mailbox_for_another_user(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-1", email="first@x.example"))
    with pytest.raises(AccountAlreadyLinked):
        grants.save(_grant("bob", "g-9", started=NOW + 5, email="first@x.example"))
    grants.save(_grant("alice", "g-2", started=NOW + 10, email="second@x.example"))
    grants.save(_grant("bob", "g-9", started=NOW + 20, email="first@x.example"))
    assert _owner(aws, mailbox_key("first@x.example")) == "bob"
    assert _owner(aws, mailbox_key("second@x.example")) == "alice"


def test_a_stale_mailbox_guard_is_taken_over_and_a_live_one_is_not(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("carol", "g-c", email="carol@x.example"))
    # A guard that names carol for a mailbox her record does not hold (a partial write of old).
    aws.client.put_item(
        TableName=GRANTS, Item={"pk": {"S": str(mailbox_key("x@x.example"))}, "owner": {"S": "carol"}}
    )
    grants.save(_grant("bob", "g-x", started=NOW + 5, email="x@x.example"))
    assert _owner(aws, mailbox_key("x@x.example")) == "bob"
    assert _owner(aws, mailbox_key("carol@x.example")) == "carol"
    with pytest.raises(AccountAlreadyLinked):
        grants.save(_grant("dave", "g-y", started=NOW + 6, email="carol@x.example"))


def test_an_address_changed_under_the_same_grant_moves_the_mailbox_guard(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-1", email="before@x.example"))
    grants.save(_grant("alice", "g-1", started=NOW + 10, email="after@x.example"))
    assert _owner(aws, mailbox_key("after@x.example")) == "alice"
    assert "Item" not in aws.client.get_item(
        TableName=GRANTS, Key={"pk": {"S": str(mailbox_key("before@x.example"))}}
    )


def test_delete_leaves_a_guard_that_now_belongs_to_someone_else(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.save(_grant("alice", "g-1"))
    aws.client.put_item(TableName=GRANTS, Item={"pk": {"S": "GRANT#g-1"}, "owner": {"S": "carol"}})
    aws.client.put_item(
        TableName=GRANTS, Item={"pk": {"S": str(mailbox_key("a@x.example"))}, "owner": {"S": "carol"}}
    )
    grants.delete("alice", "g-1", "a@x.example")
    assert grants.get("alice") is None
    owner = aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-1"}})["Item"]["owner"]["S"]
    assert owner == "carol"
    assert _owner(aws, mailbox_key("a@x.example")) == "carol"


# --- AWS failures: standard retries, transient transaction cancellations --------------------------
def test_the_container_client_uses_standard_retries_and_timeouts(aws: Aws) -> None:
    from teams_connect.adapters.store.base import dynamodb_client

    config = dynamodb_client().meta.config
    assert config.retries == {"mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (2, 5)


def _cancelled(reasons: list[str]) -> Any:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": r} for r in reasons],
        },
        "TransactWriteItems",
    )


class _FailingTransactions:
    def __init__(self, inner: Any, error: Exception) -> None:
        self._inner = inner
        self.error = error
        self.calls = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.calls += 1
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    ("reasons", "code"),
    [
        (["None", "ThrottlingError", "None"], "upstream_unavailable"),
        (["ProvisionedThroughputExceeded", "None", "None"], "upstream_unavailable"),
        (["TransactionConflict", "None", "None"], "upstream_unavailable"),
        (["None", "None", "ValidationError"], "server_error"),
    ],
)
def test_transaction_cancelled_without_a_failed_condition_is_classified(
    aws: Aws, reasons: list[str], code: str
) -> None:
    from teams_connect.errors import ConnectError

    client = _FailingTransactions(aws.client, _cancelled(reasons))
    grants = GrantStore(GRANTS, SESSIONS, client)
    with pytest.raises(ConnectError) as err:
        grants.save(_grant("u1", "g1"))
    assert err.value.code == code
    assert client.calls == 1
    assert aws.client.scan(TableName=GRANTS)["Count"] == 0
    with pytest.raises(ConnectError) as err2:
        grants.delete("u1", "g1")
    assert err2.value.code == code


def test_a_mailbox_switch_removes_the_old_guard_and_enqueues_its_revoke_in_one_transaction(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    old, new = "old@x.example", "new@x.example"
    assert grants.save(_grant("alice", "g-old", email=old)) is None
    assert grants.save(_grant("alice", "g-old", started=NOW + 5, email=old)) is None  # re-auth
    assert grants.save(_grant("alice", "g-new", started=NOW + 10, email=new)) == "g-old"
    assert "Item" not in aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": "GRANT#g-old"}})
    assert "Item" not in aws.client.get_item(TableName=GRANTS, Key={"pk": {"S": mailbox_key(old)}})
    assert _owner(aws, mailbox_key(new)) == "alice"
    assert [d.grant_id for d in grants.outbox.due(NOW + 15)] == ["g-old"]
    # Linking g-old again cancels its pending revoke in the same transaction.
    assert grants.save(_grant("alice", "g-old", started=NOW + 20, email=old)) == "g-new"
    assert [d.grant_id for d in grants.outbox.due(NOW + 25)] == ["g-new"]


def test_the_outbox_postpones_and_forgets_entries(aws: Aws) -> None:
    grants = GrantStore(GRANTS, SESSIONS, aws.client)
    grants.outbox.enqueue("g-1", due=NOW + 100, now=NOW)
    assert grants.outbox.due(NOW + 99) == []
    grants.outbox.postpone("g-1", due=NOW + 500)
    due = grants.outbox.due(NOW + 500)
    assert [(d.grant_id, d.attempts) for d in due] == [("g-1", 1)]
    grants.outbox.confirmed("g-1")
    assert grants.outbox.due(NOW + 10_000) == []
    grants.outbox.postpone("g-1", due=NOW)  # a gone entry is not recreated
    assert grants.outbox.due(NOW + 10_000) == []
