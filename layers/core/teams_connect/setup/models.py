"""Value types of the Nylas-side setup: what to set up (`SetupSpec`), with what (`Credentials`), what happened
(`SetupReport`) and the one error type (`SetupError`).

Everything here is validated before any network call, and nothing here ever renders a secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from teams_connect.config import TENANT_KEYWORDS, is_tenant, nylas_host

Flavour = Literal["v3", "beta"]
Region = Literal["us", "eu"]
OnDelete = Literal["Retain", "Remove"]
Outcome = Literal["created", "updated", "unchanged", "deleted", "absent", "kept"]

FLAVOURS: tuple[str, ...] = get_args(Flavour)
REGIONS: tuple[str, ...] = get_args(Region)
ON_DELETE: tuple[str, ...] = get_args(OnDelete)

#: Hosts that may be reached over plain http (the local Nylas emulator); everything else needs https.
_LOCAL_HOSTS = frozenset({"localhost"})

#: Default Microsoft scopes per flavour when the operator gives none.
#: v3: the connector's default scopes (Teams meetings come from calendar events, nylas-api.md §1.11).
#: beta: the scope list of Nylas's "Create a Microsoft Teams integration" page (nylas-api.md §2.4).
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "v3": (
        "offline_access",
        "openid",
        "profile",
        "email",
        "User.Read",
        "Calendars.ReadWrite",
        "OnlineMeetings.ReadWrite",
    ),
    "beta": (
        "User.Read",
        "offline_access",
        "OnlineMeetings.ReadWrite",
        "openid",
        "profile",
        "EAS.AccessAsUser.All",
        "EWS.AccessAsUser.All",
    ),
}

# nylas-java checks 60 < expires_in < 315360000 client-side (nylas-api.md §2.6).
_EXPIRES_MIN, _EXPIRES_MAX = 60, 315_360_000


class SetupError(Exception):
    """Setup could not be done. The message is safe to show anywhere: it never holds a credential.

    `status`, `error_type` and `request_id` are set when the error came from a Nylas answer.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message


def _is_local_host(host: str) -> bool:
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: str, what: str) -> str:
    """An absolute https URL (http only for loopback hosts, i.e. the local emulator), no credentials,
    no fragment. Returns it unchanged."""
    if not isinstance(value, str) or not value:
        raise SetupError(f"{what} is required")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise SetupError(f"{what} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SetupError(f"{what} must be an absolute https URL")
    if parts.scheme == "http" and not _is_local_host(host):
        raise SetupError(f"{what} must use https (plain http only for a loopback host)")
    if parts.username is not None or parts.password is not None:
        raise SetupError(f"{what} must not contain user information")
    if parts.fragment:
        raise SetupError(f"{what} must not contain a fragment")
    return value


def check_tenant(tenant: str) -> str:
    """`common`, `organizations` or a tenant GUID (returned lower-cased); anything else is refused."""
    if isinstance(tenant, str) and is_tenant(tenant):
        return tenant if tenant in TENANT_KEYWORDS else tenant.lower()
    shown = repr(tenant)[:80]
    raise SetupError(
        f"tenant {shown} is not accepted: use a tenant GUID (single tenant), "
        "'common' (multitenant) or 'organizations' (work and school accounts)"
    )


def default_base_url(flavour: str, region: str) -> str:
    """`https://api.{region}.nylas.com` (v3) or `https://beta.{region}.nylas.com` (beta)."""
    if flavour not in FLAVOURS:
        raise SetupError(f"flavour must be one of {', '.join(FLAVOURS)}")
    if region not in REGIONS:
        raise SetupError(f"region must be one of {', '.join(REGIONS)}")
    return nylas_host(flavour, region)


def resolve_base_url(flavour: str, region: str, override: str | None = None) -> str:
    """The override when given (no trailing slash), else the region's Nylas host for the flavour."""
    default = default_base_url(flavour, region)
    if override:
        return check_url(override.rstrip("/"), "Nylas base URL")
    return default


def physical_resource_id(flavour: str, region: str, base_url: str) -> str:
    """The custom resource's physical id: one per Nylas target (flavour + host).

    `nylas-<flavour>-microsoft-<region>` for the region's own Nylas host; with a base-URL override it
    names the override (`nylas-<flavour>-microsoft-custom-<hash>`), so changing only the region while an
    override stays in place is an ordinary update, not a replacement whose Delete would undo the new
    registration on the same host.
    """
    if base_url.rstrip("/") == default_base_url(flavour, region):
        return f"nylas-{flavour}-microsoft-{region}"
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:12]
    return f"nylas-{flavour}-microsoft-custom-{digest}"


