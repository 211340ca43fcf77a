"""Settings from the environment, validated once per container.

Every value is checked at init; bad configuration raises :class:`ConfigError` with a clear
message (the function then fails its init phase instead of misbehaving later).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_BETA_SCOPES = (
    "User.Read",
    "offline_access",
    "OnlineMeetings.ReadWrite",
    "openid",
    "profile",
    "EAS.AccessAsUser.All",
    "EWS.AccessAsUser.All",
)
MAX_SESSION_TTL = 600
DEFAULT_MICROSOFT_LOGIN_URL = "https://login.microsoftonline.com"
DEFAULT_ADMIN_CONSENT_TTL = 604_800  # 7 days: the link is forwarded to an IT administrator
MIN_ADMIN_CONSENT_TTL, MAX_ADMIN_CONSENT_TTL = 600, 2_592_000
DEFAULT_FLOW_TTL = 900
MIN_FLOW_TTL, MAX_FLOW_TTL = 120, 1800
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_SCOPE_RE = re.compile(r"^[\x21-\x7e]{1,512}$")
_HOST_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ConfigError(ValueError):
    """The function's environment is invalid."""


@dataclass(frozen=True)
class AllowedReturnUrl:
    """One allow-list entry: exact scheme, host and port, and a path prefix."""

    scheme: str
    host: str
    port: int
    path_prefix: str


