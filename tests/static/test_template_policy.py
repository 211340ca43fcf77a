"""The template policy checks of tools/static_gates.py: clean on the real template, and each one fails on
a deliberately broken copy (broken in template.yaml terms and translated, or in the translated
CloudFormation where SAM would otherwise fill the gap)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from local.lint_template import translate
from local.template import http_routes, load_template
from tools import static_gates
from tools.static_gates import (
    check_policy,
    policy_functions,
    policy_iam,
    policy_secrets,
    policy_tables,
    policy_throttling,
)

Template = dict[str, Any]


@pytest.fixture(scope="module")
def sam() -> Template:
    return load_template()


@pytest.fixture(scope="module")
def real(sam: Template) -> Template:
    return translate(sam)


def broken_sam(sam: Template, breaker: Callable[[Template], None]) -> Template:
    copied = copy.deepcopy(sam)
    breaker(copied)
    return translate(copied)


def broken(real: Template, breaker: Callable[[Template], None]) -> Template:
    copied = copy.deepcopy(real)
    breaker(copied)
    return copied


def res(template: Template, logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]  # type: ignore[no-any-return]


def role_statements(template: Template, role: str) -> list[dict[str, Any]]:
    return res(template, role)["Policies"][0]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def test_the_real_template_passes_every_policy_check(real: Template) -> None:
    assert check_policy(real) == []
    for name, check in static_gates.POLICY_CHECKS.items():
        assert check(real) == [], name


# --------------------------------------------------------------------------- tables


def test_sessions_table_without_ttl_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        del res(t, "SessionsTable")["TimeToLiveSpecification"]

    assert policy_tables(broken_sam(sam, breaker)) == [
        "SessionsTable: TTL must be enabled (TimeToLiveSpecification)"
    ]


def test_sessions_table_with_ttl_disabled_fails(real: Template) -> None:
    t = broken(real, lambda t: res(t, "SessionsTable")["TimeToLiveSpecification"].update(Enabled=False))
    assert any("TTL" in f for f in policy_tables(t))


@pytest.mark.parametrize("table", ["SessionsTable", "GrantsTable"])
def test_table_without_pitr_fails(real: Template, table: str) -> None:
    t = broken(real, lambda t: res(t, table).pop("PointInTimeRecoverySpecification"))
    assert policy_tables(t) == [f"{table}: point-in-time recovery must be enabled"]


@pytest.mark.parametrize("table", ["SessionsTable", "GrantsTable"])
def test_table_with_the_aws_managed_key_fails(real: Template, table: str) -> None:
    t = broken(real, lambda t: res(t, table)["SSESpecification"].pop("KMSMasterKeyId"))
    assert policy_tables(t) == [
        f"{table}: SSE must use the template's customer-managed KMS key (KMSMasterKeyId)"
    ]


@pytest.mark.parametrize("table", ["SessionsTable", "GrantsTable"])
def test_table_without_sse_fails(real: Template, table: str) -> None:
    t = broken(real, lambda t: res(t, table).pop("SSESpecification"))
    assert policy_tables(t) == [f"{table}: SSE with KMS must be enabled (SSEEnabled: true, SSEType: KMS)"]


def test_missing_table_fails(real: Template) -> None:
    t = broken(real, lambda t: t["Resources"].pop("GrantsTable"))
    assert "GrantsTable: missing (expected an AWS::DynamoDB::Table)" in policy_tables(t)


# --------------------------------------------------------------------------- IAM


@pytest.mark.parametrize("action", ["*", "dynamodb:*", "secretsmanager:*", "DynamoDB:*"])
def test_wildcard_action_fails(sam: Template, action: str) -> None:
    def breaker(t: Template) -> None:
        statements = res(t, "GetGrantFunction")["Policies"][0]["Statement"]
        statements[0]["Action"] = [action]

    findings = policy_iam(broken_sam(sam, breaker))
    assert len(findings) == 1
    assert f"Action {action!r} is a wildcard" in findings[0]


@pytest.mark.parametrize(
    ("sid", "action"),
    [("GrantsRead", "dynamodb:GetItem"), ("ApiKeysSecret", "secretsmanager:GetSecretValue")],
)
def test_wildcard_resource_for_dynamodb_or_secrets_fails(real: Template, sid: str, action: str) -> None:
    def breaker(t: Template) -> None:
        for statement in role_statements(t, "GetGrantFunctionRole"):
            if statement.get("Sid") == sid:
                statement["Resource"] = "*"

    findings = policy_iam(broken(real, breaker))
    assert len(findings) == 1
    assert "Resource '*'" in findings[0]
    assert action in findings[0]


def test_wildcard_inside_a_condition_branch_fails(real: Template) -> None:
    def breaker(t: Template) -> None:
        statements = role_statements(t, "ConnectStartFunctionRole")
        statements.append(
            {
                "Fn::If": [
                    "HasSecretsKmsKey",
                    {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
                    {"Ref": "AWS::NoValue"},
                ]
            }
        )

    findings = policy_iam(broken(real, breaker))
    assert any("'dynamodb:*' is a wildcard" in f for f in findings)
    assert any("Resource '*'" in f for f in findings)


def test_broad_managed_policy_fails(real: Template) -> None:
    t = broken(
        real,
        lambda t: res(t, "GetGrantFunctionRole")["ManagedPolicyArns"].append(
            "arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess"
        ),
    )
    assert policy_iam(t) == [
        "GetGrantFunctionRole: managed policy AmazonDynamoDBFullAccess is not least privilege"
    ]


def test_the_kms_key_policy_resource_star_is_allowed(real: Template) -> None:
    """A key policy's `Resource: "*"` means the key itself: not an identity policy, not flagged."""
    statements = res(real, "DataKey")["KeyPolicy"]["Statement"]
    assert any(s.get("Resource") == "*" for s in statements)
    assert policy_iam(real) == []


