"""The beta "Integrations" surface (v2-era private preview): integrations, hosted auth, grants.

Every route here takes HTTP Basic ``base64(client_id:client_secret)``; failures answer 401 with the v2
error shape ``{"message", "type"}`` and ``WWW-Authenticate: Basic``. ``GET/POST /connect/login`` is the
browser-facing consent page (``consent.py``) and takes no credentials.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .common import MICROSOFT, beta_fail, config_of, same_secret, store_of
from .errors import BetaError
from .state import Grant, Integration, PendingLogin, new_secret
from .validation import Fields, is_email, is_http_url, is_tenant, json_object, query_int

INTEGRATION_EXPIRES_DEFAULT = 1209600
INTEGRATION_EXPIRES_MIN = 60  # exclusive
INTEGRATION_EXPIRES_MAX = 315360000  # exclusive
LOGIN_EXPIRES_DEFAULT = 1800
TEAMS_SCOPES = [
    "User.Read",
    "offline_access",
    "OnlineMeetings.ReadWrite",
    "openid",
    "profile",
    "EAS.AccessAsUser.All",
    "EWS.AccessAsUser.All",
]


def require_basic(request: Request) -> None:
    config = config_of(request)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    ok = False
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        client_id, sep, secret = decoded.partition(":")
        ok = bool(sep) and same_secret(client_id, config.client_id) & same_secret(
            secret, config.client_secret
        )
    if not ok:
        raise BetaError(
            401,
            "unauthorized",
            "Unauthorized: send HTTP Basic base64(client_id:client_secret)",
            headers={"WWW-Authenticate": 'Basic realm="Nylas emulator (beta)"'},
        )


def ok(data: Any = None, status: int = 200, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"success": True}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return JSONResponse(body, status_code=status)


async def _body(request: Request) -> Fields:
    return Fields(await json_object(request, config_of(request).max_body_bytes, beta_fail), beta_fail)


def _page(request: Request) -> tuple[int, int]:
    limit = query_int(request, "limit", beta_fail, default=10, lo=1, hi=200)
    offset = query_int(request, "offset", beta_fail, default=0, lo=0, hi=10**9)
    assert limit is not None
    assert offset is not None
    return limit, offset


# -- integrations ----------------------------------------------------------------------------------------
def _settings(fields: Fields | None, *, partial: bool) -> dict[str, str]:
    if fields is None:
        if partial:
            return {}
        raise beta_fail(400, "settings {client_id, client_secret, tenant} are required")
    out: dict[str, str] = {}
    for key in ("client_id", "client_secret", "tenant"):
        value = fields.string(key, required=not partial, max_len=512)
        if value is not None:
            out[key] = value
    if "tenant" in out and not is_tenant(out["tenant"]):
        raise beta_fail(400, "settings.tenant must be a tenant GUID, 'common' or 'organizations'")
    return out


def _redirect_uris(fields: Fields, *, required: bool) -> list[str] | None:
    uris = fields.str_list("redirect_uris", required=required, max_items=50, max_len=2048, non_empty=True)
    if uris is not None and not all(is_http_url(u) for u in uris):
        raise beta_fail(400, "redirect_uris must be absolute http(s) URLs")
    return uris


def _integration_expires(fields: Fields) -> int | None:
    value = fields.integer("expires_in", lo=INTEGRATION_EXPIRES_MIN + 1, hi=INTEGRATION_EXPIRES_MAX - 1)
    return value


def _integration_or_404(request: Request) -> Integration:
    provider = request.path_params["provider"]
    integration = store_of(request).integrations.get(provider)
    if integration is None:
        raise BetaError(404, "not_found_error", f"No integration for provider '{provider}'")
    return integration


async def create_integration(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    fields = await _body(request)
    name = fields.req_string("name", max_len=256)
    provider = fields.req_string("provider", max_len=64)
    if provider != MICROSOFT:
        raise beta_fail(400, "provider must be 'microsoft'")
    settings = _settings(fields.sub("settings", required=True), partial=False)
    redirect_uris = _redirect_uris(fields, required=True)
    assert redirect_uris is not None
    expires_in = _integration_expires(fields) or INTEGRATION_EXPIRES_DEFAULT
    scope = fields.str_list("scope")
    with store.lock:
        if provider in store.integrations:
            raise BetaError(
                409, "invalid_request_error", f"An integration for provider '{provider}' already exists"
            )
        now = store.now_int()
        integration = Integration(
            provider=provider,
            name=name,
            settings=settings,
            redirect_uris=redirect_uris,
            expires_in=expires_in,
            scope=scope if scope is not None else list(TEAMS_SCOPES),
            created_at=now,
            updated_at=now,
        )
        store.integrations[provider] = integration
        return ok(integration.to_beta())


async def list_integrations(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    limit, offset = _page(request)
    with store.lock:
        items = sorted(store.integrations.values(), key=lambda i: (i.created_at, i.provider))
        data = [i.to_beta() for i in items[offset : offset + limit]]
    return ok(data, limit=limit, offset=offset)


async def get_integration(request: Request) -> Response:
    require_basic(request)
    with store_of(request).lock:
        return ok(_integration_or_404(request).to_beta())


async def patch_integration(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    fields = await _body(request)
    name = fields.string("name", max_len=256)
    settings = _settings(fields.sub("settings"), partial=True)
    redirect_uris = _redirect_uris(fields, required=False)
    expires_in = _integration_expires(fields)
    scope = fields.str_list("scope")
    with store.lock:
        integration = _integration_or_404(request)
        if name is not None:
            integration.name = name
        integration.settings.update(settings)
        if redirect_uris is not None:
            integration.redirect_uris = redirect_uris
        if expires_in is not None:
            integration.expires_in = expires_in
        if scope is not None:
            integration.scope = scope
        integration.updated_at = store.now_int()
        return ok(integration.to_beta())


async def delete_integration(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    with store.lock:
        integration = _integration_or_404(request)
        del store.integrations[integration.provider]
    return ok()


# -- hosted auth -----------------------------------------------------------------------------------------
async def connect_auth(request: Request) -> Response:
    require_basic(request)
    config, store = config_of(request), store_of(request)
    fields = await _body(request)
    provider = fields.req_string("provider", max_len=64)
    if provider != MICROSOFT:
        raise beta_fail(400, "provider must be 'microsoft'")
    redirect_uri = fields.req_string("redirect_uri", max_len=2048)
    expires_in = fields.integer("expires_in", lo=60, hi=config.beta_login_ttl_max)
    account_id = fields.string("account_id", max_len=256)
    login_hint = fields.string("login_hint", max_len=320)
    if login_hint is not None and not is_email(login_hint):
        raise beta_fail(400, "login_hint must be an email address")
    state = fields.string("state", max_len=256)
    scope = fields.str_list("scope")
    grant_id = fields.string("grant_id", max_len=256)
    fields.obj("settings")
    fields.obj("metadata")
    with store.lock:
        integration = store.integrations.get(provider)
        if integration is None:
            raise beta_fail(
                400, f"No integration for provider '{provider}': POST /connect/integrations first"
            )
        if redirect_uri not in integration.redirect_uris:
            raise beta_fail(400, "redirect_uri is not one of the integration's redirect_uris")
        if grant_id is not None and grant_id not in store.grants:
            raise beta_fail(400, f"grant_id '{grant_id}' does not exist")
        now = store.now()
        lifetime = expires_in or min(LOGIN_EXPIRES_DEFAULT, config.beta_login_ttl_max)
        login = PendingLogin(
            id=new_secret(18),
            flavour="beta",
            provider=provider,
            redirect_uri=redirect_uri,
            state=state,
            scope=scope if scope is not None else list(integration.scope),
            login_hint=login_hint,
            created_at=now,
            expires_at=now + lifetime,
            account_id=account_id,
        )
        store.logins[login.id] = login
    echo = {key: fields.data[key] for key in fields.data if key in _ECHOED}
    echo["expires_in"] = lifetime
    return ok(
        {
            "url": f"{config.base_url}/connect/login?id={login.id}",
            "id": login.id,
            "expires_at": int(login.expires_at),
            "request": echo,
        }
    )


_ECHOED = ("provider", "redirect_uri", "expires_in", "account_id", "login_hint", "state", "scope", "grant_id")


# -- grants ----------------------------------------------------------------------------------------------
def _grant_or_404(request: Request) -> Grant:
    grant_id = request.path_params["grant_id"]
    grant = store_of(request).grants.get(grant_id)
    if grant is None:
        raise BetaError(404, "grant.not_found", f"Grant '{grant_id}' not found")
    return grant


async def list_grants(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    limit, offset = _page(request)
    with store.lock:
        grants = sorted(store.grants.values(), key=lambda g: (g.created_at, g.id))
        data = [g.to_beta() for g in grants[offset : offset + limit]]
    return ok(data, limit=limit, offset=offset)


async def get_grant(request: Request) -> Response:
    require_basic(request)
    with store_of(request).lock:
        return ok(_grant_or_404(request).to_beta())


async def delete_grant(request: Request) -> Response:
    require_basic(request)
    store = store_of(request)
    with store.lock:
        grant = _grant_or_404(request)
        store.delete_grant(grant.id)
    return ok()
