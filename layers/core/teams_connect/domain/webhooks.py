"""`GET|POST /nylas/webhooks`: Nylas's challenge, and signed grant notifications that keep records true.

Order of the POST checks (nylas-lifecycle.md §1.4-1.7):
1. the raw body as received (base64-decoded when API Gateway says so; gzip bytes stay compressed),
   at most 1 MiB (Nylas's own limit) → else 413;
2. `x-nylas-signature` = hex HMAC-SHA256 of those bytes with the webhook secret, compared in constant
   time against the current and the previous secret (rotation overlap) → else 401, nothing read;
   a mismatch re-reads the secret at most once per 30 s (a rotation by the setup);
3. only then decompress (bounded) and parse; malformed → 400; not a grant trigger → 200, ignored;
4. the grant's record (via its GRANT# owner item); none → 200, ignored (logged without PII);
5. order (docs/lifecycle.md, "Ordering"): older than the record's last change → 200 stale; in the same
   second, or stamped more than 300 s in the future (undecidable by time) → the grant is read from
   Nylas and what Nylas says is applied (as of now, for a future stamp); newer → the trigger's status,
   except a `grant.updated` naming no scopes, whose scopes (valid or needs_reauth) Nylas tells;
6. one transaction: dedupe marker + conditional update (webhook_store); a duplicate → 200, nothing changes.
Our own failures (DynamoDB, Secrets Manager) answer 503 so that Nylas retries; never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.metrics import MetricUnit

from teams_connect.adapters.store.grants import GrantRecord
from teams_connect.adapters.store.notifications import Change, NotificationStore, Outcome
from teams_connect.errors import ConnectError, UpstreamUnavailable
from teams_connect.observability import logger, metrics
from teams_connect.rules import lifecycle, strict_json

MAX_BODY_BYTES = 1024 * 1024
MAX_CHALLENGE_CHARS = 256
#: Nylas's challenge is an opaque random token; only URL-unreserved characters are echoed, so the
#: route cannot serve attacker-chosen markup or text on the service's origin (security review 3, G9).
_CHALLENGE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_CHALLENGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Content-Disposition": 'inline; filename="challenge.txt"',
}
SECRET_REFRESH_INTERVAL = 30.0
SIGNATURE_REJECTED = "WebhookSignatureRejected"
NOTIFICATION_APPLIED = "WebhookNotificationApplied"
NOTIFICATION_IGNORED = "WebhookNotificationIgnored"
WEBHOOK_FAILED = "WebhookFailed"
NOTIFICATION_FUTURE = "WebhookNotificationFuture"
NOTIFICATION_TIE = "WebhookNotificationTie"
#: A notification stamped later than now + this is not trusted to order anything (security review 3,
#: G3): Nylas is asked, as for a tie, and the change is recorded as of now, so a forged or skewed
#: future `time` cannot pin a record against later genuine notifications.
FUTURE_SKEW_SECONDS = 300
TRIGGERS = ("grant.created", "grant.updated", "grant.expired", "grant.deleted")
_STATUS_BY_TRIGGER = {
    "grant.created": lifecycle.VALID,
    "grant.updated": lifecycle.VALID,
    "grant.expired": lifecycle.EXPIRED,
    "grant.deleted": lifecycle.REVOKED,
}
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_lambda(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {**_HEADERS, **self.headers, "Content-Type": self.content_type},
            "body": self.body,
            "isBase64Encoded": False,
        }


def _json(status: int, code: str, message: str) -> HttpAnswer:
    if status < 400:
        return HttpAnswer(status, json.dumps({"status": code}, separators=(",", ":")))
    return HttpAnswer(
        status, json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    )


class Rejected(Exception):
    def __init__(self, answer: HttpAnswer) -> None:
        super().__init__(answer.body)
        self.answer = answer


@dataclass(frozen=True)
class Notification:
    id: str
    type: str
    time: int
    grant_id: str
    scopes: tuple[str, ...] | None


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(header: str | None, body: bytes, secrets: tuple[str, ...]) -> bool:
    """Constant time per secret; `sha256=` prefix and upper case tolerated; every secret is tried."""
    if not header or not secrets:
        return False
    given = header.strip().lower()
    if given.startswith("sha256="):
        given = given[7:]
    if len(given) != 64:
        return False
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(given.encode("ascii", "replace"), signature(secret, body).encode("ascii"))
    return ok


def raw_body(event: Mapping[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        raise Rejected(_json(400, "invalid_request", "The body is not valid."))
    if event.get("isBase64Encoded"):
        if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
            raise Rejected(_json(413, "payload_too_large", "The request body is too large."))
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(_json(400, "invalid_request", "The body is not valid base64.")) from None
    else:
        if len(raw) > MAX_BODY_BYTES:
            raise Rejected(_json(413, "payload_too_large", "The request body is too large."))
        data = raw.encode("utf-8", "surrogateescape")
    if len(data) > MAX_BODY_BYTES:
        raise Rejected(_json(413, "payload_too_large", "The request body is too large."))
    return data


def decompress(data: bytes, encoding: str) -> bytes:
    """gzip deliveries (`Content-Encoding: gzip`, or gzip magic bytes), at most 1 MiB inflated."""
    if encoding.strip().lower() not in ("gzip", "x-gzip") and not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise Rejected(_json(400, "invalid_request", "The body is not valid gzip.")) from None
    if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise Rejected(_json(413, "payload_too_large", "The request body is too large."))
    return out


def parse(data: bytes) -> Notification | None:
    """The grant notification in `data`; None for a well-formed notification of another trigger."""
    bad = Rejected(_json(400, "invalid_request", "The body is not a Nylas notification."))
    try:
        doc = strict_json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad from None
    if not isinstance(doc, dict):
        raise bad
    nid, kind, at = doc.get("id"), doc.get("type"), doc.get("time")
    if not isinstance(nid, str) or not 1 <= len(nid) <= 256 or not isinstance(kind, str) or len(kind) > 128:
        raise bad
    if kind not in TRIGGERS:
        return None
    if isinstance(at, bool) or not isinstance(at, int) or not 0 < at < 10**11:
        raise bad
    obj = (doc.get("data") or {}).get("object") if isinstance(doc.get("data"), dict) else None
    if not isinstance(obj, dict):
        raise bad
    grant_id = obj.get("grant_id")
    if not isinstance(grant_id, str) or not 1 <= len(grant_id) <= 256:
        raise bad
    scope = obj.get("scope")
    scopes: tuple[str, ...] | None = None
    if isinstance(scope, list) and all(isinstance(s, str) and len(s) <= 512 for s in scope) and scope:
        scopes = tuple(scope[:200])
    elif isinstance(scope, str) and scope.strip():
        scopes = tuple(s for s in scope.split(" ") if s)[:200]
    return Notification(id=nid, type=kind, time=at, grant_id=grant_id, scopes=scopes)


def challenge(raw_query: str) -> HttpAnswer:
    """`?challenge=<value>` exactly once → 200 text/plain with exactly that value; anything else 400."""
    try:
        pairs = parse_qsl(raw_query or "", keep_blank_values=True, strict_parsing=bool(raw_query))
    except ValueError:
        pairs = []
    values = [v for k, v in pairs if k == "challenge"]
    ok = (
        len(pairs) == 1
        and len(values) == 1
        and 0 < len(values[0]) <= MAX_CHALLENGE_CHARS
        and set(values[0]) <= _CHALLENGE_CHARS
    )
    if not ok:
        return _json(400, "invalid_request", "Expected exactly one challenge parameter.")
    return HttpAnswer(200, values[0], "text/plain; charset=utf-8", _CHALLENGE_HEADERS)


def _ref(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


@dataclass
class WebhookService:
    store: NotificationStore
    load_secrets: Callable[[bool], tuple[str, ...]]  # force_fetch → secrets
    required_scopes: tuple[str, ...]
    #: grant id → what Nylas says of it now: ("valid" | "invalid" | "gone", its scopes or None).
    #: Asked only for a notification that time cannot order (same second as the record's last change,
    #: or stamped in the future) and for a `grant.updated` that names no scopes.
    read_grant: Callable[[str], tuple[str, tuple[str, ...] | None]] | None = None
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    _last_refresh: float = field(default=-1e9, repr=False)

    def handle(self, event: Mapping[str, Any]) -> HttpAnswer:
        method = str(((event.get("requestContext") or {}).get("http") or {}).get("method", "")).upper()
        try:
            if method == "GET":
                return challenge(str(event.get("rawQueryString") or ""))
            if method == "POST":
                return self.notification(event)
            return _json(405, "method_not_allowed", "Use GET or POST.")
        except Rejected as rejected:
            return rejected.answer
        except ConnectError as exc:
            logger.warning("webhook not applied: retry expected", extra={"error_code": exc.code})
            self._count(WEBHOOK_FAILED)
            return _json(503, "upstream_unavailable", "Temporarily unavailable; retry later.")
        except Exception:
            logger.exception("webhook failed: retry expected")
            self._count(WEBHOOK_FAILED)
            return _json(503, "upstream_unavailable", "Temporarily unavailable; retry later.")

    def _count(self, metric: str) -> None:
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)

    def _verified(self, headers: Mapping[str, str], body: bytes) -> bool:
        header = headers.get("x-nylas-signature")
        if not header:
            return False
        if signature_matches(header, body, self.load_secrets(False)):
            return True
        now = self.monotonic()
        if now - self._last_refresh < SECRET_REFRESH_INTERVAL:
            return False
        self._last_refresh = now
        return signature_matches(header, body, self.load_secrets(True))

    def notification(self, event: Mapping[str, Any]) -> HttpAnswer:
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        body = raw_body(event)
        if not self._verified(headers, body):
            logger.warning("webhook signature missing or wrong")
            self._count(SIGNATURE_REJECTED)
            return _json(401, "unauthorized", "Missing or invalid signature.")
        note = parse(decompress(body, headers.get("content-encoding", "")))
        if note is None:
            self._count(NOTIFICATION_IGNORED)
            return _json(200, "ignored", "")
        logger.append_keys(notification=_ref(note.id), trigger=note.type)
        outcome = self.apply(note)
        logger.info("webhook notification handled", extra={"outcome": outcome})
        self._count(NOTIFICATION_APPLIED if outcome == Outcome.APPLIED else NOTIFICATION_IGNORED)
        return _json(200, outcome, "")

    def apply(self, note: Notification) -> str:
        now = int(self.clock())
        future = note.time > now + FUTURE_SKEW_SECONDS
        if future:  # its time orders nothing: it must not pin the record (security review 3, G3)
            logger.warning(
                "notification stamped in the future: Nylas decides", extra={"ahead_s": note.time - now}
            )
            self._count(NOTIFICATION_FUTURE)
        for _ in range(3):
            record = self.store.record_of_grant(note.grant_id)
            if record is None:
                logger.info("notification for a grant we do not hold", extra={"grant": _ref(note.grant_id)})
                return "unknown_grant"
            # Newest wins. The last change we hold is our own write (e.g. the callback that stored this
            # connection) or a notification already applied; times are whole seconds, so one in the
            # same second cannot be ordered by time, nor can one stamped in the future: Nylas, the
            # source of truth, decides, and the change is recorded as of now (never later).
            last = max(record.status_changed_at or record.updated_at, record.notified_at)
            at = note.time
            if future or note.time <= last:
                if self.store.seen(note.id):
                    return Outcome.DUPLICATE
                if not future and note.time < last:
                    return Outcome.STALE
                if self.shows_as_is(record, note):
                    # Whichever came last, the record would show the same: nothing to decide, no
                    # Nylas call (e.g. the grant.created of the connection we just stored).
                    return Outcome.STALE
                at = max(now, last) if future else note.time
                change = self.change_from_nylas(record, note, at)
            elif self.scopes_unknown(note):
                change = self.change_from_nylas(record, note, at)
            else:
                change = self.change_for(record, note)
            outcome = self.store.apply(record, change, notification_id=note.id, at=at, now=now)
            if outcome != Outcome.CHANGED:
                return outcome
        raise ConnectError("the grant record kept changing")

    @staticmethod
    def scopes_unknown(note: Notification) -> bool:
        """A `grant.updated` that names no scopes: the grant changed at Nylas (a re-authentication, or
        scopes added or taken away), and only Nylas can tell whether it still has the required scopes
        (`valid` or `needs_reauth`): the chaos campaign found a scope reduction left `valid`."""
        return note.type == "grant.updated" and note.scopes is None

    def shows_as_is(self, record: GrantRecord, note: Notification) -> bool:
        """Applying `note` would leave what the record shows (status, scopes) as it is."""
        if self.scopes_unknown(note):
            return False
        change = self.change_for(record, note)
        return (change.status, tuple(change.scopes), tuple(change.missing_scopes)) == (
            record.status,
            tuple(record.scopes),
            tuple(record.missing_scopes),
        )

    def change_from_nylas(self, record: GrantRecord, note: Notification, at: int) -> Change:
        """A tie, or a `grant.updated` without scopes: the grant's state as Nylas reports it now (valid
        → valid or needs_reauth, another status → expired, gone → revoked). Nylas unreachable →
        ConnectError: 503, Nylas redelivers."""
        if self.read_grant is None:
            raise UpstreamUnavailable()
        self._count(NOTIFICATION_TIE)
        state, nylas_scopes = self.read_grant(note.grant_id)
        target = {"valid": lifecycle.VALID, "gone": lifecycle.REVOKED}.get(state, lifecycle.EXPIRED)
        scopes = nylas_scopes or (note.scopes if note.scopes is not None else record.scopes)
        status, missing = lifecycle.status_for(target, scopes, self.required_scopes)
        logger.info(
            "notification undecided alone: Nylas decides", extra={"nylas_state": state, "status": status}
        )
        changed_at = at if status != record.status else (record.status_changed_at or record.updated_at)
        return Change(status=status, status_changed_at=changed_at, scopes=scopes, missing_scopes=missing)

    def change_for(self, record: GrantRecord, note: Notification) -> Change:
        scopes = note.scopes if note.scopes is not None else record.scopes
        status, missing = lifecycle.status_for(_STATUS_BY_TRIGGER[note.type], scopes, self.required_scopes)
        changed_at = note.time if status != record.status else (record.status_changed_at or record.updated_at)
        return Change(status=status, status_changed_at=changed_at, scopes=scopes, missing_scopes=missing)
