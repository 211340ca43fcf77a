"""`python -m local.lint_template` passes on template.yaml, and its invariant check bites."""

from __future__ import annotations

import copy

from local.lint_template import check_invariants, lint
from local.template import load_template


def test_template_lints_clean() -> None:
    ok, report = lint()
    assert ok, "\n".join(report)


def test_invariants_catch_a_route_missing_from_the_definition_body() -> None:
    template = copy.deepcopy(load_template())
    del template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]["/connect/start"]
    problems = check_invariants(template)
    assert any("GET /connect/start" in p for p in problems)


def test_invariants_catch_an_integration_calling_the_wrong_function() -> None:
    template = copy.deepcopy(load_template())
    paths = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    uri = paths["/v1/sessions"]["post"]["x-amazon-apigateway-integration"]["uri"]
    uri["Fn::Sub"] = uri["Fn::Sub"].replace("-create-session:", "-get-grant:")
    assert any("POST /v1/sessions" in p for p in check_invariants(template))


def test_invariants_catch_an_integration_that_bypasses_the_alias() -> None:
    # SAM grants API Gateway the invoke permission on the alias only (AutoPublishAlias), and
    # SnapStart runs only behind a published version: an unqualified function ARN would be a 500.
    template = copy.deepcopy(load_template())
    paths = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    uri = paths["/connect/callback"]["get"]["x-amazon-apigateway-integration"]["uri"]
    uri["Fn::Sub"] = uri["Fn::Sub"].replace("-connect-callback:live/", "-connect-callback/")
    assert any("GET /connect/callback" in p and "alias" in p for p in check_invariants(template))


def test_invariants_catch_a_per_function_environment() -> None:
    template = copy.deepcopy(load_template())
    template["Resources"]["GetGrantFunction"]["Properties"]["Environment"] = {"Variables": {"X": "1"}}
    assert any("GetGrantFunction" in p for p in check_invariants(template))
