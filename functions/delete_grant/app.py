"""DELETE /v1/grants/{user_id}: revoke the grant at Nylas, then remove the record."""

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

flow = build_flow(get_settings())


@apigw.api_route("DELETE", "/v1/grants/{user_id}")
def lambda_handler(request: apigw.Request) -> web.Response:
    flow.authenticate(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    flow.disconnect(
        web.path_param(request.path_params["user_id"]), deadline=web.deadline_from(request.context)
    )
    return web.no_content()
