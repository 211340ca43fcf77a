"""GET /connect/start?session=<id>: bind the flow to this browser and send it to Nylas."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect import observability, web
from teams_connect.config import get_settings
from teams_connect.errors import SessionInvalid
from teams_connect.flow import build_flow
from teams_connect.observability import logger, metrics, tracer
from teams_connect.security import parse_query

flow = build_flow(get_settings(), lazy_nylas_http=True)  # v3 start calls no Nylas
app = APIGatewayHttpResolver()
web.install_browser_handlers(app)


@app.get("/connect/start")
def connect_start() -> Response[str]:
    query = parse_query(app.current_event.raw_query_string, SessionInvalid)
    outcome = flow.start(query.get("session"), deadline=web.deadline_from(app.lambda_context))
    observability.count(observability.CONNECT_STARTED)
    c = outcome.cookie
    return web.redirect(
        outcome.location, [web.binding_cookie(c.name, c.value, max_age=c.max_age, secure=c.secure)]
    )


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
