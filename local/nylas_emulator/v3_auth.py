"""v3 hosted OAuth: ``GET /v3/connect/auth``, ``POST /v3/connect/token``, ``/revoke`` and ``/tokeninfo``.

``/auth`` plays Nylas + Microsoft: instead of a 302 to Microsoft it answers a 302 to the emulator's own
consent page (``/emulator/consent?id=<login id>``, see ``consent.py``), which then redirects to the
project's ``redirect_uri`` with ``code`` and ``state``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import errors as e
from .common import (
    MICROSOFT,
    config_of,
    redirect,
    require_api_key,
    same_secret,
    store_of,
    v3_fail,
    v3_json,
)
from .errors import NylasError, OAuthError
from .state import AuthCode, Grant, PendingLogin, new_secret
from .validation import Fields, is_email, json_or_form, query_one

AUTH_PROVIDERS = ("google", "microsoft", "imap", "icloud", "yahoo", "ews", "zoom")
PROMPTS = ("select_provider", "detect", "select_provider,detect", "detect,select_provider")
ACCESS_TOKEN_TTL = 3600
SCOPE_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,256}$")


# -- PKCE ------------------------------------------------------------------------------------------------
def nylas_s256(verifier: str) -> str:
    """Nylas's S256: base64 of the *hex* SHA-256 digest, ``=`` padding removed (not RFC 7636)."""
    digest_hex = hashlib.sha256(verifier.encode()).hexdigest()
    return base64.b64encode(digest_hex.encode()).decode().rstrip("=")


def verifier_matches(verifier: str, challenge: str, method: str) -> bool:
    expected = nylas_s256(verifier) if method == "S256" else verifier
    return hmac.compare_digest(expected.encode(), challenge.encode())


