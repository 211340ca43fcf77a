"""Small helpers every surface module shares: the app's config/store, the failure factories, API-key auth."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

from .config import EmulatorConfig
from .errors import BetaError, EmulatorError, NylasError, PageError, request_id_of
from .state import Store

MICROSOFT = "microsoft"
DEFAULT_MICROSOFT_SCOPES = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "User.Read",
    "Calendars.ReadWrite",
    "OnlineMeetings.ReadWrite",
]
PERSONAL_MICROSOFT_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "msn.com"})


def config_of(request: Request) -> EmulatorConfig:
    config = request.app.state.config
    assert isinstance(config, EmulatorConfig)
    return config


def store_of(request: Request) -> Store:
    store = request.app.state.store
    assert isinstance(store, Store)
    return store


def v3_fail(status: int, message: str) -> EmulatorError:
    return NylasError(status, "invalid_request_error", message)


def beta_fail(status: int, message: str) -> EmulatorError:
    return BetaError(status, "invalid_request_error", message)


def page_fail(status: int, message: str) -> EmulatorError:
    return PageError(status, message)


def same_secret(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def require_api_key(request: Request) -> None:
    """``Authorization: Bearer <api key>`` or 401 in the OpenAPI's shape (``type: unauthorized``)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (
        scheme.lower() != "bearer"
        or not token.strip()
        or not same_secret(token.strip(), config_of(request).api_key)
    ):
        raise NylasError(
            401, "unauthorized", "Unauthorized: a valid API key is required (Authorization: Bearer)"
        )


def v3_json(request: Request, data: Any = None, status: int = 200, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"request_id": request_id_of(request)}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return JSONResponse(body, status_code=status)


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to its query string (existing parameters kept)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(
        location, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )
