"""DynamoDB: the sessions table, a conditional state machine.

Session states: pending → started → consumed → completed | failed (each step conditional);
a consumed session can be released back to started so the same browser may retry.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.nylas.port import VerifiedGrant
from teams_connect.adapters.store.base import aws_error, aws_error_code, dynamodb_client
from teams_connect.errors import (
    BrowserMismatch,
    ConnectError,
    ServerError,
    SessionExpired,
    SessionInvalid,
    SessionUsed,
)
from teams_connect.observability import logger
from teams_connect.rules.metadata import from_attribute as metadata_from_attribute
from teams_connect.rules.metadata import to_attribute as metadata_attribute

PENDING, STARTED, CONSUMED, COMPLETED, FAILED = "pending", "started", "consumed", "completed", "failed"
SESSION_RETENTION_SECONDS = 3600  # TTL grace after expiry: keeps replays answerable, then gone


class AlreadyCompleted(Exception):
    """The callback was replayed by the browser that completed the session."""

    def __init__(self, session: SessionRecord) -> None:
        super().__init__("session already completed")
        self.session = session


@dataclass(frozen=True)
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
    #: Popup embedding (contract "Sessions: more options"): how the flow ends for the browser, and
    #: whether it is pinned to the mailbox the user holds (then `expected_email` is that mailbox).
    display: str = "redirect"
    reconnect: bool = False
    #: The contract code a failed flow ended with (written by `fail`).
    error_code: str | None = None

    @property
    def popup_id(self) -> str | None:
        """This session's id when its flow runs in a popup (the result page needs it), else None."""
        return self.session_id if self.display == "popup" else None

    def ends(self, error: ConnectError) -> ConnectError:
        """`error` as the end of this session's flow: where the browser goes (`return_to`), and for a
        popup session which result page it gets."""
        error.return_to = self.return_to
        error.popup_session = self.popup_id
        return error

    #: The app's own tags given at POST /v1/sessions (None: not given; the grant keeps what it has).
    metadata: Mapping[str, str] | None = None

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
            display=s("display") or "redirect",
            reconnect=bool(item.get("reconnect", {}).get("BOOL", False)),
            error_code=s("error_code"),
            metadata=metadata_from_attribute(item["metadata"]) if "metadata" in item else None,
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


@dataclass(frozen=True)
class StartData:
    """What `start` fixes on the session (compared again at the callback: mix-up defence)."""

    state_hash: str
    binding_hash: str
    code_verifier: str = field(repr=False)
    nylas_api: str
    nylas_base_url: str
    client_id: str
    provider: str = "microsoft"


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
        display: str = "redirect",
        reconnect: bool = False,
        metadata: Mapping[str, str] | None = None,
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
        if display != "redirect":
            item["display"] = {"S": display}
        if reconnect:
            item["reconnect"] = {"BOOL": True}
        if metadata is not None:
            item["metadata"] = metadata_attribute(metadata)
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(session_id)"
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
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
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc) from None
            old = exc.response.get("Item")
            if not old:
                raise SessionInvalid() from None
            rec = SessionRecord.from_item(old)
            if rec.status != PENDING:
                raise rec.ends(SessionUsed()) from None
            raise rec.ends(SessionExpired()) from None
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
            if aws_error_code(exc) != "ConditionalCheckFailedException":
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
            return rec.ends(BrowserMismatch())
        if rec.status == COMPLETED:
            return AlreadyCompleted(rec)
        if rec.status != STARTED:
            return rec.ends(SessionUsed())
        if (rec.flow_expires_at or 0) <= now:
            return rec.ends(SessionExpired())
        return rec.ends(ServerError())

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
                    "aws_error": aws_error_code(exc) if isinstance(exc, ClientError) else "botocore",
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
