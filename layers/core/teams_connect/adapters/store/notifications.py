"""The grants table as the webhook sees it: find the record of a grant, and apply one notification to it
atomically with its dedupe marker.

One TransactWriteItems per applied notification:
- Put `NOTIFICATION#<sha256(id)>` (condition: not there yet; `ttl` 7 days, past Nylas's retries): the
  same notification id is applied at most once;
- Update `USER#<user_id>` (condition: still this grant and this connection, the status read, and the
  notification newer than any applied before): newest wins, a concurrent change makes us re-read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.store.base import aws_error, dynamodb_client
from teams_connect.adapters.store.grants import GrantRecord
from teams_connect.errors import UpstreamUnavailable

NOTIFICATION_RETENTION_SECONDS = 7 * 86400


@dataclass(frozen=True)
class Change:
    """What a notification does to a record."""

    status: str
    status_changed_at: int
    scopes: tuple[str, ...]
    missing_scopes: tuple[str, ...]


class Outcome:
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    CHANGED = "changed"  # the record changed between read and write: read again


class NotificationStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            resp = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        item = resp.get("Item")
        return item if isinstance(item, dict) else None

    def record_of_grant(self, grant_id: str) -> GrantRecord | None:
        """The USER# record that holds `grant_id` now (via the GRANT# owner item), else None."""
        guard = self._get(f"GRANT#{grant_id}")
        owner = guard.get("owner", {}).get("S") if guard else None
        if not owner:
            return None
        item = self._get(f"USER#{owner}")
        if item is None:
            return None
        record = GrantRecord.from_item(item)
        return record if record.grant_id == grant_id else None

    def seen(self, notification_id: str) -> bool:
        return self._get(_notification_pk(notification_id)) is not None

    def apply(self, record: GrantRecord, change: Change, *, notification_id: str, at: int, now: int) -> str:
        """Apply `change` (from a notification sent at `at`) to `record` as read; an `Outcome`."""
        names = {"#st": "status"}
        # `updated_at` moves only when what the record shows changes: a re-authentication that keeps
        # status and scopes (or a mailbox's re-consent elsewhere, refused there) leaves it as it was.
        shown = (change.status, tuple(change.scopes), tuple(change.missing_scopes))
        touched = shown != (record.status, tuple(record.scopes), tuple(record.missing_scopes))
        values: dict[str, Any] = {
            ":g": {"S": record.grant_id},
            ":c": {"N": str(record.connected_at)},
            ":read": {"S": record.status},
            ":at": {"N": str(at)},
            ":st": {"S": change.status},
            ":sca": {"N": str(change.status_changed_at)},
            ":scopes": {"L": [{"S": s} for s in change.scopes]},
            ":missing": {"L": [{"S": s} for s in change.missing_scopes]},
            ":now": {"N": str(now if touched else record.updated_at)},
        }
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": {"S": _notification_pk(notification_id)},
                        "applied_at": {"N": str(now)},
                        "ttl": {"N": str(now + NOTIFICATION_RETENTION_SECONDS)},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"USER#{record.user_id}"}},
                    "UpdateExpression": (
                        "SET #st = :st, status_changed_at = :sca, scopes = :scopes, "
                        "missing_scopes = :missing, notified_at = :at, updated_at = :now"
                    ),
                    "ConditionExpression": (
                        "grant_id = :g AND connected_at = :c AND #st = :read "
                        # `<=`: a notification of the same second as the last one applied is
                        # ordered by Nylas's answer (webhooks.change_from_nylas); the dedupe
                        # marker keeps one notification from applying twice.
                        "AND (attribute_not_exists(notified_at) OR notified_at <= :at)"
                    ),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise aws_error(exc) from None
            codes = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
            if codes and codes[0] == "ConditionalCheckFailed":
                return Outcome.DUPLICATE
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                return Outcome.CHANGED
            raise UpstreamUnavailable() from None  # conflicts, throttling: Nylas retries
        except BotoCoreError as exc:
            raise aws_error(exc) from None
        return Outcome.APPLIED


def _notification_pk(notification_id: str) -> str:
    return "NOTIFICATION#" + hashlib.sha256(notification_id.encode("utf-8")).hexdigest()
