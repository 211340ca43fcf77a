"""How a connect flow ended, as far as the browser that runs it may know: the status route's use case.

`GET /connect/v1/sessions/{session_id}/status` answers `pending`, `connected` or `error` with the
contract's error code, and nothing else (no user id, mailbox, grant id, times). The session id is the
capability (256 random bits, only ever given to the SaaS backend and the browser running the flow).
One consistent GetItem; read-only.

A session that can no longer complete answers `error` `session_expired`: a link never followed
before it expired, a started flow past its own lifetime (a consumed one gets a short grace: its
callback may still be finishing). A session the table no longer holds (retention ended) is `404`,
like an id that never existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from teams_connect.adapters.store.sessions import (
    COMPLETED,
    CONSUMED,
    FAILED,
    PENDING,
    STARTED,
    SessionStore,
)
from teams_connect.errors import BROWSER_CODES, NotFound
from teams_connect.rules.security import SESSION_ID_RE, origin_of

CONNECTED, ERROR = "connected", "error"
#: A consumed session's callback is bounded by the Lambda timeout (10 s) and API Gateway's 30 s.
CONSUMED_GRACE_SECONDS = 60


@dataclass(frozen=True)
class FlowStatus:
    status: str  # pending | connected | error
    error: str | None = None
    #: The one origin allowed to read the answer cross-origin (the session's return_to), if any.
    cors_origin: str | None = None

    def to_json(self) -> dict[str, str]:
        body = {"status": self.status}
        if self.error is not None:
            body["error"] = self.error
        return body


class SessionStatus:
    def __init__(self, sessions: SessionStore, *, clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self._clock = clock

    def read(self, session_id: str) -> FlowStatus:
        if not SESSION_ID_RE.match(session_id):
            raise NotFound("No such session.")
        record = self.sessions.get(session_id)
        if record is None or not record.user_id:  # no user: an admin-consent link, not a connect flow
            raise NotFound("No such session.")
        cors = origin_of(record.return_to) if record.return_to else None
        now = int(self._clock())
        if record.status == COMPLETED:
            return FlowStatus(CONNECTED, cors_origin=cors)
        if record.status == FAILED:
            code = record.error_code or ""
            return FlowStatus(ERROR, code if code in BROWSER_CODES else "server_error", cors_origin=cors)
        flow_end = record.flow_expires_at or record.expires_at
        expired = (
            (record.status == PENDING and now >= record.expires_at)
            or (record.status == STARTED and now >= flow_end)
            or (record.status == CONSUMED and now >= flow_end + CONSUMED_GRACE_SECONDS)
        )
        if expired:
            return FlowStatus(ERROR, "session_expired", cors_origin=cors)
        return FlowStatus("pending", cors_origin=cors)
