"""Microsoft Entra ID, as far as teams-connect meets it: tenants with a user-consent policy, the
"Need admin approval" page, the v2 admin-consent endpoint, the client-credentials token endpoint and
each tenant's OpenID discovery document. Served from the emulator's base URL, which is what
`MicrosoftLoginUrl` points at locally (https://login.microsoftonline.com in production).

- A mailbox's tenant is its email domain. Domains nobody configured are tenants whose users may
  consent (`allowed`); `POST /_emulator/tenants` sets a domain's policy (`allowed` | `admin_only`).
  Tenant ids are stable per domain (a UUID derived from it); personal domains (outlook.com, …) belong
  to Microsoft's consumer tenant, which has no administrator.
- A user of an `admin_only` tenant whose administrator has not consented to the Azure app gets the
  "Need admin approval" page after *Allow* (form: `decision` = `request_approval` | `back`). Either
  returns the refusal through the Nylas callback, as Nylas would (both flavours): `error=access_denied`
  with Microsoft's error in `error_description` and `error_subcode=cancel` passed through —
  `AADSTS65004` with the approval request, `AADSTS90094` without (see docs/admin-consent.md for what
  of this is confirmed).
- `GET|POST /{tenant}/v2.0/adminconsent` (`tenant` = tenant id, verified domain or `organizations`;
  `common` and `consumers` are refused as Microsoft does): a form with the administrator's `email` and
  `decision` = `accept` | `cancel`.
  Accept → 302 `redirect_uri?admin_consent=True&tenant=<id>&scope=…&state=…`;
  cancel → 302 `redirect_uri?error=access_denied&error_subcode=cancel&error_description=AADSTS65004…&state=…`.
  After an accept, that tenant's users connect normally.
- `POST /{tenant}/oauth2/v2.0/token` (`grant_type=client_credentials`): 200 with an app token when the
  Azure app is present in the tenant, else 400 `unauthorized_client` (`AADSTS700016`).
- `GET /{tenant}/v2.0/.well-known/openid-configuration`: by tenant id or domain, so a domain resolves to
  its tenant id; an unknown tenant id → 400 (`AADSTS90002`).
"""

from __future__ import annotations

import html
import re
import secrets
import time
import uuid
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .common import PERSONAL_MICROSOFT_DOMAINS, config_of, page_fail, redirect, store_of, v3_fail, with_query
from .errors import PageError, html_page, request_id_of
from .faults import CONTROL_PREFIX
from .state import Flavour, PendingLogin, Store, Tenant
from .validation import GUID_RE, Fields, form_body, is_email, is_http_url, json_object, query_one

