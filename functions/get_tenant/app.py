"""GET /v1/tenants/{tenant_id}: the SaaS backend asks whether a tenant's administrator consented."""

from teams_connect.config import get_settings
from teams_connect.domain.admin_consent import build_admin_consent, tenant_json
from teams_connect.domain.flow import build_flow
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

settings = get_settings()
auth = build_flow(settings, with_nylas=False)
consents = build_admin_consent(settings)


@apigw.api_route("GET", "/v1/tenants/{tenant_id}")
def lambda_handler(request: apigw.Request) -> web.Response:
    auth.authenticate(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    record = consents.get_tenant(web.path_param(request.path_params["tenant_id"]))
    return web.json_response(200, tenant_json(record))
