"""GET /v1/grants: the SaaS backend lists grants (by status or email), a page at a time."""

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.domain.listing import build_lister
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

settings = get_settings()
flow = build_flow(settings, with_nylas=False)
lister = build_lister(settings)


@apigw.api_route("GET", "/v1/grants")
def lambda_handler(request: apigw.Request) -> web.Response:
    flow.authenticate(request.header("authorization"))
    params = parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    return web.json_response(200, lister.list(params))