CONSUMER_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
_TENANT_NAMESPACE = uuid.UUID("6f1c2a1e-58c4-4c1e-9a52-7d2f0b6c1e11")
DOMAIN_RE = re.compile(r"^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
POLICIES = ("allowed", "admin_only")
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"

NEED_APPROVAL_DESCRIPTION = (
    "AADSTS90094: The grant requires admin permission. The application needs permission to access "
    "resources in the organization that only an admin can grant."
)
APPROVAL_REQUESTED_DESCRIPTION = (
    "AADSTS65004: User declined to consent to access the app. An admin consent request was sent "
    "to the organization's administrators for approval."
)
ADMIN_CANCEL_DESCRIPTION = "AADSTS65004: User declined to consent to access the app."
APPROVAL_PATH = "/emulator/approval"


# --- tenants ------------------------------------------------------------------------------------------
def tenant_id_for(domain: str) -> str:
    if domain in PERSONAL_MICROSOFT_DOMAINS:
        return CONSUMER_TENANT_ID
    return str(uuid.uuid5(_TENANT_NAMESPACE, domain))


def tenant_for_domain(store: Store, domain: str) -> Tenant:
    """The domain's tenant, created on first sight with the default policy (`allowed`)."""
    domain = domain.lower()
    with store.lock:
        tenant = store.tenants.get(domain)
        if tenant is None:
            tenant = Tenant(tenant_id=tenant_id_for(domain), domain=domain, user_consent="allowed")
            store.tenants[domain] = tenant
        return tenant


def tenant_by_ref(store: Store, ref: str) -> Tenant | None:
    """A tenant by id (only one the emulator has seen) or by domain (any valid domain)."""
    ref = ref.lower()
    with store.lock:
        if GUID_RE.fullmatch(ref):
            return next((t for t in store.tenants.values() if t.tenant_id == ref), None)
        if DOMAIN_RE.fullmatch(ref) and ref not in PERSONAL_MICROSOFT_DOMAINS:
            return tenant_for_domain(store, ref)
        return None


def _domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def azure_app_of(store: Store, flavour: Flavour) -> str | None:
    """The Azure app client id behind a Nylas login: the v3 connector's or the beta integration's."""
    holder = store.connectors.get("microsoft") if flavour == "v3" else store.integrations.get("microsoft")
    client_id = holder.settings.get("client_id") if holder is not None else None
    return str(client_id) if client_id else None


def _azure_apps(store: Store) -> dict[str, str]:
    """Client id → client secret of every Azure app the emulator knows (connector and integration)."""
    apps: dict[str, str] = {}
    for holder in (store.connectors.get("microsoft"), store.integrations.get("microsoft")):
        if holder is not None and holder.settings.get("client_id"):
            apps[str(holder.settings["client_id"])] = str(holder.settings.get("client_secret", ""))
    return apps


def needs_admin_approval(store: Store, email: str, flavour: Flavour) -> bool:
    """A user of an `admin_only` tenant, for an Azure app no administrator consented to."""
    domain = _domain_of(email)
    if domain in PERSONAL_MICROSOFT_DOMAINS:
        return False
    tenant = tenant_for_domain(store, domain)
    app = azure_app_of(store, flavour)
    return tenant.user_consent == "admin_only" and (app is None or app not in tenant.admin_consented_apps)


def record_user_consent(store: Store, email: str, flavour: Flavour) -> None:
    """A user consented for themselves: the app's service principal now exists in their tenant."""
    domain = _domain_of(email)
    app = azure_app_of(store, flavour)
    if domain not in PERSONAL_MICROSOFT_DOMAINS and app is not None:
        with store.lock:
            tenant_for_domain(store, domain).apps.add(app)


# --- "Need admin approval" ------------------------------------------------------------------------------
def render_approval(login: PendingLogin, email: str) -> Response:
    esc = html.escape
    body = (
        '<p role="alert">This app needs permission to access resources in your organization that only an '
        "admin can grant. Please ask an admin to grant permission to this app before you can use it.</p>"
        f"<dl><dt>Signed in as</dt><dd>{esc(email)}</dd>"
        f"<dt>Organization</dt><dd>{esc(_domain_of(email))}</dd></dl>"
        f'<form method="post" action="{APPROVAL_PATH}">'
        f'<input type="hidden" name="id" value="{esc(login.id)}">'
        '<p><label for="justification">Justification (optional)</label><br>'
        '<input type="text" id="justification" name="justification" maxlength="200"></p>'
        '<p><button type="submit" name="decision" value="request_approval">Request approval</button>'
        '<button type="submit" name="decision" value="back">Back to app</button></p>'
        "</form>"
    )
    return html_page("Need admin approval", body)


def _refusal(login: PendingLogin, description: str, *, subcode: bool) -> Response:
    params = [("error", "access_denied")]
    if subcode:
        params.append(("error_subcode", "cancel"))
    params.append(("error_description", description))
    if login.flavour == "beta":
        params.insert(0, ("success", "false"))
    if login.state is not None:
        params.append(("state", login.state))
    return redirect(with_query(login.redirect_uri, params))


async def approval_submit(request: Request) -> Response:
    store = store_of(request)
    form = await form_body(request, config_of(request).max_body_bytes, page_fail)
    decision = form.get("decision", "")
    with store.lock:
        login = store.logins.get(form.get("id", ""))
        if (
            login is None
            or login.used
            or login.approval_email is None
            or store.usable_login(login.id, login.flavour) is None
        ):
            raise PageError(400, "This sign-in is unknown, expired or already finished.")
        if decision not in ("request_approval", "back"):
            raise PageError(400, "decision must be 'request_approval' or 'back'")
        login.used = True
        if decision == "request_approval":
            return _refusal(login, APPROVAL_REQUESTED_DESCRIPTION, subcode=True)
        return _refusal(login, NEED_APPROVAL_DESCRIPTION, subcode=False)


# --- admin consent ----------------------------------------------------------------------------------
def _admin_params(source: dict[str, str]) -> dict[str, str]:
    return {k: source.get(k, "") for k in ("client_id", "scope", "redirect_uri", "state")}


def _check_admin_request(request: Request, params: dict[str, str]) -> Tenant | None:
    """Microsoft's checks before it shows anything: errors it cannot send to an unverified redirect URI
    are pages. Returns the path's tenant, or None for `organizations`."""
    store = store_of(request)
    ref = request.path_params["tenant"].lower()
    if ref in ("common", "consumers"):
        raise PageError(
            400,
            "AADSTS90009/AADSTS50194: admin consent needs a tenant: use the tenant id, a verified domain "
            "or 'organizations', never 'common' or 'consumers'.",
        )
    apps = _azure_apps(store)
    if params["client_id"] not in apps:
        raise PageError(
            400,
            f"AADSTS700016: Application with identifier '{params['client_id'][:64]}' was not found.",
        )
    if not is_http_url(params["redirect_uri"]):
        raise PageError(400, "AADSTS50011: the redirect URI is missing or not a valid absolute URL.")
    if len(params["state"]) > 2048:
        raise PageError(400, "state is too long")
    scopes = params["scope"].split()
    if not scopes or len(params["scope"]) > 2048:
        raise PageError(400, "AADSTS900144: The request body must contain the parameter 'scope'.")
    if ref == "organizations":
        return None
    tenant = tenant_by_ref(store, ref)
    if tenant is None:
        raise PageError(400, f"AADSTS90002: Tenant '{ref[:64]}' not found.")
    return tenant


def _admin_form(
    request: Request, params: dict[str, str], *, error: str | None = None, status: int = 200
) -> Response:
    esc = html.escape
    tenant = request.path_params["tenant"]
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{esc(value)}">' for name, value in params.items()
    )
    problem = f'<p role="alert"><strong>{esc(error)}</strong></p>' if error else ""
    body = (
        f"{problem}<p>An application asks an <strong>administrator</strong> to grant it permissions for "
        "everyone in the organization.</p>"
        f"<dl><dt>Application (client) id</dt><dd><code>{esc(params['client_id'])}</code></dd>"
        f"<dt>Permissions</dt><dd><code>{esc(params['scope'])}</code></dd>"
        f"<dt>Tenant</dt><dd><code>{esc(tenant)}</code></dd></dl>"
        f'<form method="post" action="/{quote(tenant, safe="")}/v2.0/adminconsent">{hidden}'
        '<p><label for="email">Administrator account email</label><br>'
        '<input type="email" id="email" name="email" maxlength="320" required autocomplete="email"></p>'
        '<p><button type="submit" name="decision" value="accept">Accept</button>'
        '<button type="submit" name="decision" value="cancel" formnovalidate>Cancel</button></p>'
        "</form>"
    )
    return html_page("Permissions requested: accept for your organization", body, status=status)


