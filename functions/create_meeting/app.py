"""POST /v1/users/{user_id}/meetings: schedule a Teams meeting on the user's stored grant.

Lean (teams_connect.http.apigw: no event-handler resolver). The only function that loads the Powertools
Idempotency utility (an `Idempotency-Key` header makes retries safe)."""

import os

from teams_connect.adapters.store.base import dynamodb_client
from teams_connect.config import get_settings
from teams_connect.domain.meetings import build_meetings
from teams_connect.domain.meetings_idempotency import MeetingsCreate
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

meetings = build_meetings(get_settings())
creator = MeetingsCreate(meetings, os.environ.get("IDEMPOTENCY_TABLE", ""), dynamodb_client())


@apigw.api_route("POST", "/v1/users/{user_id}/meetings")
def lambda_handler(request: apigw.Request) -> web.Response:
    meetings.admit(request.header("authorization"))
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    user_id = web.path_param(request.path_params["user_id"])
    key = request.header("idempotency-key")
    prepared = meetings.prepare_create(user_id, web.parse_json_body(request), key)
    deadline = web.deadline_from(request.context)
    created = creator.create(user_id, prepared, key, context=request.context, deadline=deadline)
    return web.json_response(201, created)
