"""GET /v1/grants/{user_id}: the SaaS backend looks up a user's grant."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect import web
from teams_connect.config import get_settings
from teams_connect.flow import build_flow, grant_json
from teams_connect.observability import logger, metrics, tracer
from teams_connect.security import parse_query

flow = build_flow(get_settings(), with_nylas=False)
app = APIGatewayHttpResolver()
web.install_api_handlers(app)


@app.get("/v1/grants/<user_id>")
def get_grant(user_id: str) -> Response[str]:
    flow.authenticate(app.current_event.headers.get("authorization"))
    parse_query(app.current_event.raw_query_string)  # duplicated or malformed parameters → 400
    record = flow.get_grant(web.path_param(user_id))
    return web.json_response(200, grant_json(record))


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