@dataclass(frozen=True)
class Settings:
    nylas_api: Literal["v3", "beta"]
    nylas_region: Literal["us", "eu"]
    nylas_base_url: str
    azure_tenant: str
    allowed_return_urls: tuple[AllowedReturnUrl, ...]
    session_ttl_seconds: int
    public_base_url: str
    sessions_table: str
    grants_table: str
    nylas_secret_arn: str
    azure_secret_arn: str
    api_keys_secret_arn: str
    nylas_scopes: tuple[str, ...]
    beta_auth_expires_in: int
    secrets_max_age: int
    nylas_read_timeout_ms: int = 5000
    webhook_secret_arn: str = ""  # the stack-created secret the setup fills (grant webhooks, v3)
    flow_ttl_seconds: int = DEFAULT_FLOW_TTL
    # Admin consent (docs/admin-consent.md)
    microsoft_login_url: str = DEFAULT_MICROSOFT_LOGIN_URL
    admin_consent_ttl_seconds: int = DEFAULT_ADMIN_CONSENT_TTL
    tenants_table: str = ""  # required only by the admin-consent functions
    microsoft_read_timeout_ms: int = 4000
    listing_cursor_secret_arn: str = ""  # the stack's HMAC key of the GET /v1/grants cursors

    @property
    def beta_login_expires_in(self) -> int:
        """The beta login link's lifetime: never longer than the flow it belongs to (F10)."""
        return min(self.beta_auth_expires_in, self.flow_ttl_seconds)

    @property
    def nylas_read_timeout(self) -> float:
        """Seconds to wait for Nylas's answer per attempt (`NYLAS_READ_TIMEOUT_MS`, default 5000)."""
        return self.nylas_read_timeout_ms / 1000

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/connect/callback"

    @property
    def admin_consent_callback_url(self) -> str:
        """The Azure app's second redirect URI (where Microsoft returns the administrator)."""
        return f"{self.public_base_url}/connect/admin-consent/callback"

    @property
    def cookie_secure(self) -> bool:
        """https → `__Host-` cookie with Secure; http (loopback only) → plain cookie."""
        return self.public_base_url.startswith("https://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return e.get(name, default).strip()

        nylas_api = get("NYLAS_API", "v3") or "v3"
        if nylas_api not in ("v3", "beta"):
            raise ConfigError(f"NYLAS_API must be 'v3' or 'beta', got {nylas_api!r}")
        region = get("NYLAS_REGION", "us") or "us"
        if region not in ("us", "eu"):
            raise ConfigError(f"NYLAS_REGION must be 'us' or 'eu', got {region!r}")
        override = get("NYLAS_BASE_URL")
        base_url = _origin_url("NYLAS_BASE_URL", override) if override else nylas_host(nylas_api, region)
        tenant = get("AZURE_TENANT", "common") or "common"
        if not is_tenant(tenant):
            raise ConfigError("AZURE_TENANT must be 'common', 'organizations' or a tenant GUID")
        public = _origin_url("PUBLIC_BASE_URL", get("PUBLIC_BASE_URL"), allow_path=True)
        scopes_raw = get("NYLAS_SCOPES")
        scopes = tuple(s.strip() for s in scopes_raw.split(",") if s.strip()) if scopes_raw else ()
        for scope in scopes:
            if not _SCOPE_RE.match(scope):
                raise ConfigError(f"NYLAS_SCOPES contains an invalid scope {scope!r}")
        return cls(
            nylas_api=nylas_api,  # type: ignore[arg-type]
            nylas_region=region,  # type: ignore[arg-type]
            nylas_base_url=base_url,
            azure_tenant=tenant,
            allowed_return_urls=parse_allowed_return_urls(get("ALLOWED_RETURN_URLS")),
            session_ttl_seconds=_int(get, "SESSION_TTL_SECONDS", 600, 60, MAX_SESSION_TTL),
            public_base_url=public,
            sessions_table=_table(get, "SESSIONS_TABLE"),
            grants_table=_table(get, "GRANTS_TABLE"),
            nylas_secret_arn=_arn(get, "NYLAS_SECRET_ARN", required=True),
            azure_secret_arn=_arn(get, "AZURE_SECRET_ARN", required=False),
            api_keys_secret_arn=_arn(get, "API_KEYS_SECRET_ARN", required=True),
            nylas_scopes=scopes,
            beta_auth_expires_in=_int(get, "BETA_AUTH_EXPIRES_IN", MAX_FLOW_TTL, 61, 1_209_600),
            secrets_max_age=_int(get, "SECRETS_MAX_AGE", 300, 0, 3600),
            nylas_read_timeout_ms=_int(get, "NYLAS_READ_TIMEOUT_MS", 5000, 100, 25000),
            # The link's lifetime (SESSION_TTL_SECONDS, until start) and the flow's (start → callback)
            # are separate: a late click still leaves the user the whole flow TTL for sign-in and MFA.
            flow_ttl_seconds=_int(get, "FLOW_TTL_SECONDS", DEFAULT_FLOW_TTL, MIN_FLOW_TTL, MAX_FLOW_TTL),
            webhook_secret_arn=_arn(get, "WEBHOOK_SECRET_ARN", required=False),
            microsoft_login_url=_origin_url(
                "MICROSOFT_LOGIN_URL", get("MICROSOFT_LOGIN_URL") or DEFAULT_MICROSOFT_LOGIN_URL
            ),
            admin_consent_ttl_seconds=_int(
                get,
                "ADMIN_CONSENT_TTL_SECONDS",
                DEFAULT_ADMIN_CONSENT_TTL,
                MIN_ADMIN_CONSENT_TTL,
                MAX_ADMIN_CONSENT_TTL,
            ),
            tenants_table=_table(get, "TENANTS_TABLE") if get("TENANTS_TABLE") else "",
            microsoft_read_timeout_ms=_int(get, "MICROSOFT_READ_TIMEOUT_MS", 4000, 100, 25000),
            listing_cursor_secret_arn=_arn(get, "LISTING_CURSOR_SECRET_ARN", required=False),
        )


TENANT_KEYWORDS = ("common", "organizations")


def is_tenant(tenant: str) -> bool:
    """A Microsoft tenant Nylas accepts: `common` (multitenant), `organizations`, or a tenant GUID."""
    return tenant in TENANT_KEYWORDS or bool(_GUID_RE.match(tenant))


def nylas_host(flavour: str, region: str) -> str:
    """`https://api.{region}.nylas.com` (v3) or `https://beta.{region}.nylas.com` (beta)."""
    return f"https://{'api' if flavour == 'v3' else 'beta'}.{region}.nylas.com"


def is_loopback_host(host: str) -> bool:
    return host.lower().strip("[]") in LOOPBACK_HOSTS


def _int(get: Callable[[str], str], name: str, default: int, low: int, high: int) -> int:
    raw = get(name)
    if raw == "":
        return default
    if not re.fullmatch(r"\d{1,9}", raw):
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _table(get: Callable[[str], str], name: str) -> str:
    value = get(name)
    if not _TABLE_RE.match(value):
        raise ConfigError(f"{name} must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
    return value


def _arn(get: Callable[[str], str], name: str, *, required: bool) -> str:
    value = get(name)
    if not value and not required:
        return ""
    if not _ARN_RE.match(value):
        raise ConfigError(f"{name} must be a Secrets Manager secret ARN")
    return value


def _origin_url(name: str, value: str, *, allow_path: bool = False) -> str:
    """A base URL: https, or http only for a loopback host; no userinfo, query or fragment."""
    if not value:
        raise ConfigError(f"{name} is required")
    if any(c.isspace() or ord(c) < 0x20 or c in "\\\x7f" for c in value) or not value.isascii():
        raise ConfigError(f"{name} contains whitespace, control or non-ASCII characters")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not value.lower().startswith(parts.scheme + "://"):
        raise ConfigError(f"{name} must be an absolute http(s) URL")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in value or "#" in value:
        raise ConfigError(f"{name} must not contain userinfo, a query or a fragment")
    try:
        host = parts.hostname or ""
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name} has an invalid port") from exc
    if not host:
        raise ConfigError(f"{name} has no host")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(f"{name} must use https (http is allowed only for 127.0.0.1, localhost, [::1])")
    if parts.path not in ("", "/") and not allow_path:
        raise ConfigError(f"{name} must not have a path")
    if value.endswith("/"):
        raise ConfigError(f"{name} must not end with a slash")
    return value


def parse_allowed_return_urls(raw: str) -> tuple[AllowedReturnUrl, ...]:
    """`ALLOWED_RETURN_URLS`: comma-separated `scheme://host[:port]/path-prefix` entries."""
    entries: list[AllowedReturnUrl] = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        if any(c.isspace() or ord(c) < 0x21 or c in "\\\x7f%" for c in item) or not item.isascii():
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r} has forbidden characters")
        parts = urlsplit(item)
        if parts.scheme not in ("https", "http") or not item.startswith(parts.scheme + "://"):
            raise ConfigError(
                f"ALLOWED_RETURN_URLS entry {item!r} must be an absolute lower-case http(s) URL"
            )
        if "@" in parts.netloc or parts.query or parts.fragment or "?" in item or "#" in item:
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r} must not have userinfo, query or fragment")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r} has an invalid port") from exc
        host = (parts.hostname or "").lower()
        if not host or not (_HOST_RE.match(host) or host == "::1" or _is_ipv4(host)):
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r} has an invalid host")
        if parts.scheme == "http" and not is_loopback_host(host):
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r}: http is allowed only for loopback hosts")
        path = parts.path or "/"
        if "/./" in path + "/" or "/../" in path + "/":
            raise ConfigError(f"ALLOWED_RETURN_URLS entry {item!r} has dot segments")
        entries.append(
            AllowedReturnUrl(
                scheme=parts.scheme,
                host=host,
                port=port if port is not None else (443 if parts.scheme == "https" else 80),
                path_prefix=path,
            )
        )
    return tuple(entries)


def _is_ipv4(host: str) -> bool:
    return bool(
        re.fullmatch(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}", host)
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The validated settings of this container (cached; tests call `get_settings.cache_clear()`)."""
    return Settings.from_env()
