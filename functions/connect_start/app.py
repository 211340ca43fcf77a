"""GET /connect/start?session=<id>: bind the flow to this browser and send it to Nylas."""

from teams_connect import observability
from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.errors import SessionInvalid
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

flow = build_flow(get_settings(), lazy_nylas_http=True)  # v3 start calls no Nylas


@apigw.browser_route("GET", "/connect/start")
def lambda_handler(request: apigw.Request) -> web.Response:
    query = parse_query(request.raw_query, SessionInvalid)
    outcome = flow.start(query.get("session"), deadline=web.deadline_from(request.context))
    observability.count(observability.CONNECT_STARTED)
    c = outcome.cookie
    return web.redirect(
        outcome.location, [web.binding_cookie(c.name, c.value, max_age=c.max_age, secure=c.secure)]
    )
