"""GET /connect/callback: Nylas returns the browser; verify, store the grant, end the flow."""

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

flow = build_flow(get_settings())
app = APIGatewayHttpResolver()
web.install_browser_handlers(app)


@app.get("/connect/callback")
def connect_callback() -> Response[str]:
    query = parse_query(app.current_event.raw_query_string, SessionInvalid)
    outcome = flow.complete(
        query, app.current_event.cookies or [], deadline=web.deadline_from(app.lambda_context)
    )
    c = outcome.clear_cookie
    cookies = [web.binding_cookie(c.name, "", max_age=0, secure=c.secure)] if c else []
    if outcome.error is None:
        observability.count(observability.CONNECT_SUCCEEDED)
        return web.connected(outcome.return_to, cookies)
    observability.count(observability.CONNECT_FAILED, error_code=outcome.error.code)
    return web.browser_error(outcome.error, cookies)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
