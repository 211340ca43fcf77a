"""POST /v1/users/{user_id}/meetings: schedule a Teams meeting on the user's stored grant.

Lean: parses the API Gateway v2 event itself (no event-handler resolver). The only function that
loads the Powertools Idempotency utility (an `Idempotency-Key` header makes retries safe)."""

import os
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect import apigw
from teams_connect.config import get_settings
from teams_connect.meetings import build_meetings
from teams_connect.meetings_idempotency import MeetingsCreate
from teams_connect.observability import logger, metrics, tracer
from teams_connect.security import parse_query
from teams_connect.store import dynamodb_client

# This function's one route (tests/contract checks it against template.yaml and the OpenAPI document).
ROUTE_KEY = "POST /v1/users/{user_id}/meetings"
ROUTE = ROUTE_KEY.split(" ", 1)[1]
meetings = build_meetings(get_settings())
creator = MeetingsCreate(meetings, os.environ.get("IDEMPOTENCY_TABLE", ""), dynamodb_client())


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    def create(request: apigw.ApiRequest) -> dict[str, Any]:
        meetings.admit(request.header("authorization"))
        parse_query(request.raw_query)  # duplicated or malformed parameters → 400
        user_id = apigw.raw_path_params(request, ROUTE)["user_id"]
        key = request.header("idempotency-key")
        prepared = meetings.prepare_create(user_id, request.json_body(), key)
        deadline = apigw.deadline_from(context)
        return apigw.json_answer(
            201, creator.create(user_id, prepared, key, context=context, deadline=deadline)
        )

    return apigw.handle(event, create)
