"""GET /connect/callback: Nylas returns the browser; verify, store the grant, end the flow."""

from teams_connect import observability
from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.errors import SessionInvalid
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

flow = build_flow(get_settings(), with_tenants=True)  # + the grant's Microsoft tenant (tenant_id)


@apigw.browser_route("GET", "/connect/callback")
def lambda_handler(request: apigw.Request) -> web.Response:
    query = parse_query(request.raw_query, SessionInvalid)
    outcome = flow.complete(query, list(request.cookies), deadline=web.deadline_from(request.context))
    c = outcome.clear_cookie
    cookies = [web.binding_cookie(c.name, "", max_age=0, secure=c.secure)] if c else []
    if outcome.error is None:
        observability.count(observability.CONNECT_SUCCEEDED)
        return web.connected(outcome.return_to, cookies, popup_session=outcome.popup_session)
    observability.count(observability.CONNECT_FAILED, error_code=outcome.error.code)
    return web.browser_error(outcome.error, cookies)