# -- id_token (HS256, signed with the API key: JWT-shaped and checkable by /tokeninfo) -----------------
def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_id_token(claims: dict[str, Any], key: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def read_id_token(token: str, key: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        return None
    header, payload, signature = parts
    expected = _b64url(hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


# -- GET /v3/connect/auth --------------------------------------------------------------------------------
def _q(request: Request, name: str) -> str | None:
    return query_one(request, name, v3_fail)


def _bad(message: str, type_: str = "invalid_request_error") -> NylasError:
    return NylasError(400, type_, message)


async def connect_auth(request: Request) -> Response:
    config, store = config_of(request), store_of(request)
    client_id = _q(request, "client_id")
    if not client_id:
        raise _bad("Missing required parameter: client_id")
    if not same_secret(client_id, config.client_id):
        raise _bad("Unknown client_id: no Nylas application with this id")
    redirect_uri = _q(request, "redirect_uri")
    if not redirect_uri:
        raise _bad("Missing required parameter: redirect_uri")
    response_type = _q(request, "response_type")
    if response_type not in ("code", "adminconsent"):
        raise _bad("response_type must be 'code' (or 'adminconsent')")
    if response_type == "adminconsent":
        raise _bad("response_type=adminconsent is not supported by the Nylas emulator")
    provider_param = _q(request, "provider")
    providers = [p.strip() for p in (provider_param or MICROSOFT).split(",")]
    if any(p not in AUTH_PROVIDERS for p in providers):
        raise _bad(f"provider must be one of {', '.join(AUTH_PROVIDERS)} (comma-separated)")
    if MICROSOFT not in providers:
        raise _bad("The Nylas emulator authenticates only provider=microsoft", "grant.provider_required")
    state = _q(request, "state")
    if state is not None and len(state) > 256:
        raise _bad("state must be at most 256 characters")
    login_hint = _q(request, "login_hint") or None
    if login_hint is not None and not is_email(login_hint):
        raise _bad("login_hint must be an email address")
    access_type = _q(request, "access_type") or "online"
    if access_type not in ("online", "offline"):
        raise _bad("access_type must be 'online' or 'offline'")
    prompt = _q(request, "prompt")
    if prompt is not None and prompt not in PROMPTS:
        raise _bad(f"prompt must be one of {', '.join(PROMPTS)}")
    challenge = _q(request, "code_challenge")
    method_param = _q(request, "code_challenge_method")
    method = (
        "plain" if method_param in (None, "plain") else "S256" if method_param in ("S256", "s256") else None
    )
    if method is None:
        raise _bad("code_challenge_method must be 'plain' or 'S256'")
    if challenge is not None and not 1 <= len(challenge) <= 256:
        raise _bad("code_challenge must be 1 to 256 characters")
    if method_param is not None and challenge is None:
        raise _bad("code_challenge_method was sent without code_challenge")
    scope_param = _q(request, "scope")
    requested = scope_param.split() if scope_param else []
    if len(requested) > 100 or not all(SCOPE_TOKEN_RE.fullmatch(s) for s in requested):
        raise _bad("scope must be a space-separated list of at most 100 scopes")

    with store.lock:
        if not any(r.url == redirect_uri for r in store.redirect_uris.values()):
            raise _bad(
                "redirect_uri is not registered for this application (POST /v3/applications/redirect-uris)",
                "grant.callback_uri_not_allowed",
            )
        connector = store.connectors.get(MICROSOFT)
        if connector is None:
            raise _bad(
                "No microsoft connector: create one with POST /v3/connectors before starting hosted auth",
                "grant.connector_not_found",
            )
        now = store.now()
        login = PendingLogin(
            id=new_secret(18),
            flavour="v3",
            provider=MICROSOFT,
            redirect_uri=redirect_uri,
            state=state,
            scope=requested or list(connector.scope),
            login_hint=login_hint,
            created_at=now,
            expires_at=now + config.login_ttl_seconds,
            client_id=client_id,
            access_type=access_type,
            code_challenge=challenge,
            code_challenge_method=method,
        )
        store.logins[login.id] = login
    return redirect(f"{config.base_url}/emulator/consent?id={login.id}")


# -- POST /v3/connect/token ------------------------------------------------------------------------------
def _token_fail(status: int, message: str) -> OAuthError:
    return OAuthError(
        "invalid_request", e.OAUTH_INVALID_REQUEST, message, status=status if status in (413, 415) else 400
    )


def _invalid_grant(code: int, description: str) -> OAuthError:
    return OAuthError("invalid_grant", code, description)


def _token_response(
    request: Request, grant: Grant, *, refresh_token: str | None, scope: list[str]
) -> Response:
    config, store = config_of(request), store_of(request)
    access = store.issue_token("access", grant.id, ACCESS_TOKEN_TTL)
    claims = {
        "iss": config.base_url,
        "aud": config.client_id,
        "sub": grant.id,
        "email": grant.email,
        "provider": grant.provider,
        "iat": access.issued_at,
        "exp": access.issued_at + ACCESS_TOKEN_TTL,
    }
    body: dict[str, Any] = {
        "access_token": access.value,
        "expires_in": ACCESS_TOKEN_TTL,
        "id_token": make_id_token(claims, config.api_key),
        "email": grant.email,
        "scope": " ".join(scope),
        "token_type": "Bearer",
        "grant_id": grant.id,
        "provider": grant.provider,
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def connect_token(request: Request) -> Response:
    config, store = config_of(request), store_of(request)
    fields = Fields(await json_or_form(request, config.max_body_bytes, _token_fail), _token_fail)
    grant_type = fields.req_string("grant_type", max_len=64)
    client_id = fields.req_string("client_id", max_len=256)
    client_secret = fields.req_string("client_secret", max_len=1024)
    if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
        raise OAuthError(
            "unsupported_grant_type", e.OAUTH_UNSUPPORTED_GRANT_TYPE, f"Unsupported grant_type '{grant_type}'"
        )
    if not same_secret(client_id, config.client_id):
        raise OAuthError("invalid_client", e.OAUTH_INVALID_CLIENT, "Unknown client_id")

    if grant_type == "authorization_code":
        code = fields.req_string("code", max_len=512)
        redirect_uri = fields.req_string("redirect_uri", max_len=2048)
        verifier = fields.string("code_verifier", max_len=256)
        with store.lock:
            record: AuthCode | None = store.codes.get(code)
            if record is None or record.used:
                raise _invalid_grant(e.OAUTH_CODE_INVALID, "The code has already been used, or has expired")
            # Any attempt burns the code ("If your token exchange fails, you must restart the OAuth process").
            record.used = True
            if record.expires_at <= store.now():
                raise _invalid_grant(e.OAUTH_CODE_INVALID, "The code has already been used, or has expired")
            if not same_secret(client_secret, config.api_key):
                raise OAuthError(
                    "invalid_client", e.OAUTH_INVALID_SECRET, "client_secret is not a valid API key"
                )
            if record.client_id != client_id:
                raise _invalid_grant(e.OAUTH_CODE_INVALID, "The code was issued to another client_id")
            if redirect_uri != record.redirect_uri:
                raise _invalid_grant(
                    e.OAUTH_REDIRECT_MISMATCH, "redirect_uri does not match the one sent to /v3/connect/auth"
                )
            if record.code_challenge is not None:
                if verifier is None or not verifier_matches(
                    verifier, record.code_challenge, record.code_challenge_method
                ):
                    raise _invalid_grant(e.OAUTH_VERIFIER_FAILED, "Code verifier challenge failed")
            elif verifier is not None:
                raise _invalid_grant(
                    e.OAUTH_VERIFIER_FAILED,
                    "code_verifier sent, but no code_challenge was sent to /v3/connect/auth",
                )
            grant = store.grants.get(record.grant_id)
            if grant is None:
                raise _invalid_grant(e.OAUTH_CODE_INVALID, "The grant of this code no longer exists")
            grant.verified = True
            refresh = (
                store.issue_token("refresh", grant.id, None).value
                if record.access_type == "offline"
                else None
            )
            return _token_response(request, grant, refresh_token=refresh, scope=record.scope)

    if not same_secret(client_secret, config.api_key):
        raise OAuthError("invalid_client", e.OAUTH_INVALID_SECRET, "client_secret is not a valid API key")
    with store.lock:
        if grant_type == "refresh_token":
            value = fields.req_string("refresh_token", max_len=512)
            token = store.tokens.get(value)
            grant = store.grants.get(token.grant_id) if token and token.kind == "refresh" else None
            if grant is None or grant.grant_status != "valid":
                raise _invalid_grant(e.OAUTH_REFRESH_INVALID, "The refresh token is invalid or revoked")
            return _token_response(request, grant, refresh_token=value, scope=grant.scope)
        grant_id = fields.req_string("grant_id", max_len=256)
        grant = store.grants.get(grant_id)
        if grant is None or grant.grant_status != "valid":
            raise _invalid_grant(e.OAUTH_CODE_INVALID, "No valid grant with this grant_id")
        return _token_response(request, grant, refresh_token=None, scope=grant.scope)


# -- POST /v3/connect/revoke, GET /v3/connect/tokeninfo --------------------------------------------------
def _invalid_token() -> OAuthError:
    return OAuthError("invalid_token", e.OAUTH_TOKEN_INVALID, "Token expired or revoked")


async def connect_revoke(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    value = query_one(request, "token", v3_fail)
    if not value:
        raise OAuthError("invalid_request", e.OAUTH_INVALID_REQUEST, "Missing required parameter: token")
    with store.lock:
        token = store.tokens.pop(value, None)
        if token is None:
            raise _invalid_token()
        # Revokes that token and its related refresh token; the grant itself stays.
        store.tokens = {
            k: t
            for k, t in store.tokens.items()
            if not (t.grant_id == token.grant_id and t.kind == "refresh")
        }
    return JSONResponse({})


async def connect_tokeninfo(request: Request) -> Response:
    require_api_key(request)
    config, store = config_of(request), store_of(request)
    id_token = query_one(request, "id_token", v3_fail)
    access_token = query_one(request, "access_token", v3_fail)
    if bool(id_token) == bool(access_token):
        raise OAuthError(
            "invalid_request", e.OAUTH_INVALID_REQUEST, "Send exactly one of id_token or access_token"
        )
    now = store.now_int()
    if id_token:
        claims = read_id_token(id_token, config.api_key)
        if claims is None or not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise _invalid_token()
        info = {k: claims.get(k) for k in ("iss", "aud", "sub", "email", "iat", "exp")}
    else:
        with store.lock:
            token = store.tokens.get(access_token or "")
            grant = store.grants.get(token.grant_id) if token is not None else None
            if token is None or grant is None or (token.expires_at is not None and token.expires_at <= now):
                raise _invalid_token()
            info = {
                "iss": config.base_url,
                "aud": config.client_id,
                "sub": grant.id,
                "email": grant.email,
                "iat": token.issued_at,
                "exp": token.expires_at or token.issued_at + ACCESS_TOKEN_TTL,
            }
    return v3_json(request, info)
