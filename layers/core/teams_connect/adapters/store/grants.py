"""DynamoDB: the grants table's user records and mailbox guards, written in transactions.

USER#<user_id> is the user's one grant, GRANT#<grant_id> the mailbox's owner guard; a transaction
that lets go of a grant also enqueues its revocation in the outbox (outbox.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.nylas.port import VerifiedGrant
from teams_connect.adapters.store.base import aws_error, aws_error_code, dynamodb_client
from teams_connect.adapters.store.outbox import OUTBOX_KEY, REVOKE_PREFIX, RevokeOutbox, revoke_item
from teams_connect.adapters.store.sessions import COMPLETED, CONSUMED
from teams_connect.errors import (
    AccountAlreadyLinked,
    Conflict,
    ServerError,
    SessionUsed,
    UpstreamUnavailable,
)
from teams_connect.observability import logger
from teams_connect.rules.metadata import from_attribute as metadata_from_attribute
from teams_connect.rules.metadata import to_attribute as metadata_attribute

#: The `grant_list` value of every USER# item: the one partition of the `grants-all` index.
LIST_KEY = "grant"


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
    # Grant lifecycle (teams_connect.rules.lifecycle): when `status` last changed, the required scopes the
    # grant lacks, and the time of the last Nylas notification applied (newest wins).
    status_changed_at: int = 0
    missing_scopes: tuple[str, ...] = ()
    notified_at: int = 0
    #: The mailbox's Microsoft Entra tenant where it could be learnt (docs/admin-consent.md); None otherwise.
    tenant_id: str | None = None
    # The app's own tags from the session that connected it (teams_connect.rules.metadata): answered
    # by GET /v1/grants/{user_id}, carried in every event of the grant.
    metadata: Mapping[str, str] = field(default_factory=dict)

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
        if self.tenant_id:
            item["tenant_id"] = {"S": self.tenant_id}
        if self.metadata:
            item["metadata"] = metadata_attribute(self.metadata)
        # The listing's index keys (template.yaml GrantsTable, GET /v1/grants): every USER# item is in
        # `grants-all` and `grants-by-status` (on `status`), and in `grants-by-email` when it has one.
        item["grant_list"] = {"S": LIST_KEY}
        if self.email:
            item["email_lc"] = {"S": self.email.lower()}
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
            tenant_id=item.get("tenant_id", {}).get("S") or None,
            metadata=metadata_from_attribute(item.get("metadata")),
        )


class Superseded(Exception):
    """A newer flow of the same user already wrote the grant record."""


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

    @property
    def outbox(self) -> RevokeOutbox:
        """The REVOKE# entries of this table, on the same client."""
        return RevokeOutbox(self.table, self.client)

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
            if aws_error_code(exc) == "ConditionalCheckFailedException":
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
            # An Update, not a Put: a lease on an existing entry (a revoke of this grant in flight,
            # security review 3, G7) is kept, so the grant transaction cannot cancel it.
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": REVOKE_PREFIX + grant.grant_id}},
                    "UpdateExpression": (
                        "SET grant_id = :g, outbox = :o, due_at = :due, "
                        "created_at = if_not_exists(created_at, :now), "
                        "attempts = if_not_exists(attempts, :zero)"
                    ),
                    "ExpressionAttributeValues": {
                        ":g": {"S": grant.grant_id},
                        ":o": {"S": OUTBOX_KEY},
                        ":due": {"N": str(revoke_due)},
                        ":now": {"N": str(now)},
                        ":zero": {"N": "0"},
                    },
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
            # ... unless an attempt has claimed it and may be revoking it at Nylas right now (security
            # review 3, G7): then this save fails, retryably, instead of keeping a grant being revoked.
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": REVOKE_PREFIX + record.grant_id}},
                    "ConditionExpression": "attribute_not_exists(lease_until) OR lease_until < :now",
                    "ExpressionAttributeValues": {":now": {"N": str(record.updated_at)}},
                }
            },
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
                        "Item": revoke_item(previous, due=record.updated_at, now=record.updated_at),
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if aws_error_code(exc) != "TransactionCanceledException":
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
            if 2 in failed:
                logger.warning("a revoke of this grant is in flight: the save is to be retried")
                raise RevokeInFlight() from None
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
                if aws_error_code(exc) != "TransactionCanceledException":
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


class RevokeInFlight(UpstreamUnavailable):
    """The grant being saved is being revoked at Nylas right now (a claimed REVOKE# entry): the flow
    ends retryably; a new flow gets Nylas's new grant id."""


class _UserChanged(Exception):
    def __init__(self, old: GrantRecord | None) -> None:
        super().__init__("the user's grant record is not the one expected")
        self.old = old


class _GuardHeld(Exception):
    def __init__(self, owner: str | None) -> None:
        super().__init__("mailbox guard held by another user")
        self.owner = owner
