"""POST /v1/admin-consents: the SaaS backend asks for a one-time link for an IT administrator."""

from teams_connect.config import get_settings
from teams_connect.domain.admin_consent import build_admin_consent
from teams_connect.domain.flow import build_flow
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

settings = get_settings()
auth = build_flow(settings, with_nylas=False)  # the backend API key check, shared with every API route
consents = build_admin_consent(settings, calls_microsoft=True)  # discovery of a `tenant`


@apigw.api_route("POST", "/v1/admin-consents")
def lambda_handler(request: apigw.Request) -> web.Response:
    auth.authenticate(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    created = consents.create(web.parse_json_body(request), deadline=web.deadline_from(request.context))
    return web.json_response(201, created.to_json())
