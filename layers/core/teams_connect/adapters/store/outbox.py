"""DynamoDB: the revoke outbox in the grants table. REVOKE#<grant_id> is a grant this deployment no
longer holds, to be revoked at Nylas until Nylas confirms. Entries are written in the same transaction
that lets go of the grant (grants.py builds them with `revoke_item`); the sweeper reads the due ones
from a sparse index (no table scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.store.base import aws_error, aws_error_code, dynamodb_client

REVOKE_PREFIX = "REVOKE#"
OUTBOX_INDEX = "revoke-due"  # sparse GSI of the grants table: outbox = "revoke", due_at
OUTBOX_KEY = "revoke"
#: How long a claim to revoke lasts (security review 3, G7): longer than any attempt can run (the
#: sweeper's timeout is 60 s, the callback's 10 s), so a re-link cannot cancel an entry being revoked.
REVOKE_LEASE_SECONDS = 120


@dataclass(frozen=True)
class DueRevocation:
    grant_id: str
    attempts: int
    due_at: int = 0


class RevokeOutbox:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    def enqueue(self, grant_id: str, *, due: int, now: int) -> None:
        """REVOKE#<grant_id>, due at `due` (a grant no flow may keep: revoke unless someone holds it)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=revoke_item(grant_id, due=due, now=now),
                # an attempt holding the lease is revoking it right now: leave its entry alone
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                return
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None

    def due(self, now: int, *, limit: int = 50) -> list[DueRevocation]:
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
                    DueRevocation(
                        pk[len(REVOKE_PREFIX) :],
                        int(item.get("attempts", {}).get("N", "0")),
                        int(item.get("due_at", {}).get("N", "0")),
                    )
                )
        return due

    def claim(self, grant_id: str, *, now: int, lease: int = REVOKE_LEASE_SECONDS) -> str:
        """Take the right to revoke `grant_id` at Nylas, atomically (security review 3, G7): one
        transaction checks that no GRANT# guard names an owner and leases the REVOKE# entry until
        `now + lease`; while the lease lives, `GrantStore.save` cannot cancel the entry (a re-link of
        this grant then fails, retryably). → "claimed"; "held" (someone holds the grant: never revoke
        it); "busy" (no entry any more, or another attempt holds the lease)."""
        items = [
            {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"GRANT#{grant_id}"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": REVOKE_PREFIX + grant_id}},
                    "UpdateExpression": "SET lease_until = :until",
                    "ConditionExpression": (
                        "attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                    ),
                    "ExpressionAttributeValues": {":until": {"N": str(now + lease)}, ":now": {"N": str(now)}},
                }
            },
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if aws_error_code(exc) != "TransactionCanceledException":
                raise aws_error(exc) from None
            codes = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
            if codes and codes[0] == "ConditionalCheckFailed":
                return "held"
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return "busy"
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return "claimed"

    def confirmed(self, grant_id: str) -> None:
        """Nylas confirmed (or the grant is held again): the outbox entry goes."""
        try:
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": REVOKE_PREFIX + grant_id}})
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def postpone(self, grant_id: str, *, due: int) -> None:
        """A failed attempt: count it and try again at `due` (only if the entry still exists)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": REVOKE_PREFIX + grant_id}},
                UpdateExpression="SET due_at = :due ADD attempts :one REMOVE lease_until",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":due": {"N": str(due)}, ":one": {"N": "1"}},
            )
        except ClientError as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                return
            raise aws_error(exc) from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None


def revoke_item(grant_id: str, *, due: int, now: int) -> dict[str, Any]:
    return {
        "pk": {"S": REVOKE_PREFIX + grant_id},
        "grant_id": {"S": grant_id},
        "outbox": {"S": OUTBOX_KEY},
        "due_at": {"N": str(due)},
        "created_at": {"N": str(now)},
        "attempts": {"N": "0"},
    }