async def admin_consent_page(request: Request) -> Response:
    params = _admin_params(
        {k: query_one(request, k, page_fail) or "" for k in ("client_id", "scope", "redirect_uri", "state")}
    )
    _check_admin_request(request, params)
    return _admin_form(request, params)


async def admin_consent_submit(request: Request) -> Response:
    store = store_of(request)
    form = await form_body(request, config_of(request).max_body_bytes, page_fail)
    params = _admin_params(form)
    tenant = _check_admin_request(request, params)
    decision = form.get("decision", "")
    if decision not in ("accept", "cancel"):
        raise PageError(400, "decision must be 'accept' or 'cancel'")
    state = [("state", params["state"])] if params["state"] else []
    if decision == "cancel":
        return redirect(
            with_query(
                params["redirect_uri"],
                [
                    ("error", "access_denied"),
                    ("error_subcode", "cancel"),
                    ("error_description", ADMIN_CANCEL_DESCRIPTION),
                    *state,
                ],
            )
        )
    email = form.get("email", "").strip()
    if not is_email(email):
        return _admin_form(request, params, error="Enter a valid email address.", status=400)
    domain = _domain_of(email)
    if domain in PERSONAL_MICROSOFT_DOMAINS:
        return _admin_form(
            request,
            params,
            error="A personal Microsoft account cannot consent for an organization.",
            status=400,
        )
    with store.lock:
        own = tenant_for_domain(store, domain)
        if tenant is not None and own.tenant_id != tenant.tenant_id:
            return _admin_form(
                request,
                params,
                error=f"AADSTS50020: {email} is not an account of tenant {tenant.domain}.",
                status=400,
            )
        own.admin_consented_apps.add(params["client_id"])
        own.apps.add(params["client_id"])
        own.consented_at = store.now_int()
    return redirect(
        with_query(
            params["redirect_uri"],
            [("admin_consent", "True"), ("tenant", own.tenant_id), ("scope", params["scope"]), *state],
        )
    )


