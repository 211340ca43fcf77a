"""DynamoDB: the grants table's user records and their owner guards, written in transactions.

USER#<user_id> is the user's one grant; GRANT#<grant_id> and MAILBOX#<hash of the address> name the
user who holds that grant and that mailbox (one owner each: a mailbox whose grant was deleted at Nylas
gets a new grant id, but stays with its user); a transaction that lets go of a grant also enqueues
its revocation in the outbox (outbox.py).
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
from teams_connect.rules import security
from teams_connect.rules.metadata import from_attribute as metadata_from_attribute
from teams_connect.rules.metadata import to_attribute as metadata_attribute

#: The `grant_list` value of every USER# item: the one partition of the `grants-all` index.
LIST_KEY = "grant"


@dataclass(frozen=True)
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
            return self._guard_owner(GRANT_PREFIX + grant_id)
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
        """One transaction: USER# record (ordered by flow_started_at), GRANT# owner guard, MAILBOX#
        owner guard, the cancellation of a pending revoke of this grant, and (when given) the
        session's consumed → completed step. When the user held ANOTHER grant, the same transaction
        also removes that grant's guard (and, for another mailbox, that mailbox's guard) and enqueues
        its revocation (REVOKE#); its id is returned so that the caller can revoke it right away
        (best effort; the sweeper retries).

        A guard held by another user whose USER# record no longer holds that grant (or mailbox) is
        stale and taken over atomically; otherwise `AccountAlreadyLinked`, also when that user's
        record is `expired` or `revoked`: a record keeps its mailbox until it is disconnected. Raises
        `Superseded` if a newer flow of this user already wrote."""
        old: GrantRecord | None = None  # the user's record as last read (None: assume absent or same)
        stale: dict[str, str] = {}  # guard kind → the other user found holding it, stale
        for _ in range(5):
            try:
                self._save(record, session_id, binding_hash, old=old, stale=stale)
                return old.grant_id if old is not None and old.grant_id != record.grant_id else None
            except _UserChanged as changed:
                old = changed.old
                if old is not None and old.flow_started_at > record.flow_started_at:
                    raise Superseded() from None
            except _GuardHeld as held:
                stale[held.kind] = self._stale_guard_owner(record, held, stale.get(held.kind))
        raise Conflict()  # the records kept changing under us: retryable

    def _stale_guard_owner(self, record: GrantRecord, held: _GuardHeld, tried: str | None) -> str:
        """The guard belongs to someone else: is it stale? (rare path: extra reads are fine)"""
        try:
            owner = held.owner
            if owner is None:
                owner = self._guard_owner(held.key)
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc) from None
        if owner is None or owner == record.user_id:
            raise Conflict()
        if owner == tried:
            raise AccountAlreadyLinked()  # the takeover's own check failed: the guard is live
        other = self.get(owner)
        if other is not None and (
            other.grant_id == record.grant_id
            if held.kind == GRANT
            else _same_mailbox(other.email, record.email)
        ):
            raise AccountAlreadyLinked()
        logger.info("taking over a stale guard", extra={"guard": held.kind})
        return owner

    def _guard_owner(self, key: str) -> str | None:
        resp = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True)
        item = resp.get("Item")
        return str(item["owner"]["S"]) if item and "owner" in item else None

    def _guard_put(self, key: str, record: GrantRecord, stale_owner: str | None) -> dict[str, Any]:
        guard: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                "pk": {"S": key},
                "owner": {"S": record.user_id},
                "updated_at": {"N": str(record.updated_at)},
            },
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if key.startswith(GRANT_PREFIX):
            guard["Item"]["grant_id"] = {"S": record.grant_id}
        if stale_owner is None:
            guard["ConditionExpression"] = "attribute_not_exists(pk) OR #owner = :me"
            guard["ExpressionAttributeValues"] = {":me": {"S": record.user_id}}
        else:
            guard["ConditionExpression"] = "#owner = :stale"
            guard["ExpressionAttributeValues"] = {":stale": {"S": stale_owner}}
        return {"Put": guard}

    def _guard_delete(self, key: str, user_id: str) -> dict[str, Any]:
        """Remove a guard of `user_id` (absent is fine; another user's is left: the condition fails)."""
        return {
            "Delete": {
                "TableName": self.table,
                "Key": {"pk": {"S": key}},
                "ConditionExpression": "attribute_not_exists(pk) OR #owner = :me",
                "ExpressionAttributeNames": {"#owner": "owner"},
                "ExpressionAttributeValues": {":me": {"S": user_id}},
            }
        }

    def _save(
        self,
        record: GrantRecord,
        session_id: str | None,
        binding_hash: str | None,
        *,
        old: GrantRecord | None,
        stale: Mapping[str, str],
    ) -> None:
        mine = {"N": str(record.flow_started_at)}
        if old is None:
            user_condition = (
                "attribute_not_exists(pk) OR (grant_id = :g AND email = :e AND flow_started_at <= :mine)"
            )
            user_values = {":g": {"S": record.grant_id}, ":e": {"S": record.email}, ":mine": mine}
        else:
            user_condition = "grant_id = :old AND email = :oldmail AND flow_started_at <= :mine"
            user_values = {":old": {"S": old.grant_id}, ":oldmail": {"S": old.email}, ":mine": mine}
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
            self._guard_put(GRANT_PREFIX + record.grant_id, record, stale.get(GRANT)),
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
        # Which guard an index of `items` is (for the cancellation reasons), and each stale check.
        guards: dict[int, _GuardHeld] = {1: _GuardHeld(GRANT, GRANT_PREFIX + record.grant_id, None)}
        checks: dict[int, _GuardHeld] = {}
        mailbox = mailbox_key(record.email)
        if mailbox is not None:
            guards[len(items)] = _GuardHeld(MAILBOX, mailbox, None)
            items.append(self._guard_put(mailbox, record, stale.get(MAILBOX)))
        session_index = old_guard_index = -1
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
        # A takeover holds only while the stale owner's record still lets go of the grant / mailbox.
        if GRANT in stale:
            checks[len(items)] = _GuardHeld(GRANT, GRANT_PREFIX + record.grant_id, None)
            items.append(
                _user_check(self.table, stale[GRANT], "grant_id <> :g", {":g": {"S": record.grant_id}})
            )
        if MAILBOX in stale and mailbox is not None:
            checks[len(items)] = _GuardHeld(MAILBOX, mailbox, None)
            items.append(
                _user_check(
                    self.table,
                    stale[MAILBOX],
                    "attribute_not_exists(email_lc) OR email_lc <> :e",
                    {":e": {"S": record.email.lower()}},
                )
            )
        if old is not None and old.grant_id != record.grant_id:
            # One user, one grant: the replaced grant's guard leaves with it, and its revocation is
            # enqueued in the same transaction (durable: the sweeper retries until Nylas confirms).
            old_guard_index = len(items)
            items.append(self._guard_delete(GRANT_PREFIX + old.grant_id, record.user_id))
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": revoke_item(old.grant_id, due=record.updated_at, now=record.updated_at),
                    }
                }
            )
        old_mailbox = mailbox_key(old.email) if old is not None else None
        old_mailbox_index = -1
        if old_mailbox is not None and old_mailbox != mailbox:
            old_mailbox_index = len(items)
            items.append(self._guard_delete(old_mailbox, record.user_id))
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
                raise _UserChanged(
                    GrantRecord.from_item(item) if item and "user_id" in item else None
                ) from None
            if 2 in failed:
                logger.warning("a revoke of this grant is in flight: the save is to be retried")
                raise RevokeInFlight() from None
            if session_index in failed:
                raise SessionUsed() from None
            for index in failed:
                if index in guards:
                    item = reasons[index].get("Item")
                    owner = item["owner"]["S"] if item and "owner" in item else None
                    raise _GuardHeld(guards[index].kind, guards[index].key, owner) from None
                if index in checks:
                    raise checks[index] from None
            if old_guard_index in failed or old_mailbox_index in failed:
                logger.error("the replaced grant's guard belongs to another user")
                raise Conflict() from None
            raise ServerError() from None
        except BotoCoreError as exc:
            raise aws_error(exc) from None

    def delete(self, user_id: str, grant_id: str, email: str = "") -> None:
        """Remove the USER# record and (where still ours) its GRANT# and MAILBOX# guards in one
        transaction; a guard that now belongs to someone else is left."""
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"USER#{user_id}"}},
                    "ConditionExpression": "grant_id = :g",
                    "ExpressionAttributeValues": {":g": {"S": grant_id}},
                }
            },
            self._guard_delete(GRANT_PREFIX + grant_id, user_id),
        ]
        mailbox = mailbox_key(email)
        if mailbox is not None:
            items.append(self._guard_delete(mailbox, user_id))
        for _ in range(3):
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                if aws_error_code(exc) != "TransactionCanceledException":
                    raise aws_error(exc) from None
                codes = [str(r.get("Code")) for r in exc.response.get("CancellationReasons") or []]
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise Conflict() from None  # the user's record changed meanwhile
                others = {i for i, c in enumerate(codes) if i > 0 and c == "ConditionalCheckFailed"}
                if not others:
                    raise aws_error(exc) from None
                items = [item for i, item in enumerate(items) if i not in others]  # someone else's now
            except BotoCoreError as exc:
                raise aws_error(exc) from None
        raise Conflict()


