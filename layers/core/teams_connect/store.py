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

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from teams_connect import aws
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
from teams_connect.nylas.port import VerifiedGrant
from teams_connect.observability import logger

PENDING, STARTED, CONSUMED, COMPLETED, FAILED = "pending", "started", "consumed", "completed", "failed"
SESSION_RETENTION_SECONDS = 3600  # TTL grace after expiry: keeps replays answerable, then gone
REVOKE_PREFIX = "REVOKE#"
OUTBOX_INDEX = "revoke-due"  # sparse GSI of the grants table: outbox = "revoke", due_at
OUTBOX_KEY = "revoke"
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
                _client = aws.session().create_client(  # botocore, not boto3 (teams_connect.aws)
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
    flow_expires_at: int | None = None
    expected_email: str | None = None
    #: The grant verified with Nylas for this flow, kept before the grant transaction so that a retry
    #: after a transient failure does not redeem the one-time code again.
    verified: VerifiedGrant | None = None

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
            flow_expires_at=n("flow_expires_at"),
            expected_email=s("expected_email"),
            verified=_verified_from_item(item),
        )


def _verified_from_item(item: dict[str, Any]) -> VerifiedGrant | None:
    grant_id = item.get("verified_grant_id", {}).get("S")
    if not grant_id:
        return None
    return VerifiedGrant(
        grant_id=str(grant_id),
        email=str(item.get("verified_email", {}).get("S", "")),
        provider=str(item.get("verified_provider", {}).get("S", "")),
        scopes=tuple(str(x["S"]) for x in item.get("verified_scopes", {}).get("L", [])),
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
    teams: str = "unknown"  # available | unavailable | unknown (learnt by the meetings API)
    # Tags of meeting creates that may have reached Nylas without an answer (meetings.py): a retry
    # with the same Idempotency-Key looks for its tag before creating again.
    ambiguous_tags: frozenset[str] = frozenset()
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
            "teams": {"S": self.teams},
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
            teams=item.get("teams", {}).get("S", "unknown"),
            ambiguous_tags=frozenset(item.get("ambiguous_tags", {}).get("SS", [])),
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
        expected_email: str | None = None,
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
        optional = (
            ("return_to", return_to),
            ("login_hint", login_hint),
            ("account_id", account_id),
            ("expected_email", expected_email),
        )
        for name, value in optional:
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

    def start(self, session_id: str, data: StartData, *, now: int, flow_ttl: int) -> SessionRecord:
        """pending → started, once, while the link is unexpired. One UpdateItem. From here the flow has
        its own lifetime (`flow_expires_at = now + flow_ttl`), independent of how late the link was
        followed; the item's TTL moves with it."""
        flow_expires_at = now + flow_ttl
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"session_id": {"S": session_id}},
                UpdateExpression=(
                    "SET #st = :started, state_hash = :sh, binding_hash = :bh, code_verifier = :cv, "
                    "nylas_api = :api, nylas_base_url = :base, client_id = :cid, provider = :prov, "
                    "started_at = :now, flow_expires_at = :fexp, #ttl = :ttl"
                ),
                ConditionExpression="attribute_exists(session_id) AND #st = :pending AND expires_at > :now",
                ExpressionAttributeNames={"#st": "status", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":started": {"S": STARTED},
                    ":pending": {"S": PENDING},
                    ":fexp": {"N": str(flow_expires_at)},
                    ":ttl": {"N": str(flow_expires_at + SESSION_RETENTION_SECONDS)},
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
        """The atomic one-time consume: started ∧ state ∧ browser binding ∧ flow unexpired → consumed.

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
                    "#st = :started AND state_hash = :sh AND binding_hash = :bh AND flow_expires_at > :now"
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
        if (rec.flow_expires_at or 0) <= now:
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
                    "SET #st = :pending "
                    "REMOVE state_hash, binding_hash, code_verifier, started_at, flow_expires_at"
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


@dataclass(frozen=True, slots=True)
class DueRevocation:
    grant_id: str
    attempts: int


class GrantStore:
    """USER#<user_id> (the user's one grant), GRANT#<grant_id> (the mailbox's owner guard) and the
    revoke outbox REVOKE#<grant_id>: a grant this deployment no longer holds, to be revoked at Nylas
    until Nylas confirms (written in the same transaction that lets go of the grant)."""

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

    def owner(self, grant_id: str) -> str | None:
        """Who holds this mailbox's guard in this deployment (None: nobody)."""
        try:
            return self._owner_of(grant_id)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def mark_expired(self, user_id: str, grant_id: str, *, now: int) -> bool:
        """Nylas answered 401 for this grant: status → `expired` (one conditional UpdateItem, only
        while the record still holds this grant and is not already expired). The grants table's
        stream publishes the lifecycle event. False when nothing changed."""
        return self._update_if_holds(
            user_id,
            grant_id,
            "SET #st = :expired, status_changed_at = :now, updated_at = :now",
            {":expired": {"S": "expired"}, ":now": {"N": str(now)}},
            "#st <> :expired",
            {"#st": "status"},
        )

    def set_teams(self, user_id: str, grant_id: str, teams: str, *, now: int) -> bool:
        """Record what a meetings call learnt: `teams` = available | unavailable (written only when it
        changes, so a create costs no write in the usual case). False when nothing changed."""
        if teams not in ("available", "unavailable", "unknown"):
            raise ValueError("teams must be available, unavailable or unknown")
        return self._update_if_holds(
            user_id,
            grant_id,
            "SET teams = :teams, updated_at = :now",
            {":teams": {"S": teams}, ":now": {"N": str(now)}},
            "(attribute_not_exists(teams) OR teams <> :teams)",
            {},
        )

    def note_ambiguous_create(self, user_id: str, grant_id: str, tag: str) -> bool:
        """Remember a create that may exist at Nylas although no answer said so (one UpdateItem)."""
        return self._update_if_holds(
            user_id,
            grant_id,
            "ADD ambiguous_tags :tags",
            {":tags": {"SS": [tag]}},
            "attribute_exists(pk)",
            {},
        )

    def forget_ambiguous_create(self, user_id: str, grant_id: str, tag: str) -> bool:
        return self._update_if_holds(
            user_id,
            grant_id,
            "DELETE ambiguous_tags :tags",
            {":tags": {"SS": [tag]}},
            "attribute_exists(ambiguous_tags)",
            {},
        )

    def _update_if_holds(
        self,
        user_id: str,
        grant_id: str,
        update: str,
        values: dict[str, Any],
        condition: str,
        names: dict[str, str],
    ) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": f"USER#{user_id}"}},
            "UpdateExpression": update,
            "ConditionExpression": f"grant_id = :grant AND {condition}",
            "ExpressionAttributeValues": {**values, ":grant": {"S": grant_id}},
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            self.client.update_item(**kwargs)
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False  # already so, or the user reconnected with another grant meanwhile
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return True

    def _owner_of(self, grant_id: str) -> str | None:
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"GRANT#{grant_id}"}}, ConsistentRead=True
        )
        item = resp.get("Item")
        return str(item["owner"]["S"]) if item and "owner" in item else None

    # --- the verified grant, kept on the consumed session ---------------------------------------
    def hold(
        self, session_id: str, *, binding_hash: str, grant: VerifiedGrant, revoke_due: int, now: int
    ) -> None:
        """One transaction before the grant transaction: the verified grant is kept on the consumed
        session (a retry after a transient failure skips the one-time code exchange), and a deferred
        REVOKE# entry makes sure that a grant whose flow never completes is revoked after the flow
        has expired. Completing the flow deletes that entry in the grant transaction; the revoker
        never revokes a grant that someone in this deployment holds."""
        items = [
            {
                "Update": {
                    "TableName": self.sessions_table,
                    "Key": {"session_id": {"S": session_id}},
                    "UpdateExpression": (
                        "SET verified_grant_id = :g, verified_email = :e, verified_provider = :p, "
                        "verified_scopes = :s, updated_at = :now"
                    ),
                    "ConditionExpression": "#st = :consumed AND binding_hash = :bh",
                    "ExpressionAttributeNames": {"#st": "status"},
                    "ExpressionAttributeValues": {
                        ":g": {"S": grant.grant_id},
                        ":e": {"S": grant.email},
                        ":p": {"S": grant.provider},
                        ":s": {"L": [{"S": x} for x in grant.scopes]},
                        ":now": {"N": str(now)},
                        ":consumed": {"S": CONSUMED},
                        ":bh": {"S": binding_hash},
                    },
                }
            },
            {"Put": {"TableName": self.table, "Item": _revoke_item(grant.grant_id, due=revoke_due, now=now)}},
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _error_code(exc) != "TransactionCanceledException":
                raise aws_error(exc) from None
            codes = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
            if codes and codes[0] == "ConditionalCheckFailed":
                raise SessionUsed() from None
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None

    # --- the grant transaction ---------------------------------------------------------------------
    def save(
        self, record: GrantRecord, *, session_id: str | None = None, binding_hash: str | None = None
    ) -> str | None:
        """One transaction: USER# record (ordered by flow_started_at), GRANT# owner guard, the
        cancellation of a pending revoke of this grant, and (when given) the session's consumed →
        completed step. When the user held ANOTHER grant, the same transaction also removes that
        grant's guard and enqueues its revocation (REVOKE#); its id is returned so that the caller
        can revoke it right away (best effort; the sweeper retries).

        A GRANT# guard held by another user whose USER# record no longer holds that grant is stale
        and taken over atomically; otherwise `AccountAlreadyLinked`. Raises `Superseded` if a newer
        flow of this user already wrote."""
        previous: str | None = None  # the grant USER# holds now, if other than this one
        stale_owner: str | None = None
        for _ in range(4):
            try:
                self._save(record, session_id, binding_hash, previous=previous, stale_owner=stale_owner)
                return previous
            except _UserChanged as changed:
                old = changed.old
                if old is not None and old.flow_started_at > record.flow_started_at:
                    raise Superseded() from None
                previous = old.grant_id if old is not None and old.grant_id != record.grant_id else None
            except _GuardHeld as held:
                stale_owner = self._stale_guard_owner(record, held.owner, stale_owner)
        raise Conflict()  # the records kept changing under us: retryable

    def _stale_guard_owner(self, record: GrantRecord, owner: str | None, tried: str | None) -> str:
        """The guard belongs to someone else: is it stale? (rare path: extra reads are fine)"""
        try:
            if owner is None:
                owner = self._owner_of(record.grant_id)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        if owner is None or owner == record.user_id:
            raise Conflict()
        if owner == tried:
            raise AccountAlreadyLinked()  # the takeover's own check failed: the guard is live
        other = self.get(owner)
        if other is not None and other.grant_id == record.grant_id:
            raise AccountAlreadyLinked()
        logger.info("taking over a stale mailbox guard")
        return owner

    def _save(
        self,
        record: GrantRecord,
        session_id: str | None,
        binding_hash: str | None,
        *,
        previous: str | None,
        stale_owner: str | None,
    ) -> None:
        mine = {"N": str(record.flow_started_at)}
        if previous is None:
            user_condition = "attribute_not_exists(pk) OR (grant_id = :g AND flow_started_at <= :mine)"
            user_values = {":g": {"S": record.grant_id}, ":mine": mine}
        else:
            user_condition = "grant_id = :old AND flow_started_at <= :mine"
            user_values = {":old": {"S": previous}, ":mine": mine}
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
                    "ConditionExpression": user_condition,
                    "ExpressionAttributeValues": user_values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {"Put": guard},
            # This grant is held again: a pending revoke of it (an earlier failed flow) is cancelled.
            {"Delete": {"TableName": self.table, "Key": {"pk": {"S": REVOKE_PREFIX + record.grant_id}}}},
        ]
        session_index = check_index = old_guard_index = -1
        if session_id is not None:
            session_index = len(items)
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
        if stale_owner is not None:
            check_index = len(items)
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
        if previous is not None:
            # One user, one grant: the replaced grant's guard leaves with it, and its revocation is
            # enqueued in the same transaction (durable: the sweeper retries until Nylas confirms).
            old_guard_index = len(items)
            items.append(
                {
                    "Delete": {
                        "TableName": self.table,
                        "Key": {"pk": {"S": f"GRANT#{previous}"}},
                        "ConditionExpression": "attribute_not_exists(pk) OR #owner = :me",
                        "ExpressionAttributeNames": {"#owner": "owner"},
                        "ExpressionAttributeValues": {":me": {"S": record.user_id}},
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _revoke_item(previous, due=record.updated_at, now=record.updated_at),
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
                item = reasons[0].get("Item")
                old = GrantRecord.from_item(item) if item and "user_id" in item else None
                raise _UserChanged(old) from None
            if session_index in failed:
                raise SessionUsed() from None
            if 1 in failed or check_index in failed:
                item = reasons[1].get("Item") if len(reasons) > 1 else None
                owner = item["owner"]["S"] if item and "owner" in item else None
                raise _GuardHeld(owner) from None
            if old_guard_index in failed:
                logger.error("the replaced grant's guard belongs to another user")
                raise Conflict() from None
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

    # --- the revoke outbox -------------------------------------------------------------------------
    def enqueue_revoke(self, grant_id: str, *, due: int, now: int) -> None:
        """REVOKE#<grant_id>, due at `due` (a grant no flow may keep: revoke unless someone holds it)."""
        try:
            self.client.put_item(TableName=self.table, Item=_revoke_item(grant_id, due=due, now=now))
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def due_revocations(self, now: int, *, limit: int = 50) -> list[DueRevocation]:
        """Outbox entries due by `now`, oldest first (a Query on the sparse index: no table scan)."""
        try:
            resp = self.client.query(
                TableName=self.table,
                IndexName=OUTBOX_INDEX,
                KeyConditionExpression="outbox = :o AND due_at <= :now",
                ExpressionAttributeValues={":o": {"S": OUTBOX_KEY}, ":now": {"N": str(now)}},
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        due = []
        for item in resp.get("Items") or []:
            pk = str(item.get("pk", {}).get("S", ""))
            if pk.startswith(REVOKE_PREFIX):
                due.append(
                    DueRevocation(pk[len(REVOKE_PREFIX) :], int(item.get("attempts", {}).get("N", "0")))
                )
        return due

    def revoked(self, grant_id: str) -> None:
        """Nylas confirmed (or the grant is held again): the outbox entry goes."""
        try:
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": REVOKE_PREFIX + grant_id}})
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def postpone_revoke(self, grant_id: str, *, due: int) -> None:
        """A failed attempt: count it and try again at `due` (only if the entry still exists)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": REVOKE_PREFIX + grant_id}},
                UpdateExpression="SET due_at = :due ADD attempts :one",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":due": {"N": str(due)}, ":one": {"N": "1"}},
            )
        except ClientError as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None


def _revoke_item(grant_id: str, *, due: int, now: int) -> dict[str, Any]:
    return {
        "pk": {"S": REVOKE_PREFIX + grant_id},
        "grant_id": {"S": grant_id},
        "outbox": {"S": OUTBOX_KEY},
        "due_at": {"N": str(due)},
        "created_at": {"N": str(now)},
        "attempts": {"N": "0"},
    }


class _UserChanged(Exception):
    def __init__(self, old: GrantRecord | None) -> None:
        super().__init__("the user's grant record is not the one expected")
        self.old = old


class _GuardHeld(Exception):
    def __init__(self, owner: str | None) -> None:
        super().__init__("mailbox guard held by another user")
        self.owner = owner
