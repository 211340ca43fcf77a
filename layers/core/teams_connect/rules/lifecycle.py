"""Grant lifecycle rules, pure (no I/O): statuses, required scopes, and which EventBridge event a change
of a grant record is.

Statuses (contract.md "Grants"): `valid`, `expired` (Nylas said so, or a Nylas call got 401),
`revoked` (the grant was deleted at Nylas, not through our API), `needs_reauth` (the grant lacks scopes
the deployment requires; they are listed in `missing_scopes`).

Events are derived from the grants table's change stream (old and new image of a `USER#` item), so
every writer of the table gets its event without publishing by hand (functions/grant_events).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from teams_connect.config import Settings
from teams_connect.rules.metadata import from_attribute

VALID, EXPIRED, REVOKED, NEEDS_REAUTH = "valid", "expired", "revoked", "needs_reauth"
DISCONNECTED = "disconnected"  # not a record status: the record is gone (DELETE /v1/grants/{user_id})
STATUSES = frozenset({VALID, EXPIRED, REVOKED, NEEDS_REAUTH})

SOURCE = "teams-connect"
CONNECTED = "Grant Connected"
RECONNECTED = "Grant Reconnected"
DISCONNECTED_EVENT = "Grant Disconnected"
EXPIRED_EVENT = "Grant Expired"
REVOKED_EVENT = "Grant Revoked"
NEEDS_REAUTH_EVENT = "Grant Needs Reauth"
DETAIL_TYPES = (
    CONNECTED,
    RECONNECTED,
    DISCONNECTED_EVENT,
    EXPIRED_EVENT,
    REVOKED_EVENT,
    NEEDS_REAUTH_EVENT,
)
_EVENT_BY_STATUS = {EXPIRED: EXPIRED_EVENT, REVOKED: REVOKED_EVENT, NEEDS_REAUTH: NEEDS_REAUTH_EVENT}

#: What the product needs of a v3 grant when the deployment sets no scopes (`NylasScopes`): calendar
#: events with Teams meetings. Beta grants are held to `NylasScopes` only.
DEFAULT_REQUIRED_V3 = ("Calendars.ReadWrite", "OnlineMeetings.ReadWrite")
# Sign-in scopes: Microsoft does not always list them among the granted scopes; never "missing".
_SIGN_IN_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
_GRAPH_PREFIX = "https://graph.microsoft.com/"


def _norm(scope: str) -> str:
    s = scope.strip()
    if s.lower().startswith(_GRAPH_PREFIX):
        s = s[len(_GRAPH_PREFIX) :]
    return s.lower()


def required_scopes(settings: Settings) -> tuple[str, ...]:
    """The scopes this deployment requires: `NYLAS_SCOPES`, else (v3) `DEFAULT_REQUIRED_V3`."""
    if settings.nylas_scopes:
        return settings.nylas_scopes
    return DEFAULT_REQUIRED_V3 if settings.nylas_api == "v3" else ()


def missing_scopes(granted: Iterable[str], required: Iterable[str]) -> tuple[str, ...]:
    """Required scopes that were not granted (Graph URI prefix and case ignored; sign-in scopes never
    count). An empty `granted` means "Nylas did not say": nothing is reported missing then."""
    have = {_norm(s) for s in granted}
    if not have:
        return ()
    return tuple(s for s in required if _norm(s) not in _SIGN_IN_SCOPES and _norm(s) not in have)


def status_for(base: str, granted: Iterable[str], required: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """A `valid` grant that lacks required scopes is `needs_reauth`; other statuses stand."""
    missing = missing_scopes(granted, required)
    if base == VALID and missing:
        return NEEDS_REAUTH, missing
    return base, missing


# --------------------------------------------------------------------------- stream → event


@dataclass(frozen=True)
class GrantEvent:
    """One EventBridge entry: `detail_type` and the contract's detail."""

    detail_type: str
    event_id: str
    user_id: str
    grant_id: str
    email: str
    status: str
    occurred_at: str
    #: The app's own tags stored on the grant (teams_connect.rules.metadata), `{}` when none.
    metadata: Mapping[str, str] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "grant_id": self.grant_id,
            "email": self.email,
            "status": self.status,
            "occurred_at": self.occurred_at,
            "metadata": dict(self.metadata),
        }


def _s(image: Mapping[str, Any], name: str) -> str:
    value = image.get(name)
    return str(value["S"]) if isinstance(value, Mapping) and "S" in value else ""


def _n(image: Mapping[str, Any], name: str) -> int:
    value = image.get(name)
    try:
        return int(value["N"]) if isinstance(value, Mapping) and "N" in value else 0
    except (TypeError, ValueError):
        return 0


def event_id_of(record: Mapping[str, Any]) -> str:
    """Stable across redeliveries of the same stream record (its eventID and sequence number)."""
    dynamodb = record.get("dynamodb") or {}
    seed = f"{record.get('eventID', '')}/{dynamodb.get('SequenceNumber', '')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_for(record: Mapping[str, Any]) -> GrantEvent | None:
    """The lifecycle event a stream record stands for, or None (not a grant record, or a change that
    is no lifecycle step: e.g. a field another feature keeps, such as `teams`)."""
    dynamodb = record.get("dynamodb") or {}
    keys = dynamodb.get("Keys") or {}
    if not _s(keys, "pk").startswith("USER#"):
        return None
    old: Mapping[str, Any] = dynamodb.get("OldImage") or {}
    new: Mapping[str, Any] = dynamodb.get("NewImage") or {}
    name = record.get("eventName")
    event_id = event_id_of(record)
    approx = dynamodb.get("ApproximateCreationDateTime")
    when = float(approx) if isinstance(approx, int | float) else 0.0
    if name == "REMOVE" and old:
        return GrantEvent(
            DISCONNECTED_EVENT,
            event_id,
            _s(old, "user_id"),
            _s(old, "grant_id"),
            _s(old, "email"),
            DISCONNECTED,
            _iso(when),
            from_attribute(old.get("metadata")),
        )
    if name not in ("INSERT", "MODIFY") or not new:
        return None
    status = _s(new, "status")
    changed_at = _n(new, "status_changed_at") or _n(new, "updated_at") or int(when)
    occurred_at = _iso(changed_at)

    def make(detail_type: str) -> GrantEvent:
        return GrantEvent(
            detail_type,
            event_id,
            _s(new, "user_id"),
            _s(new, "grant_id"),
            _s(new, "email"),
            status,
            occurred_at,
            from_attribute(new.get("metadata")),
        )

    if not old:
        return make(CONNECTED)
    old_status = _s(old, "status")
    new_flow = _s(old, "grant_id") != _s(new, "grant_id") or _n(old, "connected_at") != _n(
        new, "connected_at"
    )
    if status == VALID:
        if old_status != VALID or new_flow:
            return make(RECONNECTED)
        return None
    if status in _EVENT_BY_STATUS and (status != old_status or new_flow):
        return make(_EVENT_BY_STATUS[status])
    return None
