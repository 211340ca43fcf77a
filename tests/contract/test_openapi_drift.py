"""docs/openapi.yaml must not drift from the code.

The document is hand-written (its header says why it is not generated). These tests tie it to the
code: the routes (document == template.yaml == the handlers' resolver decorators), the error codes and
their HTTP statuses (document == `teams_connect.errors`), and the request limits the handlers enforce.
The bodies and statuses the handlers really answer with are checked by test_schemathesis.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from local.template import ROOT, http_routes, load_template
from openapi_spec_validator import validate

from teams_connect import errors
from teams_connect.domain import flow
from teams_connect.rules import security

OPENAPI_PATH = ROOT / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
# contract.md, "When the flow ends": the codes a browser flow can end with.
CONTRACT_BROWSER_CODES = {
    "access_denied",
    "session_invalid",
    "session_expired",
    "session_used",
    "browser_mismatch",
    "grant_invalid",
    "account_already_linked",
    "email_mismatch",
    "account_not_supported",
    "admin_consent_required",
    "upstream_unavailable",
    "server_error",
}
# contract.md, "Enterprise tenants": the codes an admin-consent flow can end with.
CONTRACT_ADMIN_CONSENT_CODES = {
    "access_denied",
    "session_invalid",
    "session_expired",
    "session_used",
    "browser_mismatch",
    "tenant_mismatch",
    "consent_unverified",
    "upstream_unavailable",
    "server_error",
}
# The codes functions/nylas_webhooks answers errors with (teams_connect.domain.webhooks).
WEBHOOK_CODES = {"invalid_request", "unauthorized", "payload_too_large", "upstream_unavailable"}
# Statuses a function never answers with; API Gateway does (route throttling).
GATEWAY_STATUSES = {"429"}


def load_openapi(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_openapi()


def document_routes(spec: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


_DECORATOR_METHODS = {"get", "post", "put", "delete", "patch", "head"}


def declared_routes(app_py: Path) -> set[str]:
    """`ROUTES = ("METHOD /path", ...)` at module level of a handler without a resolver."""
    for node in ast.parse(app_py.read_text(encoding="utf-8")).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "ROUTES" for t in node.targets)
            and isinstance(node.value, ast.Tuple | ast.List)
        ):
            return {
                e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    return set()


def resolver_routes(app_py: Path) -> set[str]:
    """The routes a handler module registers, as `METHOD /path/{param}`: `@apigw.api_route("GET",
    "/path/{param}")` / `@apigw.browser_route(...)` (the lean handlers), a static script's
    `assets.script_route("/path", ...)` (GET), or a resolver's `@app.<method>("/path/<param>")`."""
    tree = ast.parse(app_py.read_text(encoding="utf-8"))
    routes: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "assets"
            and node.func.attr == "script_route"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            routes.add(f"GET {node.args[0].value}")
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "apigw"
                and decorator.func.attr in ("api_route", "browser_route")
                and len(decorator.args) == 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in decorator.args)
            ):
                method, path = (a.value for a in decorator.args)  # type: ignore[attr-defined]
                routes.add(f"{str(method).upper()} {path}")
            elif (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "app"
                and decorator.func.attr in _DECORATOR_METHODS
                and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and isinstance(decorator.args[0].value, str)
            ):
                path = re.sub(r"<(\w+)>", r"{\1}", decorator.args[0].value)
                routes.add(f"{decorator.func.attr.upper()} {path}")
    return routes


def error_classes() -> list[type[errors.ConnectError]]:
    found: list[type[errors.ConnectError]] = []
    pending: list[type[errors.ConnectError]] = [errors.ConnectError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def code_statuses() -> dict[str, set[int]]:
    result: dict[str, set[int]] = {}
    for cls in error_classes():
        result.setdefault(cls.code, set()).add(cls.status)
    return result


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


# --------------------------------------------------------------------------- the document itself


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)


# --------------------------------------------------------------------------- routes


def test_routes_document_equals_template_equals_handlers(spec: dict[str, Any]) -> None:
    template = load_template()
    template_routes = {route.route_key for route in http_routes(template)}
    assert document_routes(spec) == template_routes

    by_module: dict[Path, set[str]] = {}
    for route in http_routes(template):
        module = route.handler.rpartition(".")[0]
        app_py = ROOT / route.code_uri / f"{module.replace('.', '/')}.py"
        by_module.setdefault(app_py, set()).add(route.route_key)
    handler_routes: set[str] = set()
    for app_py, keys in by_module.items():
        # The function behind routes serves exactly those routes: its resolver's decorators or, for a
        # lean handler that reads the event itself, its declared `ROUTES`.
        registered = resolver_routes(app_py) or declared_routes(app_py)
        assert registered == keys, f"{app_py}: {registered} != {keys}"
        handler_routes |= registered
    assert handler_routes == template_routes


