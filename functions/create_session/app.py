"""POST /v1/sessions: the SaaS backend asks for a connect link for one of its users."""

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

flow = build_flow(get_settings(), with_nylas=False)


@apigw.api_route("POST", "/v1/sessions")
def lambda_handler(request: apigw.Request) -> web.Response:
    flow.authenticate(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    created = flow.create_session(web.parse_json_body(request))
    return web.json_response(201, created.to_json())