# --- token endpoint and discovery -------------------------------------------------------------------
def _aad_error(request: Request, status: int, error: str, code: int, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": request_id_of(request),
            "correlation_id": request_id_of(request),
        },
        status_code=status,
    )


async def token(request: Request) -> Response:
    store = store_of(request)
    try:
        form = await form_body(request, config_of(request).max_body_bytes, page_fail)
    except PageError as exc:
        return _aad_error(request, exc.status, "invalid_request", 900144, exc.message)
    if form.get("grant_type") != "client_credentials":
        return _aad_error(
            request, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    apps = _azure_apps(store)
    ref = request.path_params["tenant"].lower()
    if ref in ("common", "organizations", "consumers"):
        return _aad_error(
            request,
            400,
            "invalid_request",
            1002012,
            "The client credentials flow needs a tenant id or domain.",
        )
    if client_id not in apps:
        return _aad_error(
            request,
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id[:64]}' was not found.",
        )
    if not secrets.compare_digest(client_secret.encode(), apps[client_id].encode()):
        return _aad_error(request, 401, "invalid_client", 7000215, "Invalid client secret provided.")
    scope = form.get("scope", "")
    if not scope.endswith("/.default"):
        return _aad_error(
            request, 400, "invalid_scope", 1002012, "The provided value for scope is not valid."
        )
    tenant = tenant_by_ref(store, ref)
    if tenant is None:
        return _aad_error(request, 400, "invalid_request", 90002, f"Tenant '{ref[:64]}' not found.")
    if client_id not in tenant.apps:
        return _aad_error(
            request,
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant.domain}'. "
            "This can happen if the application has not been installed by the administrator of the tenant "
            "or consented to by any user in the tenant.",
        )
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": secrets.token_urlsafe(32),
        },
        headers={"Cache-Control": "no-store"},
    )


async def discovery(request: Request) -> Response:
    store = store_of(request)
    ref = request.path_params["tenant"].lower()
    tenant = tenant_by_ref(store, ref)
    if tenant is None:
        return _aad_error(request, 400, "invalid_tenant", 90002, f"Tenant '{ref[:64]}' not found.")
    base = f"{config_of(request).base_url}/{tenant.tenant_id}"
    return JSONResponse(
        {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{config_of(request).base_url}/{tenant.tenant_id}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "tenant_region_scope": "EU",
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        }
    )


# --- control ----------------------------------------------------------------------------------------
async def set_tenant(request: Request) -> Response:
    store = store_of(request)
    fields = Fields(await json_object(request, config_of(request).max_body_bytes, v3_fail), v3_fail)
    domain = fields.req_string("domain", max_len=253).lower()
    policy = fields.req_string("user_consent", max_len=16)
    if not DOMAIN_RE.fullmatch(domain) or domain in PERSONAL_MICROSOFT_DOMAINS:
        raise v3_fail(400, "domain must be an organization's DNS domain (not a personal Microsoft domain)")
    if policy not in POLICIES:
        raise v3_fail(400, "user_consent must be 'allowed' or 'admin_only'")
    user_consent: Literal["allowed", "admin_only"] = "admin_only" if policy == "admin_only" else "allowed"
    with store.lock:
        tenant = tenant_for_domain(store, domain)
        tenant.user_consent = user_consent
        body: dict[str, Any] = tenant.to_json()
    return JSONResponse({**body, "request_id": request_id_of(request)})


async def list_tenants(request: Request) -> Response:
    store = store_of(request)
    with store.lock:
        tenants = [t.to_json() for t in store.tenants.values()]
    return JSONResponse({"tenants": tenants, "request_id": request_id_of(request)})


def routes() -> list[Route]:
    return [
        Route(APPROVAL_PATH, approval_submit, methods=["POST"]),
        Route("/{tenant}/v2.0/adminconsent", admin_consent_page, methods=["GET"]),
        Route("/{tenant}/v2.0/adminconsent", admin_consent_submit, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}tenants", set_tenant, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}tenants", list_tenants, methods=["GET"]),
    ]