def test_backend_routes_need_the_bearer_key_and_browser_routes_do_not(spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for key, operation in operations(spec).items():
        if key.split(" ", 1)[1].startswith("/v1/"):
            assert operation.get("security") == [{"bearerAuth": []}], key
            assert "401" in operation["responses"], key
        else:
            assert not operation.get("security"), key


# --------------------------------------------------------------------------- error codes


def test_every_error_code_of_the_code_is_documented_and_nothing_else(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    api_codes = set(schemas["ApiErrorCode"]["enum"])
    browser_codes = set(schemas["BrowserErrorCode"]["enum"])
    consent_codes = set(schemas["AdminConsentErrorCode"]["enum"])
    assert browser_codes == CONTRACT_BROWSER_CODES
    assert consent_codes == CONTRACT_ADMIN_CONSENT_CODES
    assert api_codes | browser_codes | consent_codes == set(code_statuses())


def test_api_error_responses_carry_the_codes_of_their_status(spec: dict[str, Any]) -> None:
    """Every documented JSON error response lists only API codes the code answers with at that status
    (an operation lists those it can answer, e.g. a grant route's 404 is not `not_connected`), and
    every API code is reachable from at least one operation. A 429 without `x-error-codes` is API
    Gateway's own throttle."""
    statuses = code_statuses()
    api_codes = set(spec["components"]["schemas"]["ApiErrorCode"]["enum"])
    seen_codes: set[str] = set()
    for key, operation in operations(spec).items():
        for status, response in operation["responses"].items():
            response = resolve(spec, response)
            if not status.startswith(("4", "5")):
                continue
            if status in GATEWAY_STATUSES and "x-error-codes" not in response:
                continue
            if "application/json" not in response.get("content", {}):
                continue  # browser routes answer errors as HTML pages
            schema = resolve(spec, response["content"]["application/json"]["schema"])
            assert schema is spec["components"]["schemas"]["Error"], f"{key} {status}"
            documented = set(response["x-error-codes"])
            if key.startswith(("GET /nylas/", "POST /nylas/")):
                # The webhook answers a few of the codes (teams_connect.domain.webhooks), at their statuses.
                assert documented <= WEBHOOK_CODES, f"{key} {status}: {documented}"
                assert all(int(status) in statuses[code] for code in documented), f"{key} {status}"
                continue
            expected = {code for code in api_codes if int(status) in statuses[code]}
            assert documented, f"{key} {status}: no x-error-codes"
            assert documented <= expected, (
                f"{key} {status}: {documented - expected} not answered with {status}"
            )
            seen_codes |= documented
    assert seen_codes == api_codes


def test_browser_routes_document_every_status_a_flow_can_end_with(spec: dict[str, Any]) -> None:
    statuses = code_statuses()
    callback = operations(spec)["GET /connect/callback"]["responses"]
    for code in spec["components"]["schemas"]["BrowserErrorCode"]["enum"]:
        for status in statuses[code]:
            assert str(status) in callback, f"{code} -> {status} missing on /connect/callback"
    consent_callback = operations(spec)["GET /connect/admin-consent/callback"]["responses"]
    for code in spec["components"]["schemas"]["AdminConsentErrorCode"]["enum"]:
        for status in statuses[code]:
            assert str(status) in consent_callback, (
                f"{code} -> {status} missing on the admin-consent callback"
            )
    for key in (
        "GET /connect/start",
        "GET /connect/callback",
        "GET /connect/admin-consent",
        "GET /connect/admin-consent/callback",
    ):
        responses = operations(spec)[key]["responses"]
        assert "302" in responses, key
        for status, response in responses.items():
            if status.startswith(("4", "5")) and status not in GATEWAY_STATUSES:
                assert set(resolve(spec, response)["content"]) == {"text/html"}, f"{key} {status}"


# --------------------------------------------------------------------------- request limits


def test_request_limits_match_the_validators(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    user_id = schemas["UserId"]
    assert security.check_user_id("u" * user_id["maxLength"])
    with pytest.raises(errors.InvalidRequest):
        security.check_user_id("u" * (user_id["maxLength"] + 1))
    with pytest.raises(errors.InvalidRequest):
        security.check_user_id("u" * (user_id["minLength"] - 1))
    assert re.fullmatch(user_id["pattern"], "a\x1fb") is None
    assert re.fullmatch(user_id["pattern"], "a\x7fb") is None

    body = schemas["CreateSessionRequest"]
    assert body["properties"]["return_to"]["maxLength"] == security.MAX_RETURN_TO_LENGTH
    assert set(body["properties"]) == {
        "user_id",
        "return_to",
        "login_hint",
        "account_id",
        "expected_email",
        "display",
        "reconnect",
        "metadata",
    }
    assert tuple(body["properties"]["display"]["enum"]) == flow.DISPLAYS

    session_id = security.new_session_id()
    assert re.fullmatch(schemas["SessionId"]["pattern"], session_id)
    assert re.fullmatch(schemas["State"]["pattern"], security.new_state(session_id))
    assert security.SESSION_ID_RE.match("A" * 43)
    assert not security.SESSION_ID_RE.match("A" * 42)
