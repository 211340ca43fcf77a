"""JSON as teams-connect accepts it from outside (the backend API's bodies, Nylas's notifications):
strict UTF-8, no duplicate keys, no NaN/Infinity."""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(_: str) -> Any:
    raise ValueError("non-standard JSON constant")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def loads(data: bytes) -> Any:
    """Raises `UnicodeDecodeError` / `ValueError` for anything but strict JSON, and `RecursionError`
    for a deeply nested document (`[[[[…`, a JSON bomb that fits any size limit)."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