#: The guard kinds: one owner per grant id, and one per mailbox (its address, case-insensitive).
GRANT = "grant"
MAILBOX = "mailbox"
GRANT_PREFIX = "GRANT#"
MAILBOX_PREFIX = "MAILBOX#"


def mailbox_key(email: str) -> str | None:
    """MAILBOX#<sha256 of the lower-cased address>: the key names no address (None: no address)."""
    return MAILBOX_PREFIX + security.sha256_hex(email.strip().lower()) if email.strip() else None


def _same_mailbox(a: str, b: str) -> bool:
    return bool(a.strip()) and a.strip().lower() == b.strip().lower()


def _user_check(table: str, user_id: str, condition: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": {"pk": {"S": f"USER#{user_id}"}},
            "ConditionExpression": f"attribute_not_exists(pk) OR {condition}",
            "ExpressionAttributeValues": values,
        }
    }


class RevokeInFlight(UpstreamUnavailable):
    """The grant being saved is being revoked at Nylas right now (a claimed REVOKE# entry): the flow
    ends retryably; a new flow gets Nylas's new grant id."""


class _UserChanged(Exception):
    def __init__(self, old: GrantRecord | None) -> None:
        super().__init__("the user's grant record is not the one expected")
        self.old = old


class _GuardHeld(Exception):
    """A guard (`kind` GRANT or MAILBOX, item `key`) is held by another user (`owner`, if known)."""

    def __init__(self, kind: str, key: str, owner: str | None) -> None:
        super().__init__(f"{kind} guard held by another user")
        self.kind = kind
        self.key = key
        self.owner = owner
