"""Microsoft identity platform rules for admin consent: pure, no I/O.

- `refusal_code`: which Microsoft refusals mean "an administrator must approve this app"
  (docs/admin-consent.md records what is confirmed and what is inferred).
- tenant input (GUID or DNS domain) and tenant id validation;
- the v2 admin-consent URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlencode

ADMIN_CONSENT_REQUIRED = "admin_consent_required"
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
#: The consumer (personal accounts) tenant: it has no administrator.
CONSUMER_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
#: `{tenant}` words that name no single organisation; `organizations` is the one used without a tenant.
ORGANIZATIONS = "organizations"
_TENANT_WORDS = frozenset({"common", "organizations", "consumers"})
PERSONAL_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "msn.com", "passport.com"})

TENANT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_GUID_ANY_CASE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z")
DOMAIN_RE = re.compile(r"^(?=.{4,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")

# AADSTS65001: the user or administrator has not consented; AADSTS90093 / AADSTS90094: the grant
# requires an administrator's permission ("Need admin approval").
_ADMIN_REQUIRED = re.compile(r"\bAADSTS(?:65001|90093|90094)\b")
# AADSTS65004 ("User declined to consent") is also a user's own Cancel: it means admin approval only
# together with a sign that an approval was requested (the admin consent workflow).
_DECLINED = re.compile(r"\bAADSTS65004\b")
_APPROVAL_REQUESTED = re.compile(
    r"admin(?:istrator)?(?:'s)?\s+(?:consent\s+)?(?:request|approval)|approval\s+request|request(?:ed)?\s+approval",
    re.IGNORECASE,
)
MAX_SCANNED = 2048  # characters of each callback value looked at (the query is capped anyway)


def refusal_code(values: Iterable[str | None]) -> str | None:
    """`admin_consent_required` when Microsoft's refusal, wherever it is in the callback's values
    (`error`, `error_description`, `error_code`, `error_subcode`, …), means that the organisation
    requires an administrator's approval; None otherwise (the caller keeps its own mapping)."""
    texts = [v[:MAX_SCANNED] for v in values if isinstance(v, str) and v]
    if any(_ADMIN_REQUIRED.search(t) for t in texts):
        return ADMIN_CONSENT_REQUIRED
    if any(_DECLINED.search(t) for t in texts) and any(_APPROVAL_REQUESTED.search(t) for t in texts):
        return ADMIN_CONSENT_REQUIRED
    return None


def is_tenant_id(value: object) -> bool:
    """A tenant id as Microsoft returns it: a lower-case GUID (upper case is accepted and normalised by
    `normalise_tenant_id`)."""
    return isinstance(value, str) and _GUID_ANY_CASE.match(value) is not None


def normalise_tenant_id(value: str) -> str | None:
    return value.lower() if is_tenant_id(value) else None


def check_tenant_input(value: object) -> tuple[str, str] | None:
    """`("id", guid)` or `("domain", domain)` for a valid `tenant` of `POST /v1/admin-consents`; None
    for anything else (`common`, `organizations`, `consumers`, a personal domain, the consumer tenant,
    a malformed value). Domains are lower-cased; nothing is repaired."""
    if not isinstance(value, str) or not 1 <= len(value) <= 253 or not value.isascii():
        return None
    lowered = value.lower()
    if lowered in _TENANT_WORDS:
        return None
    if _GUID_ANY_CASE.match(value):
        return None if lowered == CONSUMER_TENANT_ID else ("id", lowered)
    if DOMAIN_RE.match(lowered) and lowered not in PERSONAL_DOMAINS:
        return ("domain", lowered)
    return None


def email_domain(email: str) -> str | None:
    domain = email.rpartition("@")[2].lower()
    return domain if DOMAIN_RE.match(domain) else None


def tenant_id_from_issuer(issuer: object, login_url: str) -> str | None:
    """The tenant id in a discovery document's `issuer` (`<login url>/<tenant id>/v2.0`)."""
    if not isinstance(issuer, str):
        return None
    prefix = login_url.rstrip("/") + "/"
    if not issuer.startswith(prefix) or not issuer.endswith("/v2.0"):
        return None
    middle = issuer[len(prefix) : -len("/v2.0")]
    return middle.lower() if is_tenant_id(middle) else None


def admin_consent_url(
    login_url: str, tenant: str | None, *, client_id: str, redirect_uri: str, state: str
) -> str:
    """Microsoft's v2 admin-consent endpoint for the tenant (never `common`: personal accounts cannot
    consent for an organisation), with the app's configured permissions (`.default`)."""
    path_tenant = tenant if tenant is not None and is_tenant_id(tenant) else ORGANIZATIONS
    query = urlencode(
        {
            "client_id": client_id,
            "scope": GRAPH_DEFAULT_SCOPE,
            "redirect_uri": redirect_uri,
            "state": state,
        },
        quote_via=quote,
    )
    return f"{login_url.rstrip('/')}/{path_tenant}/v2.0/adminconsent?{query}"
