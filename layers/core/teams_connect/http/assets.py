"""Static scripts the API serves to browsers (`connect.js`): versioned, cacheable, integrity-pinned.

One asset is read from the function's package once per container and answered from memory:

- `GET <path>`: `Cache-Control: public, max-age=300` and a strong `ETag` (the version), so a page
  that always loads the plain URL revalidates cheaply (`304` for `If-None-Match`);
- `GET <path>?v=<version>`: the same bytes, `Cache-Control: public, max-age=31536000, immutable`
  (that URL never changes meaning; another `v` is `404`, never other bytes under an immutable URL);
- `Content-Type: text/javascript; charset=utf-8`, `X-Content-Type-Options: nosniff`, and
  `Access-Control-Allow-Origin: *` (public, no credentials: a page's `<script crossorigin>` needs CORS
  for its Subresource Integrity check); gzip when the browser accepts it (API Gateway HTTP APIs do
  not compress).
"""

import base64
import gzip
import hashlib
import json

from teams_connect.errors import API_HEADERS, ConnectError, NotFound, error_headers, to_http
from teams_connect.rules.query import parse_query

# Not `typing.TYPE_CHECKING`, and no `from __future__ import annotations` (annotations are quoted
# instead): the script route's cold start loads only the standard library pieces it uses.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from os import PathLike
    from typing import Any

    LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

#: A plain URL is rechecked after five minutes: a redeploy reaches pages within that time.
PLAIN_CACHE = "public, max-age=300"
VERSIONED_CACHE = "public, max-age=31536000, immutable"
JS_TYPE = "text/javascript; charset=utf-8"


class StaticScript:
    """One script, as read and prepared once per container (a plain class, not a dataclass: the
    script route's cold start pays for nothing it does not use)."""

    __slots__ = ("body", "gzipped", "integrity", "version")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        self.version = hashlib.sha256(body).hexdigest()[:16]  # first 16 hex digits of the SHA-256
        # Subresource Integrity: sha384-<base64>
        self.integrity = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode("ascii")

    @classmethod
    def load(cls, path: "str | PathLike[str]") -> "StaticScript":
        with open(path, "rb") as script:
            return cls(script.read())

    def __repr__(self) -> str:
        return f"StaticScript(version={self.version!r}, {len(self.body)} bytes)"

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """`Accept-Encoding` names gzip (or `*`) with a non-zero quality."""
    for part in (accept_encoding or "").lower().split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if name not in ("gzip", "*"):
            continue
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


def _matches(if_none_match: str | None, tags: set[str]) -> bool:
    if not if_none_match:
        return False
    sent = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in sent or bool(sent & tags)


def script_result(
    asset: StaticScript, *, raw_query: str, headers: "Mapping[str, str]"
) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, body is gzip) for a GET of the asset. Raises `NotFound` for another
    version than this one and `InvalidRequest` for a malformed query."""
    query = parse_query(raw_query)  # malformed or duplicated parameters: 400
    version = query.get("v")
    if version is not None and version != asset.version:
        raise NotFound("No such version of this script.")  # never other bytes under an immutable URL
    compressed = _accepts_gzip(headers.get("accept-encoding"))
    etag = f'"{asset.version}-gzip"' if compressed else asset.etag
    answer = {
        "Cache-Control": VERSIONED_CACHE if version else PLAIN_CACHE,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Content-Type": JS_TYPE,
    }
    if _matches(headers.get("if-none-match"), {asset.etag, f'"{asset.version}-gzip"'}):
        return 304, answer, b"", False
    if compressed:
        answer["Content-Encoding"] = "gzip"
        return 200, answer, asset.gzipped, True
    return 200, answer, asset.body, False


# --- the route ------------------------------------------------------------------------------------
# `apigw.api_route` would add Powertools Logger, Metrics and Tracer (≈ 120 ms of cold start here) to
# answer a file that needs no secret, no AWS call and nothing to trace or count. What the route keeps
# from `apigw`: the match on `rawPath` and the method (anything else is the contract's JSON 404), and
# failures mapped to the contract's JSON errors by `teams_connect.errors.to_http`, the one mapping. An
# unexpected error is logged by the standard library's logger (Lambda writes it to the function's
# log) by its type only. `make bench` measures this route against the script's own work (its floor).
def script_route(path: str, asset: StaticScript) -> "LambdaHandler":
    """The Lambda handler serving `asset` at `GET path` (HTTP API payload 2.0)."""

    def lambda_handler(event: "dict[str, Any]", context: "Any") -> "dict[str, Any]":
        try:
            http = (event.get("requestContext") or {}).get("http") or {}
            method = str(http.get("method") or "").upper()
            raw_path = str(event.get("rawPath") or http.get("path") or "")
            if method != "GET" or raw_path != path:
                raise NotFound("No such route.")
            headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
            status, answer, body, gzipped = script_result(
                asset, raw_query=str(event.get("rawQueryString") or ""), headers=headers
            )
        except Exception as error:
            return _error(error)
        return _result(status, answer, body, gzipped)

    return lambda_handler


def _result(status: int, headers: "Mapping[str, str]", body: bytes, gzipped: bool) -> "dict[str, Any]":
    text = base64.b64encode(body).decode("ascii") if gzipped else body.decode("utf-8")
    return {
        "statusCode": status,
        "body": text,
        "isBase64Encoded": gzipped,
        "headers": dict(headers),
        "cookies": [],
    }


def _error(error: BaseException) -> "dict[str, Any]":
    if not isinstance(error, ConnectError):
        import logging  # only on this path

        logging.getLogger("teams_connect.static").error(
            "unhandled error: %s",
            type(error).__name__,  # no text: it may quote input
        )
    status, body = to_http(error)
    headers = {**API_HEADERS, **error_headers(error), "Content-Type": "application/json"}
    return _result(status, headers, json.dumps(body, separators=(",", ":")).encode("utf-8"), False)