# --------------------------------------------------------------------------- secrets


def test_noecho_secret_value_parameter_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        t["Parameters"]["NylasApiKey"] = {"Type": "String", "NoEcho": True}

    assert policy_secrets(broken_sam(sam, breaker)) == [
        "parameter NylasApiKey: NoEcho means a secret value is passed as a parameter"
    ]


def test_secret_value_parameter_without_noecho_fails(real: Template) -> None:
    t = broken(real, lambda t: t["Parameters"].update(ClientSecret={"Type": "String"}))
    assert policy_secrets(t) == [
        "parameter ClientSecret: looks like a secret value; pass the secret's ARN instead"
    ]


def test_secret_arn_parameter_without_pattern_fails(real: Template) -> None:
    t = broken(real, lambda t: t["Parameters"]["ApiKeysSecretArn"].pop("AllowedPattern"))
    findings = policy_secrets(t)
    assert (
        "parameter ApiKeysSecretArn: needs an AllowedPattern that only admits secretsmanager ARNs" in findings
    )


def test_secrets_statement_on_a_hard_coded_arn_fails(real: Template) -> None:
    def breaker(t: Template) -> None:
        for statement in role_statements(t, "GetGrantFunctionRole"):
            if statement.get("Sid") == "ApiKeysSecret":
                statement["Resource"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:*"

    findings = policy_secrets(broken(real, breaker))
    assert len(findings) == 1
    assert "must be secret ARN parameters" in findings[0]


def test_secret_value_in_the_environment_fails(real: Template) -> None:
    def breaker(t: Template) -> None:
        res(t, "GetGrantFunction")["Environment"]["Variables"]["NYLAS_API_KEY"] = "abc"

    assert policy_secrets(broken(real, breaker)) == [
        "GetGrantFunction: environment variable NYLAS_API_KEY looks like a secret value"
    ]


def test_secret_arn_variable_not_from_a_parameter_fails(real: Template) -> None:
    def breaker(t: Template) -> None:
        res(t, "GetGrantFunction")["Environment"]["Variables"]["API_KEYS_SECRET_ARN"] = "arn:aws:x"

    assert policy_secrets(broken(real, breaker)) == [
        "GetGrantFunction: API_KEYS_SECRET_ARN must be a Ref of a secret ARN parameter or a stack secret"
    ]


def test_a_stack_created_secret_must_hold_no_value(real: Template) -> None:
    def with_value(t: Template) -> None:
        res(t, "WebhookSecret")["SecretString"] = '{"webhook_secret": "abc"}'

    findings = policy_secrets(broken(real, with_value))
    assert findings[0] == "WebhookSecret: a stack-created secret must not carry a value in the template"
    # ... and every statement or variable that uses it is then refused as well.
    assert any("statement WebhookSecretRead" in f for f in findings)

    def generated(t: Template) -> None:
        res(t, "WebhookSecret")["GenerateSecretString"] = {}

    assert policy_secrets(broken(real, generated))[0] == (
        "WebhookSecret: a stack-created secret must not carry a value in the template"
    )


# --------------------------------------------------------------------------- functions
# The functions behind HTTP API routes (one per route), read from template.yaml.
ROUTE_FUNCTIONS = len({route.function_logical_id for route in http_routes(load_template())})


def test_api_function_timeout_of_29_seconds_or_more_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        t["Globals"]["Function"]["Timeout"] = 29

    findings = policy_functions(broken_sam(sam, breaker))
    # Every route function; the custom resource function (120 s, not behind API Gateway) is exempt.
    assert len(findings) == ROUTE_FUNCTIONS
    assert all("Timeout 29 must be a number < 29 s" in f for f in findings)


def test_reserved_concurrency_not_configurable_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        del t["Globals"]["Function"]["ReservedConcurrentExecutions"]

    findings = policy_functions(broken_sam(sam, breaker))
    assert len(findings) == ROUTE_FUNCTIONS
    assert all("ReservedConcurrentExecutions must be set from a Number parameter" in f for f in findings)


def test_reserved_concurrency_hard_coded_fails(real: Template) -> None:
    t = broken(real, lambda t: res(t, "ConnectStartFunction").update(ReservedConcurrentExecutions=5))
    assert policy_functions(t) == [
        "ConnectStartFunction: ReservedConcurrentExecutions must be set from a Number parameter"
        " (configurable)"
    ]


# --------------------------------------------------------------------------- throttling


def test_no_default_throttling_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        del res(t, "HttpApi")["DefaultRouteSettings"]

    findings = policy_throttling(broken_sam(sam, breaker))
    assert findings == [
        "HttpApiApiGatewayDefaultStage: DefaultRouteSettings.ThrottlingBurstLimit must be set (> 0)",
        "HttpApiApiGatewayDefaultStage: DefaultRouteSettings.ThrottlingRateLimit must be set (> 0)",
    ]


@pytest.mark.parametrize("route", ["GET /connect/start", "GET /connect/callback"])
def test_browser_route_without_its_throttle_fails(sam: Template, route: str) -> None:
    def breaker(t: Template) -> None:
        del res(t, "HttpApi")["RouteSettings"][route]

    findings = policy_throttling(broken_sam(sam, breaker))
    assert len(findings) == 2
    assert all(f"RouteSettings[{route!r}]" in f for f in findings)


def test_zero_rate_limit_fails(real: Template) -> None:
    def breaker(t: Template) -> None:
        res(t, "HttpApiApiGatewayDefaultStage")["RouteSettings"]["GET /connect/start"][
            "ThrottlingRateLimit"
        ] = 0

    assert policy_throttling(broken(real, breaker)) == [
        "HttpApiApiGatewayDefaultStage: RouteSettings['GET /connect/start'].ThrottlingRateLimit"
        " must be set (> 0)"
    ]


# --------------------------------------------------------------------------- least privilege (issue 9)
def _statements_of(sam: Template, function: str) -> list[dict[str, Any]]:
    return res(sam, function)["Policies"][0]["Statement"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("function", "statement", "finding"),
    [
        (  # the callback held DeleteItem and the unused reads on the sessions table
            "ConnectCallbackFunction",
            {
                "Effect": "Allow",
                "Action": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem"],
                "Resource": {"Fn::GetAtt": ["SessionsTable", "Arn"]},
            },
            "ConnectCallbackFunction: grants dynamodb:DeleteItem on SessionsTable, which its code"
            " does not use",
        ),
        (  # the start function held an unused GetItem
            "ConnectStartFunction",
            {
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "Resource": {"Fn::GetAtt": ["SessionsTable", "Arn"]},
            },
            "ConnectStartFunction: grants dynamodb:GetItem on SessionsTable, which its code does not use",
        ),
        (  # the delete function held an unused UpdateItem
            "DeleteGrantFunction",
            {
                "Effect": "Allow",
                "Action": "dynamodb:UpdateItem",
                "Resource": {"Fn::GetAtt": ["GrantsTable", "Arn"]},
            },
            "DeleteGrantFunction: grants dynamodb:UpdateItem on GrantsTable, which its code does not use",
        ),
        (
            "GetGrantFunction",
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Ref": "NylasSecretArn"},
            },
            "GetGrantFunction: grants secretsmanager:GetSecretValue on NylasSecretArn, which its code"
            " does not use",
        ),
    ],
)
def test_an_unused_action_fails(
    sam: Template, function: str, statement: dict[str, Any], finding: str
) -> None:
    t = broken_sam(sam, lambda t: _statements_of(t, function).append(statement))
    assert finding in static_gates.policy_least_privilege(t)


def test_a_missing_action_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        for statement in _statements_of(t, "RevokeSweeperFunction"):
            if statement.get("Sid") == "OutboxQuery":
                statement["Action"] = ["dynamodb:Scan"]
                statement["Resource"] = {"Fn::GetAtt": ["GrantsTable", "Arn"]}

    findings = static_gates.policy_least_privilege(broken_sam(sam, breaker))
    assert (
        "RevokeSweeperFunction: lacks dynamodb:Query on GrantsTable/index/revoke-due, which its code uses"
        in findings
    )
    assert (
        "RevokeSweeperFunction: grants dynamodb:Scan on GrantsTable, which its code does not use" in findings
    )


def test_an_undeclared_function_with_table_access_fails(sam: Template) -> None:
    def breaker(t: Template) -> None:
        extra = copy.deepcopy(t["Resources"]["GetGrantFunction"])
        extra["Properties"]["FunctionName"] = "extra"
        extra["Properties"].pop("Events", None)
        t["Resources"]["ExtraFunction"] = extra

    findings = static_gates.policy_least_privilege(broken_sam(sam, breaker))
    assert any(
        f.startswith("ExtraFunction: its DynamoDB/Secrets Manager permissions are not declared")
        for f in findings
    )
