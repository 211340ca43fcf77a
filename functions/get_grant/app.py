"""GET /v1/grants/{user_id}: the SaaS backend looks up a user's grant."""

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow, grant_json
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

flow = build_flow(get_settings(), with_nylas=False)


@apigw.api_route("GET", "/v1/grants/{user_id}")
def lambda_handler(request: apigw.Request) -> web.Response:
    flow.authenticate(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    record = flow.get_grant(web.path_param(request.path_params["user_id"]))
    return web.json_response(200, grant_json(record))
