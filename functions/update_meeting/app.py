"""PATCH /v1/users/{user_id}/meetings/{meeting_id}: change a meeting's title, times, description
or participants.

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
ROUTE_KEY = "PATCH /v1/users/{user_id}/meetings/{meeting_id}"
ROUTE = ROUTE_KEY.split(" ", 1)[1]
meetings = build_meetings(get_settings())


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def update(request: apigw.ApiRequest) -> dict[str, Any]:
        meetings.admit(request.header("authorization"))
        parse_query(request.raw_query)
        params = apigw.raw_path_params(request, ROUTE)
        body = request.json_body()
        meeting = meetings.update(
            params["user_id"], params["meeting_id"], body, deadline=apigw.deadline_from(context)
        )
        return apigw.json_answer(200, meeting)

    return apigw.handle(event, update)
