"""DynamoDB: the revoke outbox in the grants table. REVOKE#<grant_id> is a grant this deployment no
longer holds, to be revoked at Nylas until Nylas confirms. Entries are written in the same transaction
that lets go of the grant (grants.py builds them with `revoke_item`); the sweeper reads the due ones
from a sparse index (no table scan).

LOST#<since>-<before>-<flow> is a v3 code exchange that may have completed at Nylas without an answer
(docs/security.md "lost exchange"): a grant created in [since, before] may be this deployment's
although no record names it. When due, the sweeper lists Nylas's grants of that window and turns every
one that no GRANT# guard names into a REVOKE# entry. The window is in the key because the index
projects only `attempts`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.store.base import aws_error, aws_error_code, dynamodb_client

REVOKE_PREFIX = "REVOKE#"
LOST_PREFIX = "LOST#"
_LOST_KEY_RE = re.compile(r"^LOST#(\d{1,12})-(\d{1,12})-([0-9a-f]{1,64})\Z")
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


@dataclass(frozen=True)
class DueLostExchange:
    """A lost code exchange: the grants created in [since, before] that nobody holds are revoked."""

    key: str
    since: int
    before: int
    attempts: int
    due_at: int = 0


def lost_key(flow: str, *, since: int, before: int) -> str:
    """The LOST# key of one lost exchange of the flow `flow` (a hex digest: its state's hash)."""
    key = f"{LOST_PREFIX}{since}-{before}-{flow[:16]}"
    if not _LOST_KEY_RE.match(key):
        raise ValueError("a lost exchange needs a hex flow id and a window in epoch seconds")
    return key


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
        """REVOKE# entries due by `now`, oldest first."""
        return self.due_entries(now, limit=limit)[0]

    def due_entries(self, now: int, *, limit: int = 50) -> tuple[list[DueRevocation], list[DueLostExchange]]:
        """Outbox entries due by `now`, oldest first (a Query on the sparse index: no table scan):
        the REVOKE# ones and the LOST# ones."""
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
        due: list[DueRevocation] = []
        lost: list[DueLostExchange] = []
        for item in resp.get("Items") or []:
            pk = str(item.get("pk", {}).get("S", ""))
            attempts = int(item.get("attempts", {}).get("N", "0"))
            due_at = int(item.get("due_at", {}).get("N", "0"))
            if pk.startswith(REVOKE_PREFIX):
                due.append(DueRevocation(pk[len(REVOKE_PREFIX) :], attempts, due_at))
            elif found := _LOST_KEY_RE.match(pk):
                lost.append(DueLostExchange(pk, int(found[1]), int(found[2]), attempts, due_at))
        return due, lost

    def remember_lost(self, key: str, *, due: int, now: int) -> None:
        """Record a lost exchange (`lost_key`), due at `due`: after every flow that may still keep a
        grant of its window has ended."""
        if not _LOST_KEY_RE.match(key):
            raise ValueError("not a lost exchange key")
        try:
            self.client.put_item(TableName=self.table, Item=_outbox_item(key, due=due, now=now))
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def forget_lost(self, key: str) -> None:
        """The window's unheld grants are in the REVOKE# outbox: the lost exchange is settled."""
        self._delete(key)

    def postpone_lost(self, key: str, *, due: int) -> None:
        """Nylas could not list the window: count the attempt and try again at `due`."""
        self._postpone(key, due=due)

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
        self._delete(REVOKE_PREFIX + grant_id)

    def postpone(self, grant_id: str, *, due: int) -> None:
        """A failed attempt: count it and try again at `due` (only if the entry still exists)."""
        self._postpone(REVOKE_PREFIX + grant_id, due=due)

    def _delete(self, pk: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": pk}})
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None

    def _postpone(self, pk: str, *, due: int) -> None:
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": pk}},
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
    return {**_outbox_item(REVOKE_PREFIX + grant_id, due=due, now=now), "grant_id": {"S": grant_id}}


def _outbox_item(pk: str, *, due: int, now: int) -> dict[str, Any]:
    """An entry of the `revoke-due` index (REVOKE# or LOST#), due at `due`, not yet attempted."""
    return {
        "pk": {"S": pk},
        "outbox": {"S": OUTBOX_KEY},
        "due_at": {"N": str(due)},
        "created_at": {"N": str(now)},
        "attempts": {"N": "0"},
    }
