"""App webhooks, pure rules (no I/O): the contract's webhook from an EventBridge event, Standard
Webhooks signing with rotation, and the retry policy (docs/lifecycle.md, "App webhooks").

- Body: `{"type", "timestamp", "data"}`, `data` = the EventBridge detail, `type` from the detail-type,
  `timestamp` = the event's `occurred_at`: the same bytes on every attempt of one event.
- Headers (Standard Webhooks): `webhook-id` = the event's `event_id` (stable: a receiver dedupes
  redeliveries on it), `webhook-timestamp` = the attempt's Unix seconds, `webhook-signature` =
  `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per signing key, space-separated.
- Signing uses the official `standardwebhooks` package (its signer is a dozen stdlib lines:
  `python -X importtime` measures 7 ms for the module itself on top of what Powertools imports).
- Keys: the secret `{"secret", "previous_secret", "previous_valid_until"}`; during a rotation's overlap
  (until `previous_valid_until`, Unix seconds) both keys sign, then only the new one.
- Retries: network errors, timeouts, 408, 429, 5xx (and anything not 2xx that is not a 4xx) are retried
  with exponential backoff and equal jitter (10 s doubling to 30 min, halved at random), never sooner
  than `Retry-After`, for at least 24 h from the first attempt; any other 4xx is final at once.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

#: EventBridge detail-type → webhook `type` (contract.md, "Events and app webhooks").
WEBHOOK_TYPES: Mapping[str, str] = {
    "Grant Connected": "grant.connected",
    "Grant Reconnected": "grant.reconnected",
    "Grant Disconnected": "grant.disconnected",
    "Grant Expired": "grant.expired",
    "Grant Revoked": "grant.revoked",
    "Grant Needs Reauth": "grant.needs_reauth",
    "Connect Failed": "connect.failed",
    "Tenant Admin Consented": "tenant.admin_consented",
}

TIMEOUT_SECONDS = 10.0
BACKOFF_BASE_SECONDS = 10
BACKOFF_CAP_SECONDS = 1800
RETRY_BUDGET_SECONDS = 86400
#: SQS allows a message at most 12 h of visibility from its receive.
MAX_DELAY_SECONDS = 43000
RETRIED_4XX = frozenset({408, 429})
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


class MalformedEvent(ValueError):
    """The queued message is not an EventBridge event this delivery knows (kept as a dead letter)."""


@dataclass(frozen=True)
class AppWebhook:
    """One webhook: its id and the exact body bytes every attempt sends."""

    webhook_id: str
    type: str
    body: str


def webhook_for(envelope_json: str) -> AppWebhook:
    """The contract's webhook for one EventBridge event (the SQS message body EventBridge wrote)."""
    try:
        envelope = json.loads(envelope_json)
    except ValueError:
        raise MalformedEvent("not JSON") from None
    if not isinstance(envelope, dict):
        raise MalformedEvent("not an object")
    detail = envelope.get("detail")
    kind = WEBHOOK_TYPES.get(str(envelope.get("detail-type")))
    if kind is None or not isinstance(detail, dict):
        raise MalformedEvent("unknown detail-type or no detail")
    event_id = detail.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("no event_id")
    timestamp = detail.get("occurred_at") or envelope.get("time")
    body = json.dumps({"type": kind, "timestamp": timestamp, "data": detail}, separators=(",", ":"))
    return AppWebhook(webhook_id=event_id, type=kind, body=body)


# --------------------------------------------------------------------------- keys and signatures


@dataclass(frozen=True)
class SigningKeys:
    """The secret(s) that sign now: the current one, and the previous one during an overlap."""

    secrets: tuple[str, ...]


def signing_keys(stored: Mapping[str, Any], now: float) -> SigningKeys:
    """The keys of the stored secret JSON that sign at `now` (Unix seconds). Raises ValueError when
    there is no usable current secret (fail closed: nothing unsigned ever leaves)."""
    current = stored.get("secret")
    if not isinstance(current, str) or len(_bare(current)) < 24:
        raise ValueError("the app webhook secret has no usable 'secret'")
    keys = [current]
    previous = stored.get("previous_secret")
    until = stored.get("previous_valid_until")
    if (
        isinstance(previous, str)
        and len(_bare(previous)) >= 24
        and isinstance(until, int | float)
        and now < until
        and previous != current
    ):
        keys.append(previous)
    return SigningKeys(tuple(keys))


def _bare(secret: str) -> str:
    return secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret


def whsec(secret: str) -> str:
    """The receiver's form of a stored secret: `whsec_` + the base64 key."""
    return SECRET_PREFIX + _bare(secret)


def signature_header(keys: SigningKeys, webhook_id: str, timestamp: int, body: str) -> str:
    """`v1,<sig>` per key, space-separated (Standard Webhooks)."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(whsec(k)).sign(webhook_id, when, body) for k in keys.secrets)


def headers_for(keys: SigningKeys, webhook: AppWebhook, now: float) -> dict[str, str]:
    timestamp = int(now)
    return {
        "content-type": "application/json",
        "user-agent": "teams-connect-webhooks/1",
        "webhook-id": webhook.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, webhook.webhook_id, timestamp, webhook.body),
    }


# --------------------------------------------------------------------------- outcomes and retries


@dataclass(frozen=True)
class Attempt:
    """What one POST gave: a status (with its Retry-After header), or a transport error's name."""

    status: int | None = None
    retry_after: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True  # network error, timeout
        if 400 <= self.status < 500:
            return self.status in RETRIED_4XX
        return not self.delivered

    def describe(self) -> str:
        return f"http_{self.status}" if self.status is not None else (self.error or "error")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff per attempt, the budget, and the local clock compression (`scale`: 1 in AWS; locally
    e.g. 1440, so 24 h pass in a minute). Durations are policy seconds; `delay_for` answers real
    seconds for SQS (at least 1)."""

    base: int = BACKOFF_BASE_SECONDS
    cap: int = BACKOFF_CAP_SECONDS
    budget: int = RETRY_BUDGET_SECONDS
    scale: int = 1

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Equal jitter: half the exponential step fixed, half at random (attempt 1 = the first)."""
        step = float(min(self.cap, self.base << max(0, min(attempt - 1, 30))))
        return step / 2 + rand() * step / 2

    def exhausted(self, first_attempt: float, now: float) -> bool:
        """True once the budget is spent (policy time since the first attempt ≥ budget)."""
        return (now - first_attempt) * self.scale >= self.budget

    def delay_for(
        self, attempt: int, outcome: Attempt, now: float, rand: Callable[[], float] = random.random
    ) -> int:
        """Real seconds until the next attempt: the backoff, never less than Retry-After (both in policy
        time), at most SQS's 12 h of visibility."""
        delay = self.backoff(attempt, rand)
        asked = retry_after_seconds(outcome.retry_after, now)
        if asked is not None:
            delay = max(delay, asked)
        delay = min(delay, MAX_DELAY_SECONDS)
        return max(1, math.ceil(delay / self.scale))
