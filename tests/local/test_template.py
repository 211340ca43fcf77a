"""template.yaml as the local stack reads it: loader, routes, tables (created in moto), environment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from local.aws import LocalAws, start_local_aws
from local.template import (
    CfnYamlLoader,
    Route,
    function_environment,
    http_routes,
    load_template,
    table_definitions,
)

EXPECTED_ROUTES = {
    ("POST", "/v1/sessions", "CreateSessionFunction", "functions/create_session/"),
    ("GET", "/connect/start", "ConnectStartFunction", "functions/connect_start/"),
    ("GET", "/connect/callback", "ConnectCallbackFunction", "functions/connect_callback/"),
    ("GET", "/v1/grants", "ListGrantsFunction", "functions/list_grants/"),
    ("GET", "/v1/grants/{user_id}", "GetGrantFunction", "functions/get_grant/"),
    ("DELETE", "/v1/grants/{user_id}", "DeleteGrantFunction", "functions/delete_grant/"),
    ("POST", "/v1/users/{user_id}/meetings", "CreateMeetingFunction", "functions/create_meeting/"),
    ("GET", "/v1/users/{user_id}/meetings/{meeting_id}", "GetMeetingFunction", "functions/get_meeting/"),
    (
        "PATCH",
        "/v1/users/{user_id}/meetings/{meeting_id}",
        "UpdateMeetingFunction",
        "functions/update_meeting/",
    ),
    (
        "DELETE",
        "/v1/users/{user_id}/meetings/{meeting_id}",
        "DeleteMeetingFunction",
        "functions/delete_meeting/",
    ),
    ("GET", "/nylas/webhooks", "NylasWebhooksFunction", "functions/nylas_webhooks/"),
    ("POST", "/nylas/webhooks", "NylasWebhooksFunction", "functions/nylas_webhooks/"),
    ("POST", "/v1/admin-consents", "CreateAdminConsentFunction", "functions/create_admin_consent/"),
    ("GET", "/connect/admin-consent", "AdminConsentStartFunction", "functions/admin_consent_start/"),
    (
        "GET",
        "/connect/admin-consent/callback",
        "AdminConsentCallbackFunction",
        "functions/admin_consent_callback/",
    ),
    ("GET", "/v1/tenants/{tenant_id}", "GetTenantFunction", "functions/get_tenant/"),
    ("GET", "/connect/v1/connect.js", "ConnectScriptFunction", "functions/connect_script/"),
    (
        "GET",
        "/connect/v1/sessions/{session_id}/status",
        "SessionStatusFunction",
        "functions/session_status/",
    ),
}

# docs/internals.md, "Environment of every function".
INTERNALS_ENV = {
    "NYLAS_API",
    "NYLAS_REGION",
    "NYLAS_BASE_URL",
    "AZURE_TENANT",
    "ALLOWED_RETURN_URLS",
    "SESSION_TTL_SECONDS",
    "PUBLIC_BASE_URL",
    "SESSIONS_TABLE",
    "GRANTS_TABLE",
    "NYLAS_SECRET_ARN",
    "AZURE_SECRET_ARN",
    "API_KEYS_SECRET_ARN",
    "NYLAS_SCOPES",
    "BETA_AUTH_EXPIRES_IN",
    "FLOW_TTL_SECONDS",
    "STACK_ID",
    "SECRETS_MAX_AGE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}

SECRET_ARNS = {
    "NylasSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:n-AbCdEf",
    "AzureSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf",
    "ApiKeysSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf",
}
WEBHOOK_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:w-AbCdEf"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def local_aws(template: dict[str, Any]) -> Iterator[LocalAws]:
    aws = start_local_aws(port=0, template=template)
    yield aws
    aws.stop()


def test_short_tags_become_long_form() -> None:
    import yaml

    text = """
    a: !Ref Thing
    b: !GetAtt Table.Arn
    c: !Sub "${AWS::Region}-x"
    d: !If [Cond, !Join [",", [x, y]], !Ref AWS::NoValue]
    e: !Equals [!Ref P, ""]
    f: !GetAtt [Table, StreamArn]
    """
    data = yaml.load(text, Loader=CfnYamlLoader)  # noqa: S506
    assert data["a"] == {"Ref": "Thing"}
    assert data["b"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert data["c"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert data["d"] == {"Fn::If": ["Cond", {"Fn::Join": [",", ["x", "y"]]}, {"Ref": "AWS::NoValue"}]}
    assert data["e"] == {"Fn::Equals": [{"Ref": "P"}, ""]}
    assert data["f"] == {"Fn::GetAtt": ["Table", "StreamArn"]}


def test_routes_are_one_function_each(template: dict[str, Any]) -> None:
    routes = http_routes(template)
    assert {(r.method, r.path, r.function_logical_id, r.code_uri) for r in routes} == EXPECTED_ROUTES
    assert len(routes) == len(EXPECTED_ROUTES)
    for route in routes:
        assert isinstance(route, Route)
        assert route.handler == "app.lambda_handler"
        assert route.timeout == 10
        assert route.memory_size == 1024
        assert route.route_key == f"{route.method} {route.path}"


def test_function_settings_and_environment_come_from_globals(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Timeout"] < 29
    assert set(globals_["Environment"]["Variables"]) >= INTERNALS_ENV
    for logical_id in {r.function_logical_id for r in http_routes(template)}:
        assert "Environment" not in template["Resources"][logical_id]["Properties"]


def test_table_definitions_follow_the_data_model(template: dict[str, Any]) -> None:
    tables = table_definitions(template)
    assert set(tables) == {"SessionsTable", "GrantsTable", "IdempotencyTable", "TenantsTable"}
    assert tables["TenantsTable"].key_schema() == [{"AttributeName": "tenant_id", "KeyType": "HASH"}]
    assert tables["TenantsTable"].ttl_attribute is None
    sessions, grants = tables["SessionsTable"], tables["GrantsTable"]
    idempotency = tables["IdempotencyTable"]  # Powertools Idempotency's default attribute names
    assert idempotency.key_schema() == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert idempotency.ttl_attribute == "expiration"
    assert sessions.key_schema() == [{"AttributeName": "session_id", "KeyType": "HASH"}]
    assert sessions.ttl_attribute == "ttl"
    assert grants.key_schema() == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert grants.ttl_attribute == "ttl"  # the webhook's dedupe markers only
    assert grants.create_table_kwargs["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    # Flows that end (Connect Failed, Tenant Admin Consented) come from the sessions table's stream.
    assert sessions.create_table_kwargs["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    for table in tables.values():
        assert table.create_table_kwargs["BillingMode"] == "PAY_PER_REQUEST"


def test_tables_in_moto_match_the_template(template: dict[str, Any], local_aws: LocalAws) -> None:
    dynamodb = local_aws.client("dynamodb")
    for logical_id, definition in table_definitions(template).items():
        name = local_aws.table_names[logical_id]
        described = dynamodb.describe_table(TableName=name)["Table"]
        resource = template["Resources"][logical_id]["Properties"]
        assert described["KeySchema"] == resource["KeySchema"]
        assert described["AttributeDefinitions"] == resource["AttributeDefinitions"]
        assert described["BillingModeSummary"]["BillingMode"] == resource["BillingMode"]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if definition.ttl_attribute:
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": definition.ttl_attribute}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"


def test_secrets_are_seeded_with_local_values(local_aws: LocalAws) -> None:
    import json

    secrets = local_aws.client("secretsmanager")

    def value(parameter: str) -> dict[str, Any]:
        return dict(
            json.loads(secrets.get_secret_value(SecretId=local_aws.secret_arns[parameter])["SecretString"])
        )

    assert value("ApiKeysSecretArn") == {"api_keys": ["local-dev-api-key"]}
    assert value("NylasSecretArn")["client_id"] == "local-nylas-client-id"
    assert set(value("AzureSecretArn")) == {"client_id", "client_secret"}


APP_WEBHOOK_RESOURCES = {
    "AppWebhookSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-webhook-AbCdEf",
    "AppWebhookQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
    "AppWebhookDeadLetters": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq.fifo",
    "ListingCursorSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cursor-AbCdEf",
}


def test_function_environment_resolves_parameters_and_resources(template: dict[str, Any]) -> None:
    env = function_environment(
        template,
        {
            "NylasApi": "beta",
            "AllowedReturnUrls": "http://127.0.0.1:8000/return,https://app.example.com/done",
            "PublicBaseUrl": "http://127.0.0.1:3000",
            "NylasBaseUrl": "http://127.0.0.1:4010",
            **SECRET_ARNS,
        },
        {
            "SessionsTable": "sessions-local",
            "GrantsTable": "grants-local",
            "IdempotencyTable": "idem-local",
            "TenantsTable": "tenants-local",
            "WebhookSecret": WEBHOOK_ARN,
            "LifecycleEventBus": "teams-connect-local-lifecycle",
            "GrantsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/grants-local/stream/x",
            "SessionsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/sessions/stream/x",
            **APP_WEBHOOK_RESOURCES,
        },
    )
    assert set(env) >= INTERNALS_ENV
    assert env["NYLAS_API"] == "beta"
    assert env["NYLAS_REGION"] == "us"
    assert env["AZURE_TENANT"] == "common"
    assert env["ALLOWED_RETURN_URLS"] == "http://127.0.0.1:8000/return,https://app.example.com/done"
    assert env["SESSION_TTL_SECONDS"] == "600"
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:3000"
    assert env["SESSIONS_TABLE"] == "sessions-local"
    assert env["GRANTS_TABLE"] == "grants-local"
    assert env["TENANTS_TABLE"] == "tenants-local"
    assert env["MICROSOFT_LOGIN_URL"] == "https://login.microsoftonline.com"
    assert env["ADMIN_CONSENT_TTL_SECONDS"] == "604800"
    assert env["NYLAS_SECRET_ARN"] == SECRET_ARNS["NylasSecretArn"]
    assert env["API_KEYS_SECRET_ARN"] == SECRET_ARNS["ApiKeysSecretArn"]
    assert env["WEBHOOK_SECRET_ARN"] == WEBHOOK_ARN
    # EventBusName left empty: the bus the stack owns (security review 3, G6).
    assert env["EVENT_BUS_NAME"] == "teams-connect-local-lifecycle"
    assert env["APP_WEBHOOK_URL"] == ""  # no AppWebhookUrl: EventBridge only
    assert env["APP_WEBHOOK_SECRET_ARN"] == APP_WEBHOOK_RESOURCES["AppWebhookSecret"]
    assert env["APP_WEBHOOK_QUEUE_URL"] == APP_WEBHOOK_RESOURCES["AppWebhookQueue"]
    assert env["APP_WEBHOOK_DEAD_LETTER_URL"] == APP_WEBHOOK_RESOURCES["AppWebhookDeadLetters"]
    assert env["LISTING_CURSOR_SECRET_ARN"] == APP_WEBHOOK_RESOURCES["ListingCursorSecret"]
    assert all(isinstance(v, str) for v in env.values())


def test_a_named_event_bus_replaces_the_stacks_own(template: dict[str, Any]) -> None:
    resolved = {
        "SessionsTable": "s",
        "GrantsTable": "g",
        "IdempotencyTable": "i",
        "TenantsTable": "t",
        "WebhookSecret": WEBHOOK_ARN,
        "LifecycleEventBus": "own-bus",
        "GrantsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/g/stream/x",
        "SessionsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/s/stream/x",
        **APP_WEBHOOK_RESOURCES,
    }
    parameters = {
        "AllowedReturnUrls": "https://app.example.com/done",
        "PublicBaseUrl": "https://h",
        **SECRET_ARNS,
    }
    env = function_environment(template, {**parameters, "EventBusName": "default"}, resolved)
    assert env["EVENT_BUS_NAME"] == "default"
    resources = template["Resources"]
    assert resources["LifecycleEventBus"]["Condition"] == "OwnEventBus"
    assert resources["LifecycleEventBusPolicy"]["Condition"] == "OwnEventBus"
    assert resources["LifecycleEventBusPolicy"]["Properties"]["Statement"]["Effect"] == "Deny"


def test_default_public_base_url_is_the_execute_api_url(template: dict[str, Any]) -> None:
    env = function_environment(
        template,
        {"AllowedReturnUrls": "https://app.example.com/done", **SECRET_ARNS},
        {
            "SessionsTable": "s",
            "GrantsTable": "g",
            "IdempotencyTable": "i",
            "TenantsTable": "t",
            "HttpApi": "abc123",
            "WebhookSecret": WEBHOOK_ARN,
            "LifecycleEventBus": "b",
            "GrantsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/g/stream/x",
            "SessionsTable.StreamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/s/stream/x",
            **APP_WEBHOOK_RESOURCES,
        },
    )
    assert env["PUBLIC_BASE_URL"] == "https://abc123.execute-api.us-east-1.amazonaws.com"


def test_function_environment_refuses_what_it_cannot_resolve(template: dict[str, Any]) -> None:
    with pytest.raises(KeyError, match="SessionsTable"):
        function_environment(
            template, {"AllowedReturnUrls": "x", "PublicBaseUrl": "http://h", **SECRET_ARNS}, {}
        )
    with pytest.raises(ValueError, match="NylasApi"):
        function_environment(template, {"NylasApi": "v2"}, {})
    with pytest.raises(ValueError, match="unknown"):
        function_environment(template, {"NoSuchParameter": "x"}, {})


def test_the_nylas_setup_waits_for_the_webhook_route(template: dict[str, Any]) -> None:
    """Nylas runs the challenge during POST /v3/webhooks: the route must serve before the setup runs."""
    from local.lint_template import translate

    setup = template["Resources"]["NylasSetup"]
    translated = translate(template)["Resources"]
    for dependency in setup["DependsOn"]:
        assert dependency in translated, dependency
    permission = translated["NylasWebhooksFunctionNylasWebhooksChallengePermission"]["Properties"]
    assert permission["FunctionName"] == {
        "Ref": "NylasWebhooksFunctionAliaslive"
    }  # the alias the API invokes
    assert "HttpApiApiGatewayDefaultStage" in setup["DependsOn"]
    assert setup["Properties"]["WebhookSecretArn"] == {"Ref": "WebhookSecret"}
    stream = translated["GrantEventsFunctionGrantsStream"]["Properties"]
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["EventSourceArn"] == {"Fn::GetAtt": ["GrantsTable", "StreamArn"]}
    assert template["Resources"]["GrantsTable"]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    }
