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

from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from teams_connect.errors import NotFound
from teams_connect.rules.security import parse_query

#: A plain URL is rechecked after five minutes: a redeploy reaches pages within that time.
PLAIN_CACHE = "public, max-age=300"
VERSIONED_CACHE = "public, max-age=31536000, immutable"
JS_TYPE = "text/javascript; charset=utf-8"


@dataclass(frozen=True, slots=True)
class StaticScript:
    body: bytes = field(repr=False)
    gzipped: bytes = field(repr=False)
    version: str  # first 16 hex digits of the SHA-256 of the body
    integrity: str  # Subresource Integrity: sha384-<base64>

    @classmethod
    def load(cls, path: Path) -> StaticScript:
        body = path.read_bytes()
        return cls(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            version=hashlib.sha256(body).hexdigest()[:16],
            integrity="sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode("ascii"),
        )

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
    asset: StaticScript, *, raw_query: str, headers: dict[str, str] | Any
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
