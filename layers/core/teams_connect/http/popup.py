"""The status route's answer (contract "Embedding: connect in a popup"): JSON, never cached,
readable cross-origin only by the session's return_to origin (the popup result page itself is
`web.popup_result`)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from teams_connect.domain.session_status import FlowStatus
from teams_connect.http.web import Response


def status_response(found: FlowStatus, headers: Mapping[str, str]) -> Response:
    """The status route's answer: readable cross-origin by the session's return_to origin only."""
    answer = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Origin",
    }
    origin = headers.get("origin")
    if found.cors_origin is not None and origin == found.cors_origin:
        answer["Access-Control-Allow-Origin"] = origin
    return Response(
        status_code=200,
        content_type="application/json",
        body=json.dumps(found.to_json(), separators=(",", ":")),
        headers=answer,
    )
