"""Strict query strings: the standard library's parser, held to what the contract accepts.

Its own module (standard library only) so that the static script route can parse `?v=` without the
rest of `rules.security`; `rules.security` re-exports it.
"""

from urllib.parse import parse_qsl

from teams_connect.errors import InvalidRequest

MAX_QUERY_LENGTH = 4096
MAX_QUERY_FIELDS = 20


def parse_query(raw: str | None, error: type[Exception] = InvalidRequest) -> dict[str, str]:
    """Strictly parse a raw query string: valid UTF-8 percent-encoding, at most 20 fields,
    every parameter at most once (API Gateway would join duplicates with commas)."""
    raw = raw or ""
    if len(raw) > MAX_QUERY_LENGTH:
        raise error()
    if not raw:
        return {}
    try:
        pairs = parse_qsl(
            raw,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except (ValueError, UnicodeDecodeError):
        raise error() from None
    result: dict[str, str] = {}
    for key, value in pairs:
        if key in result:
            raise error()
        result[key] = value
    return result
