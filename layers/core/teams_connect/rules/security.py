"""Security primitives: ids, state, browser binding, PKCE, return_to allow-list, strict query
parsing and the constant-time API-key check. Pure functions, no I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from teams_connect.config import AllowedReturnUrl, is_loopback_host
from teams_connect.errors import InvalidRequest, ReturnToNotAllowed, SessionInvalid, Unauthorized

_B64URL43 = r"[A-Za-z0-9_-]{43}"
# Every pattern ends with `\Z`, not `$`: `$` also matches before a trailing newline, so
# `re.match(r"^x$", "x\n")` succeeds and a CR/LF would slip through into keys, URLs and paths.
SESSION_ID_RE = re.compile(rf"^{_B64URL43}\Z")
STATE_RE = re.compile(rf"^({_B64URL43})\.{_B64URL43}\Z")
NONCE_RE = SESSION_ID_RE
GRANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
# No whitespace, controls, markup characters or lone surrogates (which cannot be encoded as UTF-8).
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f<>\"\\\ud800-\udfff]{1,64}@[A-Za-z0-9.-]{1,253}\Z")
ACCOUNT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,256}\Z")
VERIFIER_LENGTH = 64
COOKIE_PREFIX_SECURE = "__Host-tc_"
COOKIE_PREFIX_LOCAL = "tc_"
MAX_RETURN_TO_LENGTH = 2048
_HOST_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
# Percent-encodings that could change how a path or host is read: `/`, `\`, `.`, `%`, controls.
_BAD_ESCAPES = re.compile(r"%(?:2f|5c|2e|25|[01][0-9a-f]|7f|[89][0-9a-f])", re.IGNORECASE)


def random_token() -> str:
    """32 CSPRNG bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def new_session_id() -> str:
    return random_token()


def new_state(session_id: str) -> str:
    """`<session_id>.<43-char random>`: identifies the session and is unguessable (256 bits)."""
    return f"{session_id}.{random_token()}"


def session_id_from_state(state: str) -> str:
    """The session id inside a syntactically valid state; `SessionInvalid` otherwise."""
    match = STATE_RE.match(state)
    if not match:
        raise SessionInvalid()
    return match.group(1)


def new_binding_nonce() -> str:
    return random_token()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_prefix(value: str, length: int = 12) -> str:
    """A non-secret correlation id derived from a secret value."""
    return sha256_hex(value)[:length]


def cookie_name(state_hash: str, *, secure: bool) -> str:
    """Per-flow cookie name, so several tabs can run flows at once (cf. ory/hydra#3757)."""
    prefix = COOKIE_PREFIX_SECURE if secure else COOKIE_PREFIX_LOCAL
    return prefix + state_hash[:8]


def find_cookie(cookies: Iterable[str], name: str) -> str | None:
    """The value of cookie `name` from API Gateway v2 `event.cookies` (`"a=b"` strings, or a
    header-style `"a=b; c=d"`). A duplicated name is treated as absent (cookie tossing)."""
    found: list[str] = []
    for entry in cookies:
        for part in entry.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                found.append(value.strip())
    return found[0] if len(found) == 1 else None


def new_code_verifier() -> str:
    """A 64-character PKCE verifier (RFC 7636: 43-128 unreserved characters)."""
    verifier = secrets.token_urlsafe(48)
    assert len(verifier) == VERIFIER_LENGTH
    return verifier


def pkce_challenge(verifier: str) -> str:
    """Nylas's S256: base64(hex(sha256(verifier))) with the `=` padding removed (nylas-api.md §1.6)."""
    hex_digest = hashlib.sha256(verifier.encode("ascii")).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii").rstrip("=")


# --- return_to ---------------------------------------------------------------------------------
def _reject() -> ReturnToNotAllowed:
    return ReturnToNotAllowed()


