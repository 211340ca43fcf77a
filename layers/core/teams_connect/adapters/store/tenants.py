"""The tenants aggregate: admin-consent flows (in the sessions table, so that the sessions stream
announces them) and the tenants whose administrator consented (their own table).

Admin-consent flow items (`kind = "admin_consent"`, keyed by the consent id in `session_id`):
consent_pending → consent_started → consent_consumed → completed | failed, each step conditional on
`kind` too, so a consent link can never be driven through the connect flow's routes (whose states are
`pending`/`started`/`consumed`) nor a connect link through these. A consumed flow can be released
back to started (a transient failure: the same browser may retry).

Tenant items: `{tenant_id, admin_consented_at, consent_id, updated_at}`; written in one transaction
with the flow's completion, so a recorded tenant always has its completed flow (and its event).
"""

from __future__ import annotations

import contextlib
import hmac
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.store.base import aws_error, aws_error_code, dynamodb_client
from teams_connect.errors import BrowserMismatch, ServerError, SessionExpired, SessionInvalid, SessionUsed

KIND = "admin_consent"
PENDING, STARTED, CONSUMED = "consent_pending", "consent_started", "consent_consumed"
COMPLETED, FAILED = "completed", "failed"
RETENTION_SECONDS = 3600  # TTL grace after expiry: keeps replays answerable, then gone


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a, b)


@dataclass(frozen=True)
class ConsentRecord:
    consent_id: str
    status: str
    created_at: int
    expires_at: int
    return_to: str
    #: The tenant the link was made for (resolved id), or None: any organisation (`organizations`).
    tenant_id: str | None = None
    state_hash: str | None = None
    binding_hash: str | None = None
    started_at: int | None = None
    flow_expires_at: int | None = None
    #: The tenant recorded at completion.
    consented_tenant_id: str | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ConsentRecord:
        def s(name: str) -> str | None:
            v = item.get(name)
            return str(v["S"]) if v and "S" in v else None

        def n(name: str) -> int | None:
            v = item.get(name)
            return int(v["N"]) if v and "N" in v else None

        return cls(
            consent_id=s("session_id") or "",
            status=s("status") or "",
            created_at=n("created_at") or 0,
            expires_at=n("expires_at") or 0,
            return_to=s("return_to") or "",
            tenant_id=s("tenant_id"),
            state_hash=s("state_hash"),
            binding_hash=s("binding_hash"),
            started_at=n("started_at"),
            flow_expires_at=n("flow_expires_at"),
            consented_tenant_id=s("consented_tenant_id"),
        )


@dataclass(frozen=True)
class TenantRecord:
    tenant_id: str
    admin_consented_at: int
    consent_id: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> TenantRecord:
        return cls(
            tenant_id=item["tenant_id"]["S"],
            admin_consented_at=int(item.get("admin_consented_at", {}).get("N", "0")),
            consent_id=item.get("consent_id", {}).get("S", ""),
        )


class ConsentCompleted(Exception):
    """The callback was replayed by the browser that completed the flow (idempotent success)."""

    def __init__(self, record: ConsentRecord) -> None:
        super().__init__("admin consent already completed")
        self.record = record


