"""GET /connect/v1/connect.js: the popup embedding script, from the API's own origin (contract
"Embedding"). Static: read from this package once per container; no AWS access, no secrets."""

from pathlib import Path

from teams_connect.http import apigw, assets, web

SCRIPT = assets.StaticScript.load(Path(__file__).with_name("connect.js"))


@apigw.api_route("GET", "/connect/v1/connect.js")
def lambda_handler(request: apigw.Request) -> web.Response:
    status, headers, body, gzipped = assets.script_result(
        SCRIPT, raw_query=request.raw_query, headers=request.headers
    )
    return web.Response.raw(status, headers, body, base64_encoded=gzipped)
