"""GET /connect/v1/connect.js: the popup embedding script, from the API's own origin (contract
"Embedding"). Static: read from this package once per container; no AWS access, no secrets, and no
Powertools (`assets.script_route`: its cold start is the script's own work)."""

import os

from teams_connect.http import assets

SCRIPT = assets.StaticScript.load(os.path.join(os.path.dirname(__file__), "connect.js"))

lambda_handler = assets.script_route("/connect/v1/connect.js", SCRIPT)
