"""The app's own metadata on a session / grant, pure rules (contract.md, "Sessions: more options").

Up to 10 keys of 1-40 characters from `A-Z a-z 0-9 _ . -`, each with a string value of 0-256
characters. Stored on the session, then on the grant when the flow succeeds, returned by
`GET /v1/grants/{user_id}` and carried in every event and app webhook of that grant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from teams_connect.errors import InvalidRequest

MAX_KEYS = 10
MAX_VALUE_LENGTH = 256
KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,40}\Z")


def check_metadata(value: object) -> dict[str, str]:
    """The validated metadata of a request, or `InvalidRequest` (400 invalid_request)."""
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object of string values.")
    if len(value) > MAX_KEYS:
        raise InvalidRequest(f"metadata holds at most {MAX_KEYS} keys.")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise InvalidRequest("metadata keys are 1 to 40 characters of A-Z a-z 0-9 _ . -")
        if not isinstance(item, str) or len(item) > MAX_VALUE_LENGTH:
            raise InvalidRequest(f"metadata values are strings of 0 to {MAX_VALUE_LENGTH} characters.")
        if not _encodable(item):
            raise InvalidRequest("metadata values must not contain lone surrogates.")
        checked[key] = item
    return checked


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_attribute(metadata: Mapping[str, str]) -> dict[str, Any]:
    """DynamoDB's map attribute of the metadata."""
    return {"M": {k: {"S": v} for k, v in metadata.items()}}


def from_attribute(attribute: object) -> dict[str, str]:
    """The metadata of a DynamoDB map attribute (`{}` when absent or not a map of strings)."""
    if not isinstance(attribute, Mapping) or not isinstance(attribute.get("M"), Mapping):
        return {}
    return {
        str(k): str(v["S"])
        for k, v in attribute["M"].items()
        if isinstance(v, Mapping) and isinstance(v.get("S"), str)
    }
