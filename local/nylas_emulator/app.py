"""``create_app(config) -> Starlette``: every route of the emulator, its middleware and error handlers."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import beta, consent, control, entra, v3_api, v3_auth, webhooks
from .config import EmulatorConfig
from .errors import V3_TYPE_BY_STATUS, EmulatorError, v3_error_response
from .faults import DropConnection, EmulatorMiddleware, install_log_filter
from .state import Store

log = logging.getLogger("nylas_emulator")


def _routes() -> list[Route]:
    return [
        # v3 hosted OAuth
        Route("/v3/connect/auth", v3_auth.connect_auth, methods=["GET"]),
        Route("/v3/connect/token", v3_auth.connect_token, methods=["POST"]),
        Route("/v3/connect/revoke", v3_auth.connect_revoke, methods=["POST"]),
        Route("/v3/connect/tokeninfo", v3_auth.connect_tokeninfo, methods=["GET"]),
        # consent pages (browser)
        Route("/emulator/consent", consent.v3_consent_page, methods=["GET"]),
        Route("/emulator/consent", consent.v3_consent_submit, methods=["POST"]),
        Route("/connect/login", consent.beta_login_page, methods=["GET"]),
        Route("/connect/login", consent.beta_login_submit, methods=["POST"]),
        # v3 management API
        Route("/v3/grants", v3_api.list_grants, methods=["GET"]),
        Route("/v3/grants/{grant_id}", v3_api.get_grant, methods=["GET"]),
        Route("/v3/grants/{grant_id}", v3_api.patch_grant, methods=["PATCH"]),
        Route("/v3/grants/{grant_id}", v3_api.delete_grant, methods=["DELETE"]),
        Route("/v3/grants/{grant_id}/events", v3_api.create_event, methods=["POST"]),
        Route("/v3/grants/{grant_id}/events", v3_api.list_events, methods=["GET"]),
        Route("/v3/grants/{grant_id}/events/{event_id}", v3_api.get_event, methods=["GET"]),
        Route("/v3/grants/{grant_id}/events/{event_id}", v3_api.update_event, methods=["PUT"]),
        Route("/v3/grants/{grant_id}/events/{event_id}", v3_api.delete_event, methods=["DELETE"]),
        Route("/v3/connectors", v3_api.create_connector, methods=["POST"]),
        Route("/v3/connectors", v3_api.list_connectors, methods=["GET"]),
        Route("/v3/connectors/{provider}", v3_api.get_connector, methods=["GET"]),
        Route("/v3/connectors/{provider}", v3_api.patch_connector, methods=["PATCH"]),
        Route("/v3/connectors/{provider}", v3_api.delete_connector, methods=["DELETE"]),
        Route("/v3/applications/redirect-uris", v3_api.list_redirect_uris, methods=["GET"]),
        Route("/v3/applications/redirect-uris", v3_api.create_redirect_uri, methods=["POST"]),
        Route("/v3/applications/redirect-uris/{id}", v3_api.get_redirect_uri, methods=["GET"]),
        Route("/v3/applications/redirect-uris/{id}", v3_api.patch_redirect_uri, methods=["PATCH"]),
        Route("/v3/applications/redirect-uris/{id}", v3_api.delete_redirect_uri, methods=["DELETE"]),
        # beta Integrations
        Route("/connect/integrations", beta.create_integration, methods=["POST"]),
        Route("/connect/integrations", beta.list_integrations, methods=["GET"]),
        Route("/connect/integrations/{provider}", beta.get_integration, methods=["GET"]),
        Route("/connect/integrations/{provider}", beta.patch_integration, methods=["PATCH"]),
        Route("/connect/integrations/{provider}", beta.delete_integration, methods=["DELETE"]),
        Route("/connect/auth", beta.connect_auth, methods=["POST"]),
        Route("/connect/grants", beta.list_grants, methods=["GET"]),
        Route("/connect/grants/{grant_id}", beta.get_grant, methods=["GET"]),
        Route("/connect/grants/{grant_id}", beta.delete_grant, methods=["DELETE"]),
        # v3 webhooks (+ their control routes)
        *webhooks.routes(),
        # control
        *control.routes(),
        # Microsoft Entra (MicrosoftLoginUrl points here locally): tenants, admin consent, token, discovery
        *entra.routes(),
    ]


async def _emulator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EmulatorError)
    return exc.render(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = "No such route" if status == 404 else "Method not allowed" if status == 405 else str(exc.detail)
    return v3_error_response(
        request,
        status,
        V3_TYPE_BY_STATUS.get(status, "invalid_request_error"),
        message,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Reached only for errors outside EmulatorMiddleware's own catch-all, and for deliberate drops.
    if not isinstance(exc, DropConnection):
        log.error("unhandled error", exc_info=exc)
    return v3_error_response(request, 500, "internal_error", "Internal error in the Nylas emulator")


def create_app(config: EmulatorConfig | None = None, *, store: Store | None = None) -> Starlette:
    """The emulator as an ASGI app. ``store`` may be passed to share or inspect state (tests)."""
    config = config or EmulatorConfig()
    store = store or Store()
    install_log_filter()
    app = Starlette(
        debug=False,
        routes=_routes(),
        middleware=[Middleware(EmulatorMiddleware, store=store)],
        exception_handlers={
            EmulatorError: _emulator_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app.state.config = config
    app.state.store = store
    return app