class TenantStore:
    def __init__(self, tenants_table: str, sessions_table: str, client: Any = None) -> None:
        self.tenants_table = tenants_table
        self.sessions_table = sessions_table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    # --- tenants ------------------------------------------------------------------------------------
    def get(self, tenant_id: str) -> TenantRecord | None:
        try:
            resp = self.client.get_item(
                TableName=self.tenants_table, Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        item = resp.get("Item")
        return TenantRecord.from_item(item) if item else None

    # --- admin-consent flows --------------------------------------------------------------------------
    def create(
        self, *, consent_id: str, now: int, ttl_seconds: int, return_to: str, tenant_id: str | None
    ) -> ConsentRecord:
        expires_at = now + ttl_seconds
        item: dict[str, Any] = {
            "session_id": {"S": consent_id},
            "kind": {"S": KIND},
            "status": {"S": PENDING},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(expires_at)},
            "ttl": {"N": str(expires_at + RETENTION_SECONDS)},
            "return_to": {"S": return_to},
        }
        if tenant_id is not None:
            item["tenant_id"] = {"S": tenant_id}
        try:
            self.client.put_item(
                TableName=self.sessions_table,
                Item=item,
                ConditionExpression="attribute_not_exists(session_id)",
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                raise ServerError() from None  # a 256-bit id collided: never happens
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return ConsentRecord.from_item(item)

    def start(
        self, consent_id: str, *, state_hash: str, binding_hash: str, now: int, flow_ttl: int
    ) -> ConsentRecord:
        """consent_pending → consent_started, once, while the link is unexpired; from here the flow has
        its own lifetime (`flow_ttl`)."""
        flow_expires_at = now + flow_ttl
        try:
            resp = self.client.update_item(
                TableName=self.sessions_table,
                Key={"session_id": {"S": consent_id}},
                UpdateExpression=(
                    "SET #st = :started, state_hash = :sh, binding_hash = :bh, started_at = :now, "
                    "flow_expires_at = :fexp, #ttl = :ttl"
                ),
                ConditionExpression="#kind = :kind AND #st = :pending AND expires_at > :now",
                ExpressionAttributeNames={"#st": "status", "#ttl": "ttl", "#kind": "kind"},
                ExpressionAttributeValues={
                    ":kind": {"S": KIND},
                    ":started": {"S": STARTED},
                    ":pending": {"S": PENDING},
                    ":sh": {"S": state_hash},
                    ":bh": {"S": binding_hash},
                    ":now": {"N": str(now)},
                    ":fexp": {"N": str(flow_expires_at)},
                    ":ttl": {"N": str(flow_expires_at + RETENTION_SECONDS)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc) from None
            old = exc.response.get("Item")
            if not old or old.get("kind", {}).get("S") != KIND:
                raise SessionInvalid() from None
            rec = ConsentRecord.from_item(old)
            if rec.status != PENDING:
                raise SessionUsed(return_to=rec.return_to) from None
            raise SessionExpired(return_to=rec.return_to) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return ConsentRecord.from_item(resp["Attributes"])

    def unstart(self, consent_id: str, *, state_hash: str) -> None:
        """Best effort: back to pending when the redirect could not be built (nothing was shown)."""
        # If it fails the link stays started: the administrator asks for a new one.
        with contextlib.suppress(ClientError, BotoCoreError):
            self.client.update_item(
                TableName=self.sessions_table,
                Key={"session_id": {"S": consent_id}},
                UpdateExpression=(
                    "SET #st = :pending REMOVE state_hash, binding_hash, started_at, flow_expires_at"
                ),
                ConditionExpression="#kind = :kind AND #st = :started AND state_hash = :sh",
                ExpressionAttributeNames={"#st": "status", "#kind": "kind"},
                ExpressionAttributeValues={
                    ":kind": {"S": KIND},
                    ":pending": {"S": PENDING},
                    ":started": {"S": STARTED},
                    ":sh": {"S": state_hash},
                },
            )

    def consume(self, consent_id: str, *, state_hash: str, binding_hash: str, now: int) -> ConsentRecord:
        """The atomic one-time consume: kind ∧ started ∧ state ∧ browser binding ∧ unexpired → consumed.
        Only a matching state identifies the flow (and so allows a redirect to its return_to); a wrong
        browser leaves it untouched. Raises `ConsentCompleted` for a replay by the completing browser."""
        try:
            resp = self.client.update_item(
                TableName=self.sessions_table,
                Key={"session_id": {"S": consent_id}},
                UpdateExpression="SET #st = :consumed, consumed_at = :now",
                ConditionExpression=(
                    "#kind = :kind AND #st = :started AND state_hash = :sh AND binding_hash = :bh "
                    "AND flow_expires_at > :now"
                ),
                ExpressionAttributeNames={"#st": "status", "#kind": "kind"},
                ExpressionAttributeValues={
                    ":kind": {"S": KIND},
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
            raise self._refusal(exc.response.get("Item"), state_hash, binding_hash, now) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return ConsentRecord.from_item(resp["Attributes"])

    @staticmethod
    def _refusal(old: dict[str, Any] | None, state_hash: str, binding_hash: str, now: int) -> Exception:
        if not old or old.get("kind", {}).get("S") != KIND:
            return SessionInvalid()
        rec = ConsentRecord.from_item(old)
        if not _same(rec.state_hash, state_hash):
            return SessionInvalid()
        if not _same(rec.binding_hash, binding_hash):
            return BrowserMismatch(return_to=rec.return_to)
        if rec.status == COMPLETED:
            return ConsentCompleted(rec)
        if rec.status != STARTED:
            return SessionUsed(return_to=rec.return_to)
        if (rec.flow_expires_at or 0) <= now:
            return SessionExpired(return_to=rec.return_to)
        return ServerError(return_to=rec.return_to)

    def _transition(self, consent_id: str, *, to: str, now: int, extra: dict[str, str] | None = None) -> None:
        names = {"#st": "status", "#kind": "kind"}
        values: dict[str, Any] = {
            ":to": {"S": to},
            ":consumed": {"S": CONSUMED},
            ":kind": {"S": KIND},
            ":now": {"N": str(now)},
        }
        update = "SET #st = :to, updated_at = :now"
        for index, (name, value) in enumerate((extra or {}).items()):
            update += f", {name} = :x{index}"
            values[f":x{index}"] = {"S": value}
        try:
            self.client.update_item(
                TableName=self.sessions_table,
                Key={"session_id": {"S": consent_id}},
                UpdateExpression=update,
                ConditionExpression="#kind = :kind AND #st = :consumed",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise aws_error(exc) from None
            raise SessionUsed() from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None

    def release(self, consent_id: str, *, now: int) -> None:
        """consumed → started: a transient failure; the same browser may retry the callback."""
        self._transition(consent_id, to=STARTED, now=now)

    def fail(self, consent_id: str, *, error_code: str, now: int) -> None:
        self._transition(consent_id, to=FAILED, now=now, extra={"error_code": error_code})

    def record(self, consent_id: str, *, tenant_id: str, now: int) -> None:
        """The tenant record and the flow's completion, together (one TransactWriteItems)."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.tenants_table,
                            "Item": {
                                "tenant_id": {"S": tenant_id},
                                "admin_consented_at": {"N": str(now)},
                                "consent_id": {"S": consent_id},
                                "updated_at": {"N": str(now)},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.sessions_table,
                            "Key": {"session_id": {"S": consent_id}},
                            "UpdateExpression": (
                                "SET #st = :completed, consented_tenant_id = :tid, updated_at = :now"
                            ),
                            "ConditionExpression": "#kind = :kind AND #st = :consumed",
                            "ExpressionAttributeNames": {"#st": "status", "#kind": "kind"},
                            "ExpressionAttributeValues": {
                                ":completed": {"S": COMPLETED},
                                ":consumed": {"S": CONSUMED},
                                ":kind": {"S": KIND},
                                ":tid": {"S": tenant_id},
                                ":now": {"N": str(now)},
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if aws_error_code(exc) == "TransactionCanceledException":
                reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
                if "ConditionalCheckFailed" in reasons:
                    raise SessionUsed() from None
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
