"""Input parsing shared by every surface: capped bodies, JSON/form decoding, typed field access, validators.

Every helper reports bad input through ``fail(status, message)``, a factory that returns the error
exception of the caller's surface (v3, OAuth, beta or page), so one parser serves all shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

from .errors import EmulatorError

Fail = Callable[[int, str], EmulatorError]

EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TENANT_WORDS = ("common", "organizations")
MAX_FORM_FIELDS = 100


def is_email(value: str) -> bool:
    """Reasonable address syntax: dot-atom local part, a dotted domain, at most 320 characters."""
    return len(value) <= 320 and EMAIL_RE.fullmatch(value) is not None and ".." not in value


def is_tenant(value: str) -> bool:
    return value in TENANT_WORDS or GUID_RE.fullmatch(value) is not None


def is_http_url(value: str, max_len: int = 2048) -> bool:
    """An absolute http(s) URL with a host and no fragment (OAuth redirect URIs must not carry one)."""
    if len(value) > max_len or any(ch.isspace() or ord(ch) < 0x20 for ch in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment and "#" not in value
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int, fail: Fail) -> bytes:
    """The whole body, refusing (413) anything above ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise fail(400, "Invalid Content-Length header")
        if int(declared) > limit:
            raise fail(413, f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise fail(413, f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json_object(raw: bytes, fail: Fail) -> dict[str, Any]:
    if not raw.strip():
        raise fail(400, "Request body is empty; a JSON object is required")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise fail(400, "Request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise fail(400, "Request body must be a JSON object")
    return value


async def json_object(request: Request, limit: int, fail: Fail) -> dict[str, Any]:
    """A JSON object body; the content type must be ``application/json``."""
    if _media_type(request) != "application/json":
        raise fail(415, "Content-Type must be application/json")
    return decode_json_object(await read_body(request, limit, fail), fail)


def decode_form(raw: bytes, fail: Fail) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; repeated fields are refused."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise fail(400, "Form body is not valid") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise fail(400, f"Field '{key}' is repeated")
        form[key] = value
    return form


async def json_or_form(request: Request, limit: int, fail: Fail) -> dict[str, Any]:
    media = _media_type(request)
    if media == "application/json":
        return decode_json_object(await read_body(request, limit, fail), fail)
    if media == "application/x-www-form-urlencoded":
        return dict(decode_form(await read_body(request, limit, fail), fail))
    raise fail(415, "Content-Type must be application/json or application/x-www-form-urlencoded")


async def form_body(request: Request, limit: int, fail: Fail) -> dict[str, str]:
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise fail(415, "The form must be sent as application/x-www-form-urlencoded")
    return decode_form(await read_body(request, limit, fail), fail)


def query_one(request: Request, name: str, fail: Fail) -> str | None:
    """One query parameter; a repeated parameter is refused."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise fail(400, f"Query parameter '{name}' is repeated")
    return values[0] if values else None


def query_int(
    request: Request, name: str, fail: Fail, *, default: int | None, lo: int, hi: int
) -> int | None:
    raw = query_one(request, name, fail)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,18}", raw):
        raise fail(400, f"Query parameter '{name}' must be an integer")
    value = int(raw)
    if not lo <= value <= hi:
        raise fail(400, f"Query parameter '{name}' must be between {lo} and {hi}")
    return value


class Fields:
    """Typed access to a decoded body; wrong types, missing or oversized values → ``fail``."""

    def __init__(self, data: Mapping[str, Any], fail: Fail, where: str = "") -> None:
        self.data = data
        self.fail = fail
        self.where = where

    def _name(self, name: str) -> str:
        return f"{self.where}{name}"

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def string(
        self, name: str, *, required: bool = False, max_len: int = 1024, allow_empty: bool = False
    ) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(400, f"Missing required field '{self._name(name)}'")
            return None
        if not isinstance(value, str):
            raise self.fail(400, f"Field '{self._name(name)}' must be a string")
        if not value and not allow_empty:
            if required:
                raise self.fail(400, f"Field '{self._name(name)}' must not be empty")
            return None
        if len(value) > max_len:
            raise self.fail(400, f"Field '{self._name(name)}' is longer than {max_len} characters")
        return value

    def req_string(self, name: str, *, max_len: int = 1024) -> str:
        value = self.string(name, required=True, max_len=max_len)
        assert value is not None
        return value

    def integer(self, name: str, *, required: bool = False, lo: int, hi: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(400, f"Missing required field '{self._name(name)}'")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(400, f"Field '{self._name(name)}' must be an integer")
        if not lo <= value <= hi:
            raise self.fail(400, f"Field '{self._name(name)}' must be between {lo} and {hi}")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(400, f"Field '{self._name(name)}' must be a boolean")
        return value

    def obj(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(400, f"Missing required field '{self._name(name)}'")
            return None
        if not isinstance(value, dict):
            raise self.fail(400, f"Field '{self._name(name)}' must be an object")
        return value

    def sub(self, name: str, *, required: bool = False) -> Fields | None:
        value = self.obj(name, required=required)
        return None if value is None else Fields(value, self.fail, f"{self._name(name)}.")

    def str_list(
        self,
        name: str,
        *,
        required: bool = False,
        max_items: int = 100,
        max_len: int = 512,
        non_empty: bool = False,
    ) -> list[str] | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(400, f"Missing required field '{self._name(name)}'")
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.fail(400, f"Field '{self._name(name)}' must be a list of non-empty strings")
        if non_empty and not value:
            raise self.fail(400, f"Field '{self._name(name)}' must not be empty")
        if len(value) > max_items:
            raise self.fail(400, f"Field '{self._name(name)}' has more than {max_items} items")
        if any(len(item) > max_len for item in value):
            raise self.fail(400, f"An item of '{self._name(name)}' is longer than {max_len} characters")
        return list(value)

    def str_map(self, name: str, *, max_items: int = 50, max_len: int = 500) -> dict[str, str] | None:
        value = self.obj(name)
        if value is None:
            return None
        if len(value) > max_items or not all(
            isinstance(v, str) and len(v) <= max_len for v in value.values()
        ):
            raise self.fail(
                400, f"Field '{self._name(name)}' must map at most {max_items} keys to short strings"
            )
        return {str(k): str(v) for k, v in value.items()}
