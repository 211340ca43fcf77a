"""PATCH /v1/users/{user_id}/meetings/{meeting_id}: change a meeting's title, times, description
or participants.

Lean (teams_connect.http.apigw: no event-handler resolver)."""

from teams_connect.config import get_settings
from teams_connect.domain.meetings import build_meetings
from teams_connect.http import apigw, web
from teams_connect.rules.query import parse_query

meetings = build_meetings(get_settings())


@apigw.api_route("PATCH", "/v1/users/{user_id}/meetings/{meeting_id}")
def lambda_handler(request: apigw.Request) -> web.Response:
    meetings.admit(request.header("authorization"))
    parse_query(request.raw_query)
    user_id = web.path_param(request.path_params["user_id"])
    meeting_id = web.path_param(request.path_params["meeting_id"])
    body = web.parse_json_body(request)
    meeting = meetings.update(user_id, meeting_id, body, deadline=web.deadline_from(request.context))
    return web.json_response(200, meeting)