@dataclass(frozen=True)
class SetupSpec:
    """What to set up on the Nylas side. Validated on construction (raises `SetupError`).

    `scopes` empty means "do not manage scopes" (none sent, none compared); callers normally pass
    `DEFAULT_SCOPES[flavour]` or an operator's list. The tenant GUID is stored lower-cased.
    """

    flavour: Flavour
    base_url: str
    tenant: str
    callback_url: str
    scopes: tuple[str, ...]
    integration_name: str = "teams-connect"
    expires_in: int = 1_209_600

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise SetupError(f"flavour must be one of {', '.join(FLAVOURS)}")
        object.__setattr__(self, "tenant", check_tenant(self.tenant))
        object.__setattr__(self, "base_url", check_url(self.base_url, "Nylas base URL").rstrip("/"))
        check_url(self.callback_url, "callback URL")
        if isinstance(self.scopes, str) or not all(isinstance(s, str) and s.strip() for s in self.scopes):
            raise SetupError("scopes must be a tuple of non-empty strings")
        object.__setattr__(self, "scopes", tuple(s.strip() for s in self.scopes))
        if not isinstance(self.integration_name, str) or not self.integration_name.strip():
            raise SetupError("integration name must not be empty")
        if (
            isinstance(self.expires_in, bool)
            or not isinstance(self.expires_in, int)
            or not _EXPIRES_MIN < self.expires_in < _EXPIRES_MAX
        ):
            raise SetupError(f"expires_in must be an integer between {_EXPIRES_MIN} and {_EXPIRES_MAX}")


def _mask(value: str) -> str:
    return "'***'" if value else "''"


@dataclass(frozen=True)
class Credentials:
    """Already-loaded credentials. `repr`/`str` mask every secret (the client ids are shown).

    `nylas_api_key` is needed for v3, `nylas_client_secret` for beta; the Azure pair for `ensure` only
    (teardown does not need it). Missing values are empty strings.
    """

    nylas_client_id: str
    nylas_api_key: str = field(default="", repr=False)
    nylas_client_secret: str = field(default="", repr=False)
    azure_client_id: str = ""
    azure_client_secret: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return (
            f"Credentials(nylas_client_id={self.nylas_client_id!r}, "
            f"nylas_api_key={_mask(self.nylas_api_key)}, "
            f"nylas_client_secret={_mask(self.nylas_client_secret)}, "
            f"azure_client_id={self.azure_client_id!r}, "
            f"azure_client_secret={_mask(self.azure_client_secret)})"
        )

    __str__ = __repr__

    def secret_values(self) -> tuple[str, ...]:
        """The values that must never appear in output (for redaction)."""
        return tuple(v for v in (self.nylas_api_key, self.nylas_client_secret, self.azure_client_secret) if v)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret value replaced by `***` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Action:
    """One thing setup did, or (dry run) would do, to one Nylas object."""

    kind: str  # "connector", "integration", "callback URI", "redirect URI"
    name: str  # "microsoft" or the URI
    outcome: Outcome
    detail: str = ""  # e.g. "changed: tenant, scope" (field names only, never values of secrets)

    def line(self, dry_run: bool) -> str:
        verb = _verb(self.kind, self.outcome, dry_run)
        text = f"{self.kind} {self.name}: {verb}"
        if dry_run and self.outcome in _CHANGES:
            text = f"(dry run) would {verb} {self.kind} {self.name}"
        return f"{text} ({self.detail})" if self.detail else text


_CHANGES = frozenset({"created", "updated", "deleted"})


def _verb(kind: str, outcome: Outcome, dry_run: bool) -> str:
    uri = kind.endswith("URI")
    past = {
        "created": "registered" if uri else "created",
        "updated": "updated",
        "unchanged": "already registered" if uri else "unchanged",
        "deleted": "removed" if uri else "deleted",
        "absent": "not registered" if uri else "not present",
        "kept": "kept",
    }
    present = {
        "created": "register" if uri else "create",
        "updated": "update",
        "deleted": "remove" if uri else "delete",
    }
    if dry_run and outcome in present:
        return present[outcome]
    return past[outcome]


@dataclass(frozen=True)
class SetupReport:
    """What one run did (or would do, `dry_run`): one `Action` per Nylas object, no secrets."""

    flavour: str
    base_url: str
    dry_run: bool
    actions: tuple[Action, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the run wrote (or, dry run, would write) anything."""
        return any(a.outcome in _CHANGES for a in self.actions)

    def lines(self) -> list[str]:
        return [a.line(self.dry_run) for a in self.actions]

    def summary(self) -> dict[str, str]:
        """`{"<kind> <name>": outcome}`, e.g. for CloudFormation's response Data."""
        return {f"{a.kind} {a.name}": a.outcome for a in self.actions}
