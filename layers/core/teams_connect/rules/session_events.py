"""Sessions table change stream → the events of flows that end (`functions/session_events`):

- `Connect Failed` `{"event_id", "user_id", "error", "occurred_at", "metadata"}`: a connect session
  turned `failed` (the error code the flow ended with, kept on the session as `error_code`);
- `Tenant Admin Consented` `{"event_id", "tenant_id", "consent_id", "occurred_at"}`: an admin-consent
  flow turned `completed`.

Pure: a stream record in, an event (or None) out. `event_id` is stable across redeliveries of the same
stream record (as for grant events), so a consumer dedupes on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from teams_connect.rules.lifecycle import SOURCE, event_id_of

CONNECT_FAILED = "Connect Failed"
TENANT_ADMIN_CONSENTED = "Tenant Admin Consented"
ADMIN_CONSENT_KIND = "admin_consent"
__all__ = [
    "CONNECT_FAILED",
    "SOURCE",
    "TENANT_ADMIN_CONSENTED",
    "ConnectFailed",
    "TenantAdminConsented",
    "event_for",
]


def _s(image: Mapping[str, Any], name: str) -> str:
    value = image.get(name)
    return str(value["S"]) if isinstance(value, Mapping) and "S" in value else ""


def _n(image: Mapping[str, Any], name: str) -> int:
    value = image.get(name)
    try:
        return int(value["N"]) if isinstance(value, Mapping) and "N" in value else 0
    except (TypeError, ValueError):
        return 0


def _metadata(image: Mapping[str, Any]) -> dict[str, str]:
    value = image.get("metadata")
    entries = value.get("M") if isinstance(value, Mapping) else None
    if not isinstance(entries, Mapping):
        return {}
    return {str(k): str(v["S"]) for k, v in entries.items() if isinstance(v, Mapping) and "S" in v}


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConnectFailed:
    event_id: str
    user_id: str
    error: str
    occurred_at: str
    metadata: dict[str, str] = field(default_factory=dict)
    detail_type: str = CONNECT_FAILED

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "error": self.error,
            "occurred_at": self.occurred_at,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class TenantAdminConsented:
    event_id: str
    tenant_id: str
    consent_id: str
    occurred_at: str
    detail_type: str = TENANT_ADMIN_CONSENTED

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "consent_id": self.consent_id,
            "occurred_at": self.occurred_at,
        }


def event_for(record: Mapping[str, Any]) -> ConnectFailed | TenantAdminConsented | None:
    """The event a sessions stream record stands for, or None (a step that ends nothing, a removal by
    TTL, a record that changed without changing its status)."""
    if record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    dynamodb = record.get("dynamodb") or {}
    old: Mapping[str, Any] = dynamodb.get("OldImage") or {}
    new: Mapping[str, Any] = dynamodb.get("NewImage") or {}
    status = _s(new, "status")
    if not new or status == _s(old, "status"):
        return None
    approx = dynamodb.get("ApproximateCreationDateTime")
    when = _n(new, "updated_at") or (int(approx) if isinstance(approx, int | float) else 0)
    if _s(new, "kind") == ADMIN_CONSENT_KIND:
        tenant_id = _s(new, "consented_tenant_id")
        if status != "completed" or not tenant_id:
            return None
        return TenantAdminConsented(event_id_of(record), tenant_id, _s(new, "session_id"), _iso(when))
    if status != "failed" or not _s(new, "user_id"):
        return None
    return ConnectFailed(
        event_id_of(record),
        _s(new, "user_id"),
        _s(new, "error_code") or "server_error",
        _iso(when),
        _metadata(new),
    )
