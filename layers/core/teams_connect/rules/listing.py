"""`GET /v1/grants`, pure rules: the query parameters and the signed, opaque cursor.

The cursor names the last user id a page consumed and the filter it was made for, signed with
HMAC-SHA256 under the deployment's cursor key (`ListingCursorSecret`): a cursor changed by hand, made
for another filter or by another deployment fails the check and is refused (400 invalid_request);
it can never make a query read other keys. Clients treat it as opaque.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from teams_connect.errors import InvalidRequest
from teams_connect.rules.lifecycle import STATUSES
from teams_connect.rules.security import EMAIL_RE

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 2048
_PARAMETERS = frozenset({"status", "email", "limit", "cursor"})


@dataclass(frozen=True)
class ListQuery:
    status: str | None = None
    email: str | None = None  # lower-cased
    limit: int = DEFAULT_LIMIT
    after: str | None = None  # the last user id of the previous page (from a verified cursor)

    def scope(self) -> list[str | None]:
        """What a cursor is bound to: the filter, not the page size."""
        return [self.status, self.email]


def parse_list_query(params: dict[str, str], cursor_key: bytes) -> ListQuery:
    unknown = set(params) - _PARAMETERS
    if unknown:
        raise InvalidRequest("Unknown query parameters: " + ", ".join(sorted(k[:40] for k in unknown)[:5]))
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidRequest("status must be one of " + ", ".join(sorted(STATUSES)) + ".")
    email = params.get("email")
    if email is not None:
        if len(email) > 320 or not EMAIL_RE.match(email):
            raise InvalidRequest("email must be an email address.")
        email = email.lower()
    raw_limit = params.get("limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}.")
        limit = int(raw_limit)
    query = ListQuery(status=status, email=email, limit=limit)
    cursor = params.get("cursor")
    if cursor is None:
        return query
    return ListQuery(status=status, email=email, limit=limit, after=open_cursor(cursor, query, cursor_key))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"teams-connect/grants-cursor/v1\n" + payload, hashlib.sha256).digest()


def make_cursor(query: ListQuery, last_user_id: str, cursor_key: bytes) -> str:
    payload = json.dumps({"s": query.scope(), "u": last_user_id}, separators=(",", ":")).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(cursor_key, payload))}"


def open_cursor(cursor: str, query: ListQuery, cursor_key: bytes) -> str:
    """The last user id of a cursor made by this deployment for this filter, or InvalidRequest."""
    invalid = InvalidRequest("cursor is not valid for this listing.")
    if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1 or not cursor.isascii():
        raise invalid
    encoded, signature = cursor.split(".")
    try:
        payload, mac = _unb64(encoded), _unb64(signature)
    except ValueError:
        raise invalid from None
    if not hmac.compare_digest(mac, _mac(cursor_key, payload)):
        raise invalid
    try:
        data = json.loads(payload)
    except ValueError:
        raise invalid from None
    if not isinstance(data, dict) or data.get("s") != query.scope() or not isinstance(data.get("u"), str):
        raise invalid
    return str(data["u"])
