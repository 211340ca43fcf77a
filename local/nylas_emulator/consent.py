"""The consent page, shared by both flavours: a plain HTML form a person or an HTTP client can drive.

- v3: ``GET /emulator/consent?id=<login id>`` (where ``/v3/connect/auth`` redirects),
  ``POST /emulator/consent``.
- beta: ``GET /connect/login?id=<login id>`` (the ``url`` of beta ``POST /connect/auth``),
  ``POST /connect/login``.

The form posts ``id`` (hidden), ``email`` (pre-filled from ``login_hint``) and ``decision`` (``allow`` or
``deny``, the two submit buttons). A login id is single-use; a bad email answers 400 and leaves the login
usable so the person can correct it.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from . import entra
from .common import PERSONAL_MICROSOFT_DOMAINS, config_of, page_fail, redirect, store_of, with_query
from .errors import PageError, html_page
from .state import AuthCode, Flavour, PendingLogin, new_secret
from .validation import form_body, is_email, query_one
from .webhooks import dispatcher_of

DENY_DESCRIPTION = "The user denied the consent request on the Nylas emulator's consent page"

# What Microsoft answers when an app registered for work or school accounts only (tenant
# `organizations`) is signed in to with a personal account; Nylas passes it on to the callback.
PERSONAL_ACCOUNT_ERROR = "invalid_request"
PERSONAL_ACCOUNT_DESCRIPTION = (
    "AADSTS500200: User account '{email}' is a personal Microsoft account. Personal Microsoft accounts "
    "are not supported for this application unless explicitly invited to an organization. Try signing "
    "out and signing back in with an organizational account."
)


def refuses_personal_accounts(request: Request, flavour: Flavour) -> bool:
    """The Microsoft connector's tenant is `organizations`: personal accounts cannot consent."""
    store = store_of(request)
    if flavour == "v3":
        connector = store.connectors.get("microsoft")
        tenant = connector.settings.get("tenant") if connector is not None else None
    else:
        integration = store.integrations.get("microsoft")
        tenant = integration.settings.get("tenant") if integration is not None else None
    return tenant == "organizations"


FORM_PATHS: dict[Flavour, str] = {"v3": "/emulator/consent", "beta": "/connect/login"}
UNUSABLE = "This login link is unknown, expired or already used. Start the connection again."


def _login_or_400(request: Request, login_id: str | None, flavour: Flavour) -> PendingLogin:
    login = store_of(request).usable_login(login_id or "", flavour)
    if login is None:
        raise PageError(400, UNUSABLE)
    return login


def render_form(
    login: PendingLogin, *, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    esc = html.escape
    target = urlsplit(login.redirect_uri)
    scopes = "".join(f"<li><code>{esc(s)}</code></li>" for s in login.scope) or "<li>(none)</li>"
    flavour = (
        "Nylas API v3 hosted OAuth" if login.flavour == "v3" else "Nylas beta Integrations (Microsoft Teams)"
    )
    problem = f'<p role="alert"><strong>{esc(error)}</strong></p>' if error else ""
    body = (
        f"{problem}"
        "<p>An application asks to connect a <strong>Microsoft</strong> account through Nylas.</p>"
        "<dl>"
        f"<dt>Flow</dt><dd>{esc(flavour)}</dd>"
        f"<dt>Returns to</dt><dd>{esc(target.scheme)}://{esc(target.netloc)}{esc(target.path)}</dd>"
        f"<dt>Permissions</dt><dd><ul>{scopes}</ul></dd>"
        "</dl>"
        f'<form method="post" action="{esc(FORM_PATHS[login.flavour])}">'
        f'<input type="hidden" name="id" value="{esc(login.id)}">'
        '<p><label for="email">Microsoft account email</label><br>'
        f'<input type="email" id="email" name="email" value="{esc(email or login.login_hint or "")}" '
        'maxlength="320" required autocomplete="email"></p>'
        '<p><button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></p>'
        "</form>"
    )
    return html_page("Nylas emulator: sign in with Microsoft", body, status=status)


async def _show(request: Request, flavour: Flavour) -> Response:
    login = _login_or_400(request, query_one(request, "id", page_fail), flavour)
    return render_form(login)


async def _submit(request: Request, flavour: Flavour) -> Response:
    config, store = config_of(request), store_of(request)
    form = await form_body(request, config.max_body_bytes, page_fail)
    login_id = form.get("id") or query_one(request, "id", page_fail)
    decision = form.get("decision", "")
    email = form.get("email", "").strip()
    with store.lock:
        login = _login_or_400(request, login_id, flavour)
        if decision not in ("allow", "deny"):
            raise PageError(400, "decision must be 'allow' or 'deny'")
        if decision == "deny":
            login.used = True
            params = [("error", "access_denied"), ("error_description", DENY_DESCRIPTION)]
            if flavour == "beta":
                params.insert(0, ("success", "false"))
            if login.state is not None:
                params.append(("state", login.state))
            return redirect(with_query(login.redirect_uri, params))
        if not is_email(email):
            return render_form(login, email=email[:320], error="Enter a valid email address.", status=400)
        personal = email.rsplit("@", 1)[-1].lower() in PERSONAL_MICROSOFT_DOMAINS
        if not personal and entra.needs_admin_approval(store, email, flavour):
            # Microsoft's "Need admin approval": the login waits there for the user's decision.
            login.approval_email = email
            return entra.render_approval(login, email)
        login.used = True
        if personal and refuses_personal_accounts(request, flavour):
            params = [
                ("error", PERSONAL_ACCOUNT_ERROR),
                ("error_description", PERSONAL_ACCOUNT_DESCRIPTION.format(email=email)),
            ]
            if flavour == "beta":
                params.insert(0, ("success", "false"))
            if login.state is not None:
                params.append(("state", login.state))
            return redirect(with_query(login.redirect_uri, params))
        entra.record_user_consent(store, email, flavour)
        existed = store.grant_by_email(email) is not None
        grant = store.upsert_grant(
            email=email,
            provider=login.provider,
            scope=login.scope,
            state=login.state,
            account_id=login.account_id,
        )
        if flavour == "v3":
            code = AuthCode(
                code=new_secret(32),
                grant_id=grant.id,
                client_id=login.client_id,
                redirect_uri=login.redirect_uri,
                scope=list(login.scope),
                access_type=login.access_type,
                code_challenge=login.code_challenge,
                code_challenge_method=login.code_challenge_method,
                expires_at=store.now() + config.code_ttl_seconds,
            )
            store.codes[code.code] = code
            params = [("code", code.code)]
            if existed:
                dispatcher_of(store).emit("grant.updated", grant, code=25027, reauthentication_flag=True)
            else:
                dispatcher_of(store).emit("grant.created", grant)
        else:
            grant.verified = True  # no code exchange in the beta flow
            params = [
                ("success", "true"),
                ("provider", grant.provider),
                ("email", grant.email),
                ("grant_id", grant.id),
            ]
        if login.state is not None:
            params.append(("state", login.state))
        return redirect(with_query(login.redirect_uri, params))


async def v3_consent_page(request: Request) -> Response:
    return await _show(request, "v3")


async def v3_consent_submit(request: Request) -> Response:
    return await _submit(request, "v3")


async def beta_login_page(request: Request) -> Response:
    return await _show(request, "beta")


async def beta_login_submit(request: Request) -> Response:
    return await _submit(request, "beta")
