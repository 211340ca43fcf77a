"""GET /connect/admin-consent/callback: Microsoft returns the administrator; check the answer with
Microsoft, record the tenant, end the flow."""

from teams_connect.config import get_settings
from teams_connect.domain.admin_consent import build_admin_consent
from teams_connect.errors import SessionInvalid
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

consents = build_admin_consent(get_settings(), calls_microsoft=True)  # the client-credentials check


@apigw.browser_route("GET", "/connect/admin-consent/callback")
def lambda_handler(request: apigw.Request) -> web.Response:
    query = parse_query(request.raw_query, SessionInvalid)
    outcome = consents.complete(query, list(request.cookies), deadline=web.deadline_from(request.context))
    c = outcome.clear_cookie
    cookies = [web.binding_cookie(c.name, "", max_age=0, secure=c.secure)] if c else []
    if outcome.error is None and outcome.tenant_id is not None:
        return web.admin_consented(outcome.return_to, outcome.tenant_id, cookies)
    return web.browser_error(outcome.error or SessionInvalid(), cookies)
