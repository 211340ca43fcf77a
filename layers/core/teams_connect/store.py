"""DynamoDB: the sessions table (a conditional state machine) and the grants table (transactions).

Low-level client (no resource layer), created once per container with standard retries.
Session states: pending → started → consumed → completed | failed (each step conditional);
a consumed session can be released back to started so the same browser may retry.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.errors import (
    AccountAlreadyLinked,
    BrowserMismatch,
    Conflict,
    ConnectError,
    ServerError,
    SessionExpired,
    SessionInvalid,
    SessionUsed,
    UpstreamUnavailable,
)
from teams_connect.observability import logger

PENDING, STARTED, CONSUMED, COMPLETED, FAILED = "pending", "started", "consumed", "completed", "failed"
SESSION_RETENTION_SECONDS = 3600  # TTL grace after expiry: keeps replays answerable, then gone
_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

_client: Any = None
_client_lock = threading.Lock()


def dynamodb_client() -> Any:
    """The container's one DynamoDB client (created lazily, once)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = boto3.client(
                    "dynamodb",
                    config=Config(retries={"mode": "standard"}, connect_timeout=2, read_timeout=5),
                )
    return _client


def reset_client() -> None:
    """Forget the cached client (tests)."""
    global _client
    _client = None


class AlreadyCompleted(Exception):
    """The callback was replayed by the browser that completed the session."""

    def __init__(self, session: SessionRecord) -> None:
        super().__init__("session already completed")
        self.session = session


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    status: str
    user_id: str
    created_at: int
    expires_at: int
    return_to: str | None = None
    login_hint: str | None = None
    account_id: str | None = None
    state_hash: str | None = None
    binding_hash: str | None = None
    code_verifier: str | None = field(default=None, repr=False)
    nylas_api: str | None = None
    nylas_base_url: str | None = None
    client_id: str | None = None
    provider: str | None = None
    started_at: int | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> SessionRecord:
        def s(name: str) -> str | None:
            v = item.get(name)
            return str(v["S"]) if v and "S" in v else None

        def n(name: str) -> int | None:
            v = item.get(name)
            return int(v["N"]) if v and "N" in v else None

        return cls(
            session_id=s("session_id") or "",
            status=s("status") or "",
            user_id=s("user_id") or "",
            created_at=n("created_at") or 0,
            expires_at=n("expires_at") or 0,
            return_to=s("return_to"),
            login_hint=s("login_hint"),
            account_id=s("account_id"),
            state_hash=s("state_hash"),
            binding_hash=s("binding_hash"),
            code_verifier=s("code_verifier"),
            nylas_api=s("nylas_api"),
            nylas_base_url=s("nylas_base_url"),
            client_id=s("client_id"),
            provider=s("provider"),
            started_at=n("started_at"),
        )


@dataclass(frozen=True, slots=True)
class StartData:
    """What `start` fixes on the session (compared again at the callback: mix-up defence)."""

    state_hash: str
    binding_hash: str
    code_verifier: str = field(repr=False)
    nylas_api: str
    nylas_base_url: str
    client_id: str
    provider: str = "microsoft"


@dataclass(frozen=True, slots=True)
class GrantRecord:
    user_id: str
    grant_id: str
    email: str
    provider: str
    status: str
    scopes: tuple[str, ...]
    connected_at: int
    updated_at: int
    flow_started_at: int
    # Grant lifecycle (teams_connect.lifecycle): when `status` last changed, the required scopes the
    # grant lacks, and the time of the last Nylas notification applied (newest wins).
    status_changed_at: int = 0
    missing_scopes: tuple[str, ...] = ()
    notified_at: int = 0

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": f"USER#{self.user_id}"},
            "user_id": {"S": self.user_id},
            "grant_id": {"S": self.grant_id},
            "email": {"S": self.email},
            "provider": {"S": self.provider},
            "status": {"S": self.status},
            "scopes": {"L": [{"S": x} for x in self.scopes]},
            "connected_at": {"N": str(self.connected_at)},
            "updated_at": {"N": str(self.updated_at)},
            "flow_started_at": {"N": str(self.flow_started_at)},
            "missing_scopes": {"L": [{"S": x} for x in self.missing_scopes]},
        }
        if self.status_changed_at:
            item["status_changed_at"] = {"N": str(self.status_changed_at)}
        if self.notified_at:
            item["notified_at"] = {"N": str(self.notified_at)}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> GrantRecord:
        return cls(
            user_id=item["user_id"]["S"],
            grant_id=item["grant_id"]["S"],
            email=item.get("email", {}).get("S", ""),
            provider=item.get("provider", {}).get("S", ""),
            status=item.get("status", {}).get("S", ""),
            scopes=tuple(x["S"] for x in item.get("scopes", {}).get("L", [])),
            connected_at=int(item.get("connected_at", {}).get("N", "0")),
            updated_at=int(item.get("updated_at", {}).get("N", "0")),
            flow_started_at=int(item.get("flow_started_at", {}).get("N", "0")),
            status_changed_at=int(item.get("status_changed_at", {}).get("N", "0")),
            missing_scopes=tuple(x["S"] for x in item.get("missing_scopes", {}).get("L", [])),
            notified_at=int(item.get("notified_at", {}).get("N", "0")),
        )


