"""DELETE /v1/users/{user_id}/meetings/{meeting_id}: cancel a meeting teams-connect created.

Lean: parses the API Gateway v2 event itself (no event-handler resolver)."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect import apigw
from teams_connect.config import get_settings
from teams_connect.meetings import build_meetings
from teams_connect.observability import logger, metrics, tracer
from teams_connect.security import parse_query

# This function's one route (tests/contract checks it against template.yaml and the OpenAPI document).
ROUTE_KEY = "DELETE /v1/users/{user_id}/meetings/{meeting_id}"
ROUTE = ROUTE_KEY.split(" ", 1)[1]
meetings = build_meetings(get_settings())


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def delete(request: apigw.ApiRequest) -> dict[str, Any]:
        meetings.admit(request.header("authorization"))
        parse_query(request.raw_query)
        params = apigw.raw_path_params(request, ROUTE)
        meetings.delete(params["user_id"], params["meeting_id"], deadline=apigw.deadline_from(context))
        return apigw.no_content()

    return apigw.handle(event, delete)
