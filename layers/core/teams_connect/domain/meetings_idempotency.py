"""Idempotent meeting creation with the Powertools Idempotency utility on DynamoDB.

The record's key is the hash of (user id, the user's grant id, `Idempotency-Key`): a replay answers only
while the user holds the same grant, so after a disconnect and a reconnect with another mailbox the
same key schedules on the new mailbox instead of returning the old one's meeting (security review 3,
G10). Answers (meeting id, join URL, participants' emails) are kept 24 h in the idempotency table, plus
its point-in-time-recovery window (docs/security.md). The normalised request is the
payload checked on a retry: same key + same body → the first answer again (nothing is created);
same key + another body → 422 `idempotency_key_reused`; the same key while the first call is still
running → 409 `conflict`. A failed create leaves no record (Powertools deletes it), so a retry runs
again, and the meeting's metadata tag (meetings.create_tag) makes that retry find a meeting whose
create timed out instead of making a second one. Imported only by the create function.

The utility persists through `adapters.store.idempotency.IdempotencyStore` (Powertools' DynamoDB
items on the container's botocore client): Powertools' own DynamoDB layer would load boto3 at init.
"""

from __future__ import annotations

from typing import Any

from teams_connect.adapters.store.idempotency import (
    IdempotencyConfig,
    IdempotencyStore,
    exceptions,
    idempotent_function,
)
from teams_connect.domain.meetings import Meetings
from teams_connect.errors import Conflict, ConnectError, IdempotencyKeyReused, UpstreamUnavailable
from teams_connect.observability import logger

EXPIRES_AFTER_SECONDS = 24 * 3600
KEY_PREFIX = "teams-connect.meetings.create"


class MeetingsCreate:
    """`create(user_id, request, idempotency_key, context=…, deadline=…)`; one per container."""

    def __init__(self, meetings: Meetings, table: str, client: Any) -> None:
        self.meetings = meetings
        self.config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="request",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=EXPIRES_AFTER_SECONDS,
        )
        self.persistence = IdempotencyStore(table, client)
        self._idempotent = idempotent_function(
            data_keyword_argument="call",
            persistence_store=self.persistence,
            config=self.config,
            key_prefix=KEY_PREFIX,
        )(self._run)

    def _run(self, *, call: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        return self.meetings.create(
            call["user_id"], call["request"], call["idempotency_key"], deadline=deadline
        )

    def create(
        self,
        user_id: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        *,
        context: Any = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        if idempotency_key is None:
            return self.meetings.create(user_id, request, None, deadline=deadline)
        record = self.meetings.grants.get(user_id)
        if record is None:  # not connected: the plain path answers it (nothing to replay)
            return self.meetings.create(user_id, request, None, deadline=deadline)
        if context is not None:
            self.config.register_lambda_context(context)
        call = {
            "key": f"{len(user_id)}:{user_id}:{len(record.grant_id)}:{record.grant_id}:{idempotency_key}",
            "user_id": user_id,
            "idempotency_key": idempotency_key,
            "request": request,
        }
        try:
            result: dict[str, Any] = self._idempotent(call=call, deadline=deadline)
        except ConnectError:
            raise
        except exceptions.IdempotencyValidationError:
            raise IdempotencyKeyReused() from None
        except exceptions.IdempotencyAlreadyInProgressError:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress; retry shortly."
            ) from None
        except exceptions.BaseError as exc:
            logger.error("idempotency store failed", extra={"error_type": type(exc).__name__})
            raise UpstreamUnavailable() from None
        return result