# Why a transaction was cancelled, per item, when no condition failed: all transient.
_TRANSIENT_CANCELLATIONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict", "RequestLimitExceeded"}
)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_error(exc: Exception) -> ConnectError:
    """A DynamoDB failure that is not a business condition → upstream_unavailable / server_error.

    A `TransactionCanceledException` (never retried by the SDK) whose reasons are throttling or a
    conflict with another transaction is transient too: nothing was written, a retry may succeed."""
    code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    reasons: list[str] = []
    if isinstance(exc, ClientError) and code == "TransactionCanceledException":
        reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
    logger.error("DynamoDB call failed", extra={"aws_error": code, "cancellation_reasons": reasons})
    if isinstance(exc, BotoCoreError) or code in _TRANSIENT_CODES:
        return UpstreamUnavailable()
    if reasons and any(r in _TRANSIENT_CANCELLATIONS for r in reasons):
        return UpstreamUnavailable()
    return ServerError()


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)


class SessionStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    def create(
        self,
        *,
        session_id: str,
        user_id: str,
        now: int,
        ttl_seconds: int,
        return_to: str | None,
        login_hint: str | None,
        account_id: str | None,
    ) -> SessionRecord:
        expires_at = now + ttl_seconds
        item: dict[str, Any] = {
            "session_id": {"S": session_id},
            "status": {"S": PENDING},
            "user_id": {"S": user_id},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(expires_at)},
            "ttl": {"N": str(expires_at + SESSION_RETENTION_SECONDS)},
        }
        for name, value in (("return_to", return_to), ("login_hint", login_hint), ("account_id", account_id)):
            if value is not None:
                item[name] = {"S": value}
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(session_id)"
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                raise ServerError() from None  # a 256-bit id collided: never happens
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return SessionRecord.from_item(item)

    def start(self, session_id: str, data: StartData, *, now: int) -> SessionRecord:
        """pending → started, once, while unexpired. One UpdateItem."""
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"session_id": {"S": session_id}},
                UpdateExpression=(
                    "SET #st = :started, state_hash = :sh, binding_hash = :bh, code_verifier = :cv, "
                    "nylas_api = :api, nylas_base_url = :base, client_id = :cid, provider = :prov, "
                    "started_at = :now"
                ),
                ConditionExpression="attribute_exists(session_id) AND #st = :pending AND expires_at > :now",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":started": {"S": STARTED},
                    ":pending": {"S": PENDING},
                    ":sh": {"S": data.state_hash},
                    ":bh": {"S": data.binding_hash},
                    ":cv": {"S": data.code_verifier},
                    ":api": {"S": data.nylas_api},
                    ":base": {"S": data.nylas_base_url},
                    ":cid": {"S": data.client_id},
                    ":prov": {"S": data.provider},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc) from None
            old = exc.response.get("Item")
            if not old:
                raise SessionInvalid() from None
            rec = SessionRecord.from_item(old)
            if rec.status != PENDING:
                raise SessionUsed(return_to=rec.return_to) from None
            raise SessionExpired(return_to=rec.return_to) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return SessionRecord.from_item(resp["Attributes"])

    def consume(self, session_id: str, *, state_hash: str, binding_hash: str, now: int) -> SessionRecord:
        """The atomic one-time consume: started ∧ state ∧ browser binding ∧ unexpired → consumed.

        On failure the old item tells why. Only a matching state identifies the session (and so
        allows a redirect to its return_to); a wrong browser leaves the session untouched.
        Raises `AlreadyCompleted` for a replay by the browser that completed it.
        """
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"session_id": {"S": session_id}},
                UpdateExpression="SET #st = :consumed, consumed_at = :now",
                ConditionExpression=(
                    "#st = :started AND state_hash = :sh AND binding_hash = :bh AND expires_at > :now"
                ),
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":consumed": {"S": CONSUMED},
                    ":started": {"S": STARTED},
                    ":sh": {"S": state_hash},
                    ":bh": {"S": binding_hash},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc) from None
            old = exc.response.get("Item")
            raise self._consume_refusal(old, state_hash, binding_hash, now) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return SessionRecord.from_item(resp["Attributes"])

    @staticmethod
    def _consume_refusal(
        old: dict[str, Any] | None, state_hash: str, binding_hash: str, now: int
    ) -> Exception:
        if not old:
            return SessionInvalid()
        rec = SessionRecord.from_item(old)
        if not _same(rec.state_hash, state_hash):
            return SessionInvalid()
        if not _same(rec.binding_hash, binding_hash):
            return BrowserMismatch(return_to=rec.return_to)
        if rec.status == COMPLETED:
            return AlreadyCompleted(rec)
        if rec.status != STARTED:
            return SessionUsed(return_to=rec.return_to)
        if rec.expires_at <= now:
            return SessionExpired(return_to=rec.return_to)
        return ServerError(return_to=rec.return_to)

    def _transition(self, session_id: str, *, to: str, now: int, error_code: str | None = None) -> None:
        names = {"#st": "status"}
        values: dict[str, Any] = {":to": {"S": to}, ":consumed": {"S": CONSUMED}, ":now": {"N": str(now)}}
        update = "SET #st = :to, updated_at = :now"
        if error_code:
            update += ", error_code = :ec"
            values[":ec"] = {"S": error_code}
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"session_id": {"S": session_id}},
                UpdateExpression=update,
                ConditionExpression="#st = :consumed",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:
            # Best effort: the user already gets an error; a stuck `consumed` only blocks replays.
            logger.warning(
                "session transition failed",
                extra={
                    "to": to,
                    "aws_error": _error_code(exc) if isinstance(exc, ClientError) else "botocore",
                },
            )

    def fail(self, session_id: str, *, error_code: str, now: int) -> None:
        """consumed → failed (terminal: access denied, grant invalid, account already linked)."""
        self._transition(session_id, to=FAILED, now=now, error_code=error_code)

    def release(self, session_id: str, *, now: int) -> None:
        """consumed → started: a transient failure leaves the session retryable by the same browser."""
        self._transition(session_id, to=STARTED, now=now)

    def unstart(self, session_id: str, *, state_hash: str) -> None:
        """started → pending when the browser could not be sent to Nylas (beta login link failed),
        so the same connect link can be followed again."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"session_id": {"S": session_id}},
                UpdateExpression=(
                    "SET #st = :pending REMOVE state_hash, binding_hash, code_verifier, started_at"
                ),
                ConditionExpression="#st = :started AND state_hash = :sh",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":pending": {"S": PENDING},
                    ":started": {"S": STARTED},
                    ":sh": {"S": state_hash},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("session un-start failed", extra={"error_type": type(exc).__name__})

    def get(self, session_id: str) -> SessionRecord | None:
        try:
            resp = self.client.get_item(
                TableName=self.table, Key={"session_id": {"S": session_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        item = resp.get("Item")
        return SessionRecord.from_item(item) if item else None


class Superseded(Exception):
    """A newer flow of the same user already wrote the grant record."""


class GrantStore:
    def __init__(self, table: str, sessions_table: str, client: Any = None) -> None:
        self.table = table
        self.sessions_table = sessions_table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    def get(self, user_id: str) -> GrantRecord | None:
        try:
            resp = self.client.get_item(
                TableName=self.table, Key={"pk": {"S": f"USER#{user_id}"}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        item = resp.get("Item")
        return GrantRecord.from_item(item) if item else None

    def _owner_of(self, grant_id: str) -> str | None:
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"GRANT#{grant_id}"}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return str(item["owner"]["S"]) if item and "owner" in item else None

    def save(
        self, record: GrantRecord, *, session_id: str | None = None, binding_hash: str | None = None
    ) -> None:
        """One transaction: USER# record (ordered by flow_started_at), GRANT# owner guard, and
        (when given) the session's consumed → completed step. A GRANT# guard held by another user
        whose USER# record no longer holds that grant is stale and taken over atomically;
        otherwise `AccountAlreadyLinked`. Raises `Superseded` if a newer flow already wrote."""
        try:
            self._save(record, session_id, binding_hash, stale_owner=None)
            return
        except _GuardHeld as held:
            owner = held.owner
        # The guard belongs to someone else: is it stale? (rare path: extra reads are fine)
        try:
            if owner is None:
                owner = self._owner_of(record.grant_id)
            if owner is None or owner == record.user_id:
                raise Conflict()
            other = self.get(owner)
            if other is not None and other.grant_id == record.grant_id:
                raise AccountAlreadyLinked()
            logger.info("taking over a stale mailbox guard")
            self._save(record, session_id, binding_hash, stale_owner=owner)
        except _GuardHeld:
            raise AccountAlreadyLinked() from None
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def _save(
        self,
        record: GrantRecord,
        session_id: str | None,
        binding_hash: str | None,
        *,
        stale_owner: str | None,
    ) -> None:
        guard: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "pk": {"S": f"GRANT#{record.grant_id}"},
                "owner": {"S": record.user_id},
                "grant_id": {"S": record.grant_id},
                "updated_at": {"N": str(record.updated_at)},
            },
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if stale_owner is None:
            guard["ConditionExpression"] = "attribute_not_exists(pk) OR #owner = :me"
            guard["ExpressionAttributeValues"] = {":me": {"S": record.user_id}}
        else:
            guard["ConditionExpression"] = "#owner = :stale"
            guard["ExpressionAttributeValues"] = {":stale": {"S": stale_owner}}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": record.to_item(),
                    "ConditionExpression": "attribute_not_exists(pk) OR flow_started_at <= :mine",
                    "ExpressionAttributeValues": {":mine": {"N": str(record.flow_started_at)}},
                }
            },
            {"Put": guard},
        ]
        if session_id is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self.sessions_table,
                        "Key": {"session_id": {"S": session_id}},
                        "UpdateExpression": "SET #st = :completed, updated_at = :now",
                        "ConditionExpression": "#st = :consumed AND binding_hash = :bh",
                        "ExpressionAttributeNames": {"#st": "status"},
                        "ExpressionAttributeValues": {
                            ":completed": {"S": COMPLETED},
                            ":consumed": {"S": CONSUMED},
                            ":bh": {"S": binding_hash or ""},
                            ":now": {"N": str(record.updated_at)},
                        },
                    }
                }
            )
        check_index = len(items)
        if stale_owner is not None:
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"USER#{stale_owner}"}},
                        "ConditionExpression": "attribute_not_exists(pk) OR grant_id <> :g",
                        "ExpressionAttributeValues": {":g": {"S": record.grant_id}},
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise aws_error(exc) from None
            reasons = exc.response.get("CancellationReasons") or []
            codes = [str(r.get("Code", "None")) for r in reasons]
            failed = [i for i, c in enumerate(codes) if c == "ConditionalCheckFailed"]
            if not failed:
                raise aws_error(exc) from None  # conflicts with other transactions, throttling …
            if 0 in failed:
                raise Superseded() from None
            if session_id is not None and 2 in failed:
                raise SessionUsed() from None
            if 1 in failed or (stale_owner is not None and check_index in failed):
                item = reasons[1].get("Item") if len(reasons) > 1 else None
                owner = item["owner"]["S"] if item and "owner" in item else None
                raise _GuardHeld(owner) from None
            raise ServerError() from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None

    def delete(self, user_id: str, grant_id: str) -> None:
        """Remove the USER# record and (if still ours) the GRANT# guard in one transaction."""
        user_delete = {
            "Delete": {
                "TableName": self.table,
                "Key": {"pk": {"S": f"USER#{user_id}"}},
                "ConditionExpression": "grant_id = :g",
                "ExpressionAttributeValues": {":g": {"S": grant_id}},
            }
        }
        guard_delete = {
            "Delete": {
                "TableName": self.table,
                "Key": {"pk": {"S": f"GRANT#{grant_id}"}},
                "ConditionExpression": "attribute_not_exists(pk) OR #owner = :me",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": {":me": {"S": user_id}},
            }
        }
        for items in ([user_delete, guard_delete], [user_delete]):
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                if _error_code(exc) != "TransactionCanceledException":
                    raise aws_error(exc) from None
                codes = [str(r.get("Code")) for r in exc.response.get("CancellationReasons") or []]
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise Conflict() from None  # the user's record changed meanwhile
                if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                    continue  # the guard now belongs to someone else: leave it
                raise aws_error(exc) from None
            except BotoCoreError as exc:
                raise aws_error(exc) from None
        raise Conflict()


class _GuardHeld(Exception):
    def __init__(self, owner: str | None) -> None:
        super().__init__("mailbox guard held by another user")
        self.owner = owner
