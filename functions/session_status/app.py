"""GET /connect/v1/sessions/{session_id}/status: how a popup flow ended (connect.js asks when the
popup's message is missing or the window is gone). No API key: the session id is the capability;
CORS only for the session's return_to origin; nothing but the status and the error code."""

from teams_connect.adapters.store.base import dynamodb_client
from teams_connect.adapters.store.sessions import SessionStore
from teams_connect.config import get_settings
from teams_connect.domain.session_status import SessionStatus
from teams_connect.http import apigw, popup, web
from teams_connect.rules.query import parse_query

reader = SessionStatus(SessionStore(get_settings().sessions_table, dynamodb_client()))


@apigw.api_route("GET", "/connect/v1/sessions/{session_id}/status")
def lambda_handler(request: apigw.Request) -> web.Response:
    parse_query(request.raw_query)  # duplicated or malformed parameters → 400
    found = reader.read(web.path_param(request.path_params["session_id"]))
    return popup.status_response(found, request.headers)
