"""GET /connect/admin-consent?consent=<id>: bind the flow to this browser, send it to Microsoft's
admin-consent endpoint."""

from teams_connect.config import get_settings
from teams_connect.domain.admin_consent import build_admin_consent
from teams_connect.errors import SessionInvalid
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

consents = build_admin_consent(get_settings())  # builds the URL locally: no HTTP client


@apigw.browser_route("GET", "/connect/admin-consent")
def lambda_handler(request: apigw.Request) -> web.Response:
    query = parse_query(request.raw_query, SessionInvalid)
    outcome = consents.start(query.get("consent"))
    c = outcome.cookie
    return web.redirect(
        outcome.location, [web.binding_cookie(c.name, c.value, max_age=c.max_age, secure=c.secure)]
    )
