"""Strict validation of the meetings API's request bodies, before any I/O (contract.md "Meetings").

A valid body becomes a small normalised dict (times as Unix seconds); anything else is a 400
`invalid_request` that names the field and echoes nothing of the value.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from teams_connect.errors import InvalidRequest
from teams_connect.rules.security import EMAIL_RE

MAX_TITLE = 1024
MAX_DESCRIPTION = 8192
MAX_PARTICIPANTS = 100
MAX_NAME = 256
MAX_EMAIL = 320
MAX_DURATION_SECONDS = 24 * 3600
EARLIEST = 946684800  # 2000-01-01T00:00:00Z
LATEST = 4102444800  # 2100-01-01T00:00:00Z
MAX_IDEMPOTENCY_KEY = 255
CREATE_FIELDS = frozenset({"title", "start", "end", "description", "participants", "timezone"})
UPDATE_FIELDS = frozenset({"title", "start", "end", "description", "participants"})

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}\Z", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}\Z", re.ASCII)
# Microsoft event ids are base64-like; at least one letter or digit, so never `.` or `..` (which an
# HTTP client would resolve as a path segment into another Nylas endpoint).
MEETING_ID_RE = re.compile(r"^(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9_=+.-]{1,1024}\Z", re.ASCII)


def _bad_char(value: str, *, allow_newlines: bool) -> bool:
    allowed = "\t\n\r" if allow_newlines else ""
    return any(
        (ord(c) < 0x20 and c not in allowed) or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) <= 0xDFFF
        for c in value
    )


def _text(body: dict[str, Any], name: str, max_len: int, *, required: bool, newlines: bool) -> str | None:
    if name not in body:
        if required:
            raise InvalidRequest(f"{name} is required.")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string.")
    if len(value) > max_len:
        raise InvalidRequest(f"{name} must be at most {max_len} characters.")
    if _bad_char(value, allow_newlines=newlines):
        raise InvalidRequest(f"{name} must not contain control characters.")
    return value


def _title(body: dict[str, Any], *, required: bool) -> str | None:
    title = _text(body, "title", MAX_TITLE, required=required, newlines=False)
    if title is not None and not title.strip():
        raise InvalidRequest("title must not be blank.")
    return title


def parse_time(value: object, name: str) -> int:
    """RFC 3339 date-time WITH an offset (`Z` or `±hh:mm`) → Unix seconds (fractions dropped)."""
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidRequest(f"{name} must be an RFC 3339 date-time with an offset.")
    match = _RFC3339.match(value)
    if match is None:
        raise InvalidRequest(f"{name} must be an RFC 3339 date-time with an offset.")
    year, month, day, hour, minute, second, _fraction, offset = match.groups()
    normalised = f"{year}-{month}-{day}T{hour}:{minute}:{second}{'+00:00' if offset in 'Zz' else offset}"
    try:
        moment = datetime.fromisoformat(normalised)
    except ValueError:
        raise InvalidRequest(f"{name} is not a valid date-time.") from None
    offset_hours = abs(int(offset[1:3])) if offset not in "Zz" else 0
    if offset_hours > 23:
        raise InvalidRequest(f"{name} has an invalid offset.")
    epoch = int(moment.timestamp())
    if not EARLIEST <= epoch <= LATEST:
        raise InvalidRequest(f"{name} must be between 2000-01-01 and 2100-01-01.")
    return epoch


def _timezone(body: dict[str, Any]) -> str | None:
    if "timezone" not in body:
        return None
    value = body["timezone"]
    if not isinstance(value, str) or not _TIMEZONE.match(value):
        raise InvalidRequest("timezone must be an IANA time zone name.")
    # zoneinfo (with sysconfig for its search path) only where a body names a time zone: the get and
    # delete functions import these rules but never load it at init (cold start, issue 20).
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(value)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise InvalidRequest("timezone must be an IANA time zone name.") from None
    return value


def _participants(body: dict[str, Any]) -> list[dict[str, str]] | None:
    if "participants" not in body:
        return None
    raw = body["participants"]
    if not isinstance(raw, list):
        raise InvalidRequest("participants must be a list.")
    if len(raw) > MAX_PARTICIPANTS:
        raise InvalidRequest(f"participants must hold at most {MAX_PARTICIPANTS} entries.")
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    for index, item in enumerate(raw):
        where = f"participants[{index}]"
        if not isinstance(item, dict) or set(item) - {"email", "name"}:
            raise InvalidRequest(f"{where} must be an object with email and an optional name.")
        email = item.get("email")
        if not isinstance(email, str) or len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
            raise InvalidRequest(f"{where}.email must be an email address.")
        if _bad_char(email, allow_newlines=False) or email.lower() in seen:
            raise InvalidRequest(f"{where}.email is not valid or is listed twice.")
        seen.add(email.lower())
        entry = {"email": email}
        name = _text(item, "name", MAX_NAME, required=False, newlines=False)
        if name is not None:
            entry["name"] = name
        out.append(entry)
    return out


def _check_span(start: int, end: int) -> None:
    if end <= start:
        raise InvalidRequest("end must be after start.")
    if end - start > MAX_DURATION_SECONDS:
        raise InvalidRequest("A meeting may last at most 24 hours.")


def _object(body: object, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest("Unknown fields: " + ", ".join(sorted(str(k)[:40] for k in unknown)[:5]))
    return body


def parse_create(body: object) -> dict[str, Any]:
    """`{"title", "start", "end", "description"?, "participants"?, "timezone"?}` → normalised."""
    data = _object(body, CREATE_FIELDS)
    title = _title(data, required=True)
    if "start" not in data or "end" not in data:
        raise InvalidRequest("start and end are required.")
    start, end = parse_time(data["start"], "start"), parse_time(data["end"], "end")
    _check_span(start, end)
    out: dict[str, Any] = {"title": title, "start": start, "end": end}
    description = _text(data, "description", MAX_DESCRIPTION, required=False, newlines=True)
    if description is not None:
        out["description"] = description
    participants = _participants(data)
    out["participants"] = participants or []
    timezone = _timezone(data)
    if timezone is not None:
        out["timezone"] = timezone
    return out


def parse_update(body: object) -> dict[str, Any]:
    """Any of title, start, end, description, participants (at least one) → normalised."""
    data = _object(body, UPDATE_FIELDS)
    if not data:
        raise InvalidRequest("Give at least one of title, start, end, description, participants.")
    out: dict[str, Any] = {}
    title = _title(data, required=False)
    if title is not None:
        out["title"] = title
    for name in ("start", "end"):
        if name in data:
            out[name] = parse_time(data[name], name)
    if "start" in out and "end" in out:
        _check_span(out["start"], out["end"])
    description = _text(data, "description", MAX_DESCRIPTION, required=False, newlines=True)
    if description is not None:
        out["description"] = description
    participants = _participants(data)
    if participants is not None:
        out["participants"] = participants
    return out


def check_span(start: int, end: int) -> None:
    """The merged times of an update (one side from the stored event)."""
    _check_span(start, end)


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.match(value):
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return value


def check_meeting_id(value: str) -> str:
    if not MEETING_ID_RE.match(value):
        raise InvalidRequest("meeting_id is not valid.")
    return value
