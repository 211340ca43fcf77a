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


@dataclass(frozen=True, slots=True)
class DueRevocation:
    grant_id: str
    attempts: int


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
            self.client.put_item(TableName=self.table, Item=revoke_item(grant_id, due=due, now=now))
        except (ClientError, BotoCoreError) as exc:
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
                    DueRevocation(pk[len(REVOKE_PREFIX) :], int(item.get("attempts", {}).get("N", "0")))
                )
        return due

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
                UpdateExpression="SET due_at = :due ADD attempts :one",
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