def validate_return_to(url: object, allowed: Sequence[AllowedReturnUrl]) -> str:
    """Accept `url` only if it is an absolute https URL (http only on a loopback host) whose
    scheme, host and port equal an allow-list entry and whose path starts with the entry's path
    prefix on a segment boundary. Anything odd is refused, never repaired."""
    if not isinstance(url, str) or not url or len(url) > MAX_RETURN_TO_LENGTH or not url.isascii():
        raise _reject()
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in url):
        raise _reject()  # controls, whitespace (incl. tab/CR/LF), backslashes
    if _BAD_ESCAPES.search(url) or re.search(r"%(?![0-9A-Fa-f]{2})", url):
        raise _reject()
    lowered = url.lower()
    if not (lowered.startswith("https://") or lowered.startswith("http://")):
        raise _reject()  # also rejects `//evil`, `https:evil`, `https:/evil`, `javascript:`
    try:
        parts = urlsplit(url)  # raises ValueError on an unclosed `[` (e.g. `http://[::1:80/`)
    except ValueError:
        raise _reject() from None
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if not netloc or "@" in netloc or "%" in netloc or netloc.endswith(":"):
        raise _reject()
    try:
        port = parts.port
    except ValueError:
        raise _reject() from None
    host = (parts.hostname or "").lower()
    if not host:
        raise _reject()
    if netloc.startswith("["):
        if host != "::1":
            raise _reject()
    elif not _HOST_RE.match(host):
        raise _reject()
    if scheme == "http" and not is_loopback_host(host):
        raise _reject()
    effective_port = port if port is not None else (443 if scheme == "https" else 80)
    path = parts.path or "/"
    # Dot segments, also with a `;` path parameter (`/..;/`, read as `..` by some servlet
    # containers), and empty segments could leave the allowed prefix after normalisation.
    segments = [segment.split(";", 1)[0] for segment in unquote(path).split("/")]
    if "." in segments or ".." in segments or "//" in path:
        raise _reject()
    for entry in allowed:
        if (entry.scheme, entry.host, entry.port) != (scheme, host, effective_port):
            continue
        prefix = entry.path_prefix
        if prefix.endswith("/") and path.startswith(prefix):
            return url
        if path == prefix or path.startswith(prefix + "/"):
            return url
    raise _reject()


def origin_of(url: str) -> str:
    """The browser's serialisation of a (validated) URL's origin: lower-case scheme and host, the port
    only when it is not the scheme's default (`https://App.example:443/x` → `https://app.example`).
    The popup result page's postMessage target and the status route's CORS origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    return f"{scheme}://{host}" if port is None or port == default else f"{scheme}://{host}:{port}"


def with_status(return_to: str, status_query: Mapping[str, str]) -> str:
    """Append `status=…` (and `error=…`) to a stored return_to, keeping its query and fragment."""
    parts = urlsplit(return_to)
    extra = urlencode(list(status_query.items()))
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


# --- backend API authentication ---------------------------------------------------------------------
def bearer_token(authorization: str | None) -> bytes | None:
    """The key of `Authorization: Bearer <key>`, or None when no such key is presented."""
    if not authorization:
        return None
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip().encode("utf-8")


#: Recognisable API keys (security review 3, G5): `tck_` + 43 base64url characters (32 random bytes) +
#: `_` + 8 hex characters (the first 4 bytes of SHA-256 of what precedes). A presented key of this form
#: that matches no cached key may force a re-read of the keys secret (a key just added by a rotation); a
#: random or mistyped token cannot, so an unauthenticated client cannot use the re-read up. Keys of
#: any other form (16+ characters) keep working, with the older, shared re-read (docs/security.md).
API_KEY_PREFIX = "tck_"
_API_KEY_RE = re.compile(r"tck_([A-Za-z0-9_-]{43})_([0-9a-f]{8})")


def _api_key_check(body: str) -> str:
    return hashlib.sha256((API_KEY_PREFIX + body).encode("ascii")).hexdigest()[:8]


def new_api_key() -> str:
    """A fresh recognisable API key (`python -m tools.api_key`)."""
    body = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return f"{API_KEY_PREFIX}{body}_{_api_key_check(body)}"


def api_key_recognised(token: bytes) -> bool:
    """True for a key of the recognisable form with a valid check (not proof of anything: a format)."""
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        return False
    match = _API_KEY_RE.fullmatch(text)
    return match is not None and hmac.compare_digest(match.group(2), _api_key_check(match.group(1)))


def authenticate_bearer(authorization: str | None, keys: Sequence[str]) -> None:
    """`Authorization: Bearer <key>` compared in constant time against every configured key."""
    token = bearer_token(authorization)
    if token is None or not keys:
        raise Unauthorized()
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token, key.encode("utf-8"))
    if not ok:
        raise Unauthorized()


def check_user_id(value: object) -> str:
    """1 to 256 characters, no control characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise InvalidRequest("user_id must be a string of 1 to 256 characters.")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        # Lone surrogates (JSON `"\ud800"`) are not encodable as UTF-8: DynamoDB would fail (500).
        raise InvalidRequest("user_id must not contain control characters or lone surrogates.")
    return value


def check_state(state: str | None) -> str:
    if state is None or not STATE_RE.match(state):
        raise SessionInvalid()
    return state
