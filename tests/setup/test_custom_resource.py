"""The `Custom::NylasSetup` Lambda: crhelper answers CloudFormation on the ResponseURL (intercepted at
crhelper.utils.HTTPSConnection), SUCCESS or FAILED, and the Reason never holds a secret."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import crhelper.utils
import httpx
import pytest
import respx

from .fakes import (
    AZURE_CLIENT_SECRET,
    CALLBACK,
    NYLAS_API_KEY,
    TENANT_GUID,
    FakeBeta,
    FakeV3,
    assert_no_secret,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "nylas_setup"
OTHER = "https://other.example.com/connect/callback"


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_REGION", "us-east-1")  # crhelper creates its (unused) boto3 clients at import
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        spec = importlib.util.spec_from_file_location(
            "nylas_setup_app", ROOT / "functions/nylas_setup/app.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["nylas_setup_app"] = module
        spec.loader.exec_module(module)
        yield module
        sys.modules.pop("nylas_setup_app", None)


class Responses:
    """What crhelper PUT to the ResponseURL."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []

    def connection(self, host: str, context: object = None) -> Responses._Conn:
        return Responses._Conn(self, host)

    class _Conn:
        def __init__(self, owner: Responses, host: str) -> None:
            self.owner, self.host = owner, host

        def request(self, method: str, url: str, body: str, headers: dict[str, str]) -> None:
            self.owner.sent.append((method, self.host, url, json.loads(body)))

        def getresponse(self) -> Any:
            return type("R", (), {"reason": "OK", "status": 200})()

    @property
    def last(self) -> dict[str, Any]:
        assert self.sent, "no response was sent to CloudFormation"
        return self.sent[-1][3]


@pytest.fixture
def cfn(monkeypatch: pytest.MonkeyPatch) -> Responses:
    responses = Responses()
    monkeypatch.setattr(crhelper.utils, "HTTPSConnection", responses.connection)
    return responses


class Context:
    function_name = "teams-connect-NylasSetupFunction"
    aws_request_id = "lambda-req-1"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def event(name: str, secrets: dict[str, Any], **props: Any) -> dict[str, Any]:
    ev: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    for key in ("ResourceProperties", "OldResourceProperties"):
        if key in ev:
            ev[key]["NylasSecretArn"] = secrets["nylas"]
            ev[key]["AzureSecretArn"] = secrets["azure"]
            ev[key]["CallbackUrl"] = CALLBACK
    ev["ResourceProperties"].update(props)
    return ev


_env: list[pytest.MonkeyPatch] = []


@pytest.fixture(autouse=True)
def _function_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("STACK_ID", raising=False)
    _env.append(monkeypatch)
    yield
    _env.clear()


def configure_from(ev: dict[str, Any]) -> None:
    """The function's environment as the template sets it: from the same parameters as the resource's
    properties (so a genuine CloudFormation request always matches it)."""
    props = ev.get("OldResourceProperties") if ev["RequestType"] == "Delete" else None
    props = props or ev["ResourceProperties"]
    mp = _env[-1]
    mp.setenv("NYLAS_API", props.get("NylasApi") or "v3")
    mp.setenv("NYLAS_REGION", props.get("NylasRegion") or "us")
    mp.setenv("NYLAS_BASE_URL", props.get("NylasBaseUrl") or "")
    mp.setenv("NYLAS_SECRET_ARN", props["NylasSecretArn"])
    mp.setenv("AZURE_SECRET_ARN", props["AzureSecretArn"])
    mp.setenv("PUBLIC_BASE_URL", props["CallbackUrl"].removesuffix("/connect/callback"))
    mp.setenv("STACK_ID", ev["StackId"])
    mp.setenv("WEBHOOK_SECRET_ARN", props.get("WebhookSecretArn") or "")
    # Review 3, G2: the tenant, the scopes and the Delete policy are the template's parameters too.
    tenant, scopes, on_delete = props.get("AzureTenant"), props.get("Scopes"), props.get("OnDelete")
    mp.setenv("AZURE_TENANT", tenant if isinstance(tenant, str) and tenant else "common")
    mp.setenv("NYLAS_SCOPES", scopes if isinstance(scopes, str) else "")
    mp.setenv("NYLAS_ON_DELETE", on_delete if on_delete in ("Retain", "Remove") else "Retain")


def run(
    app: ModuleType,
    cfn: Responses,
    ev: dict[str, Any],
    context: Context | None = None,
    *,
    configure: bool = True,
) -> dict[str, Any]:
    # A Delete keeps the environment of the stack's last Create/Update (a replaced target's Delete
    # comes after the function was reconfigured), or that of the event when it is the first call.
    if configure and (ev["RequestType"] != "Delete" or "STACK_ID" not in os.environ):
        configure_from(ev)
    app.lambda_handler(copy.deepcopy(ev), context or Context())
    body = cfn.last
    assert cfn.sent[-1][0] == "PUT"
    assert cfn.sent[-1][1] == "cloudformation-custom-resource-response-useast1.s3.amazonaws.com"
    assert body["RequestId"] == ev["RequestId"]
    assert body["StackId"] == ev["StackId"]
    assert body["LogicalResourceId"] == "NylasSetup"
    assert_no_secret(json.dumps(body))
    return body


def test_sample_events_are_cloudformation_requests() -> None:
    for name, kind in (("create", "Create"), ("update", "Update"), ("delete", "Delete")):
        ev = json.loads((EVENTS / f"{name}.json").read_text())
        assert ev["RequestType"] == kind
        assert ev["ResourceType"] == "Custom::NylasSetup"
        assert ev["ResponseURL"].startswith("https://")
        assert {"StackId", "RequestId", "LogicalResourceId", "ServiceToken", "ResourceProperties"} <= set(ev)
        assert ("PhysicalResourceId" in ev) is (kind != "Create")
        assert ("OldResourceProperties" in ev) is (kind == "Update")


def test_create_update_delete(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    body = run(app, cfn, event("create", secrets))
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == "nylas-v3-microsoft-us"
    assert body["Data"] == {"Flavour": "v3", "BaseUrl": "https://api.us.nylas.com", "Changed": "true"}
    assert v3.connector is not None
    assert v3.connector["settings"]["tenant"] == "common"
    assert v3.secret_sent == AZURE_CLIENT_SECRET
    assert v3.urls() == [CALLBACK]

    body = run(app, cfn, event("update", secrets))
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == "nylas-v3-microsoft-us"
    assert v3.connector["settings"]["tenant"] == TENANT_GUID
    assert v3.routes["patch_connector"].call_count == 1
    assert v3.routes["post_uri"].call_count == 1

    body = run(app, cfn, event("delete", secrets))
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == "nylas-v3-microsoft-us"
    assert v3.urls() == []
    assert v3.connector is not None  # Retain: the connector stays
    assert "connector microsoft: kept" in caplog.text
    assert_no_secret(caplog.text)


def test_update_always_resends_the_secret(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    run(app, cfn, event("create", secrets))
    ev = event("update", secrets, AzureTenant="common", SecretVersion="2")
    assert run(app, cfn, ev)["Status"] == "SUCCESS"
    assert v3.routes["patch_connector"].call_count == 1
    assert v3.body_of("patch_connector")["settings"]["client_secret"] == AZURE_CLIENT_SECRET


def test_create_failure_reason_has_no_secret(
    app: ModuleType,
    cfn: Responses,
    secrets: dict[str, Any],
    router: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router.get("https://api.us.nylas.com/v3/connectors/microsoft").respond(
        401,
        json={
            "request_id": "req-401",
            "error": {"type": "api.authentication_error", "message": NYLAS_API_KEY},
        },
    )
    body = run(app, cfn, event("create", secrets))
    assert body["Status"] == "FAILED"
    assert "HTTP 401 api.authentication_error" in body["Reason"]
    assert "req-401" in body["Reason"]
    assert not body["PhysicalResourceId"].startswith("nylas-")  # crhelper's generated id
    assert_no_secret(caplog.text)

    # CloudFormation's rollback then deletes that id: nothing of ours to undo, no Nylas call
    calls = len(router.calls)
    ev = event("delete", secrets)
    ev["PhysicalResourceId"] = body["PhysicalResourceId"]
    assert run(app, cfn, ev)["Status"] == "SUCCESS"
    assert len(router.calls) == calls


def test_bad_tenant_fails_before_any_call(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], router: respx.MockRouter
) -> None:
    body = run(app, cfn, event("create", secrets, AzureTenant="contoso.onmicrosoft.com"))
    assert body["Status"] == "FAILED"
    assert "tenant 'contoso.onmicrosoft.com' is not accepted" in body["Reason"]
    assert not router.calls


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"OnDelete": "Destroy"}, "OnDelete must be Retain or Remove"),
        ({"NylasApi": "v2"}, "flavour must be one of v3, beta"),
        ({"NylasRegion": "ap"}, "region must be one of us, eu"),
        ({"ExpiresIn": "soon"}, "ExpiresIn"),
        ({"Tenant": "common"}, "unknown properties: Tenant"),
        ({"CallbackUrl": "http://example.com/cb"}, "callback URL must use https"),
        ({"Scopes": 5}, "Scopes"),
    ],
)
def test_invalid_properties(
    app: ModuleType,
    cfn: Responses,
    secrets: dict[str, Any],
    router: respx.MockRouter,
    props: dict[str, Any],
    reason: str,
) -> None:
    ev = event("create", secrets)
    ev["ResourceProperties"].update(props)
    body = run(app, cfn, ev)
    assert body["Status"] == "FAILED"
    assert reason in body["Reason"]
    assert not router.calls


def test_missing_secret(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], router: respx.MockRouter
) -> None:
    ev = event("create", secrets)
    ev["ResourceProperties"]["AzureSecretArn"] = secrets["azure"] + "x"
    body = run(app, cfn, ev)
    assert body["Status"] == "FAILED"
    assert "could not read the Azure secret" in body["Reason"]
    assert "ResourceNotFoundException" in body["Reason"]
    assert not router.calls


def test_unexpected_error_reports_only_its_type(
    app: ModuleType,
    cfn: Responses,
    secrets: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise ValueError(f"leaky {AZURE_CLIENT_SECRET} {NYLAS_API_KEY}")

    monkeypatch.setattr(app, "ensure_nylas_side", boom)
    body = run(app, cfn, event("create", secrets))
    assert body["Status"] == "FAILED"
    assert body["Reason"] == "unexpected ValueError (details in the function's log)"
    assert "leaky ***" in caplog.text  # logged for the operator, redacted
    assert_no_secret(caplog.text)


def test_flavour_change_is_a_replacement(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, beta: FakeBeta
) -> None:
    # v3 first
    created = run(app, cfn, event("create", secrets))
    assert created["PhysicalResourceId"] == "nylas-v3-microsoft-us"
    # switch to beta: new physical id → CloudFormation will Delete the old one
    ev = event("update", secrets, NylasApi="beta", AzureTenant="organizations", Scopes="User.Read, openid")
    ev["OldResourceProperties"] = copy.deepcopy(event("create", secrets)["ResourceProperties"])
    body = run(app, cfn, ev)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"] == "nylas-beta-microsoft-us"
    assert beta.integration is not None
    assert beta.integration["settings"]["tenant"] == "organizations"
    assert beta.integration["scope"] == ["User.Read", "openid"]
    assert v3.urls() == [CALLBACK]  # not touched by the update
    # the Delete of the old id carries the old (v3) properties
    old = event("delete", secrets)
    old["ResourceProperties"] = ev["OldResourceProperties"]
    assert run(app, cfn, old)["Status"] == "SUCCESS"
    assert v3.urls() == []
    assert beta.integration["redirect_uris"] == [CALLBACK]


def test_base_url_override(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], router: respx.MockRouter
) -> None:
    local = FakeV3(router, base="http://127.0.0.1:4010")
    body = run(app, cfn, event("create", secrets, NylasBaseUrl="http://127.0.0.1:4010/", NylasRegion="eu"))
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert body["PhysicalResourceId"].startswith("nylas-v3-microsoft-custom-")
    assert body["Data"]["BaseUrl"] == "http://127.0.0.1:4010"
    assert local.urls() == [CALLBACK]


def _with_webhook_secret(
    app: ModuleType, secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ev: dict[str, Any]
) -> dict[str, Any]:
    """`ev` as the template sends it: with the webhook properties (the webhook side itself faked)."""

    def nothing(spec: Any, *args: Any) -> Any:
        return app.SetupReport("v3", spec.base_url, False, ())

    monkeypatch.setattr(app, "ensure_webhook_side", nothing)
    monkeypatch.setattr(app, "teardown_webhook_side", nothing)
    if "arn" not in secrets:
        name = f"wh-{time.monotonic_ns()}"
        secrets["arn"] = secrets["client"].create_secret(Name=name, SecretString="{}")["ARN"]
    for key in ("ResourceProperties", "OldResourceProperties"):
        if key in ev:
            base = ev[key]["CallbackUrl"].removesuffix("/connect/callback")
            ev[key].update({"WebhookUrl": base + "/nylas/webhooks", "WebhookSecretArn": secrets["arn"]})
    return ev


def test_update_with_new_callback_drops_the_old_one(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app, cfn, _with_webhook_secret(app, secrets, monkeypatch, event("create", secrets)))
    ev = _with_webhook_secret(app, secrets, monkeypatch, event("update", secrets, CallbackUrl=OTHER))
    ev["OldResourceProperties"]["AzureTenant"] = TENANT_GUID
    body = run(app, cfn, ev)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert v3.urls() == [OTHER]
    stored = json.loads(secrets["client"].get_secret_value(SecretId=secrets["arn"])["SecretString"])
    assert stored["registered_callback_urls"] == [CALLBACK, OTHER]


# --- security review 3, G2: forged events cannot widen, unregister or delete -----------------------


def test_g2_a_forged_update_cannot_widen_the_tenant_or_the_scopes(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    assert run(app, cfn, event("create", secrets, AzureTenant=TENANT_GUID))["Status"] == "SUCCESS"
    wide = "Mail.ReadWrite,Mail.Send,Files.ReadWrite.All,offline_access"
    forged = ({"AzureTenant": "common"}, {"Scopes": wide}, {"IntegrationName": "x"}, {"ExpiresIn": "90000"})
    for props in forged:
        ev = event("update", secrets, **{"AzureTenant": TENANT_GUID, **props})
        body = run(app, cfn, ev, configure=False)  # the environment stays the stack's
        assert body["Status"] == "FAILED"
        assert next(iter(props)) in body["Reason"]
    assert v3.connector is not None
    assert v3.connector["settings"]["tenant"] == TENANT_GUID
    assert v3.routes["patch_connector"].call_count == 0


def test_g2_a_forged_update_cannot_unregister_another_deployments_callback(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = "https://theirs.example.com/connect/callback"
    v3.seed(uris=(theirs,))
    run(app, cfn, _with_webhook_secret(app, secrets, monkeypatch, event("create", secrets)))
    ev = _with_webhook_secret(app, secrets, monkeypatch, event("update", secrets, AzureTenant="common"))
    ev["OldResourceProperties"]["CallbackUrl"] = theirs
    ev["OldResourceProperties"].pop("WebhookUrl")
    ev["OldResourceProperties"].pop("WebhookSecretArn")
    body = run(app, cfn, ev, configure=False)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert sorted(v3.urls()) == sorted([theirs, CALLBACK])  # theirs stays registered


def test_g2_a_forged_delete_cannot_choose_remove(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    assert run(app, cfn, event("create", secrets))["Status"] == "SUCCESS"  # NYLAS_ON_DELETE = Retain
    body = run(app, cfn, event("delete", secrets, OnDelete="Remove", AzureTenant="common"), configure=False)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert v3.connector is not None  # the stack says Retain: the connector (and every grant) stays


def test_g2_a_forged_delete_naming_a_foreign_callback_unregisters_nothing(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    theirs = "https://theirs.example.com/connect/callback"
    v3.seed(uris=(theirs,))
    assert run(app, cfn, event("create", secrets))["Status"] == "SUCCESS"
    ev = event("delete", secrets, AzureTenant="common")
    ev["ResourceProperties"]["CallbackUrl"] = theirs
    body = run(app, cfn, ev, configure=False)
    assert body["Status"] == "SUCCESS", body["Reason"]  # nothing undone, CloudFormation not blocked
    assert sorted(v3.urls()) == sorted([theirs, CALLBACK])


def test_delete_retain_is_best_effort(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, router: respx.MockRouter
) -> None:
    v3.routes["get_uris"].mock(side_effect=httpx.ConnectError("down"))
    body = run(app, cfn, event("delete", secrets))
    assert body["Status"] == "SUCCESS"
    assert v3.routes["get_uris"].call_count == 3


def test_delete_remove_reports_failure(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    v3.routes["get_uris"].mock(side_effect=httpx.ConnectError("down"))
    body = run(app, cfn, event("delete", secrets, OnDelete="Remove"))
    assert body["Status"] == "FAILED"
    assert body["Reason"] == (
        "Nylas GET /v3/applications/redirect-uris: could not reach https://api.us.nylas.com (ConnectError)"
    )


def test_delete_remove_deletes_connector(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    v3.seed(uris=(CALLBACK,))
    body = run(app, cfn, event("delete", secrets, OnDelete="Remove"))
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert v3.connector is None
    assert v3.urls() == []


def test_init_failure_still_answers(app: ModuleType, cfn: Responses, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.helper, "_init_failed", ImportError("No module named 'teams_connect'"))
    ev = json.loads((EVENTS / "create.json").read_text())
    app.lambda_handler(ev, Context())
    assert cfn.last["Status"] == "FAILED"
    assert cfn.last["Reason"] == "No module named 'teams_connect'"


def test_timeout_still_answers(app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.3)
        return httpx.Response(404, json={"request_id": "r", "error": {"type": "not_found", "message": "-"}})

    v3.routes["get_connector"].mock(side_effect=slow)
    ev = event("create", secrets)
    configure_from(ev)
    app.lambda_handler(ev, Context(remaining_ms=600))
    first = cfn.sent[0][3]
    assert first["Status"] == "FAILED"
    assert first["Reason"] == "Execution timed out"


# --------------------------------------------------------------------------- confused deputy (F5)
ATTACKER = "https://attacker.example"


@pytest.mark.parametrize(
    ("forged", "named"),
    [
        ({"NylasBaseUrl": ATTACKER}, "NylasBaseUrl"),
        ({"NylasApi": "beta"}, "NylasApi"),
        ({"NylasRegion": "eu"}, "NylasRegion"),
        (
            {"NylasSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf"},
            "NylasSecretArn",
        ),
        ({"CallbackUrl": "https://attacker.example/connect/callback"}, "CallbackUrl"),
    ],
)
@pytest.mark.parametrize("request_type", ["create", "update"])
def test_a_forged_event_naming_another_target_is_refused_before_any_secret_is_read(
    app: ModuleType,
    cfn: Responses,
    secrets: dict[str, Any],
    router: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
    forged: dict[str, str],
    named: str,
    request_type: str,
) -> None:
    """Before: the function took the base URL and the secret ARNs from the event, read both secrets
    with its own role and sent them to that host. Now its own environment decides."""
    configure_from(event("create", secrets))  # what the template configured
    loads: list[object] = []

    def load_credentials(*args: object) -> None:
        loads.append(args)
        pytest.fail("a secret was read")

    monkeypatch.setattr(app, "load_credentials", load_credentials)
    attacker = router.route(host="attacker.example").respond(200, json={})
    body = run(app, cfn, event(request_type, secrets, **forged), configure=False)
    assert body["Status"] == "FAILED"
    assert named in body["Reason"]
    assert loads == []
    assert attacker.call_count == 0
    assert len(router.calls) == 0


def test_a_forged_delete_never_sends_the_secrets_to_another_host(
    app: ModuleType,
    cfn: Responses,
    secrets: dict[str, Any],
    router: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_from(event("create", secrets))
    attacker = router.route(host="attacker.example").respond(200, json={})
    ev = event("delete", secrets, NylasBaseUrl=ATTACKER, OnDelete="Remove")
    ev["PhysicalResourceId"] = "nylas-v3-microsoft-us"
    body = run(app, cfn, ev, configure=False)
    assert body["Status"] == "SUCCESS"  # nothing of ours was undone, and nothing else either
    assert attacker.call_count == 0
    assert len(router.calls) == 0


def test_an_event_from_another_stack_is_refused(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], router: respx.MockRouter
) -> None:
    configure_from(event("create", secrets))
    ev = event("create", secrets)
    ev["StackId"] = (
        "arn:aws:cloudformation:us-east-1:123456789012:stack/other/5b5f6a40-9c5e-11ef-8d1a-0a1b2c3d4e5f"
    )
    body = run(app, cfn, ev, configure=False)
    assert body["Status"] == "FAILED"
    assert "stack" in body["Reason"]
    assert len(router.calls) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/cfn?X-Amz-Signature=x",
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com.attacker.example/x?X-Amz-Signature=x",
        "https://user@cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=x",
        "http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=x",
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:8443/x?X-Amz-Signature=x",
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x",  # not presigned
        None,
    ],
)
def test_a_forged_response_url_gets_no_answer_and_nothing_is_done(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], router: respx.MockRouter, url: str | None
) -> None:
    ev = event("create", secrets)
    configure_from(ev)
    ev["ResponseURL"] = url
    app.lambda_handler(ev, Context())
    assert cfn.sent == []  # crhelper PUT nothing anywhere
    assert len(router.calls) == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/a%7Cb?X-Amz-Signature=x",
        "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/a?Signature=x",
        "https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/a?Signature=x",
    ],
)
def test_cloudformation_response_urls_are_accepted(app: ModuleType, url: str) -> None:
    assert app.is_cloudformation_response_url(url)


def test_v3_with_webhook_properties_sets_up_the_webhook_after_the_connector(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = secrets["client"].create_secret(Name=f"wh-{time.monotonic_ns()}", SecretString="{}")["ARN"]
    calls: list[tuple[str, Any, Any]] = []

    def ensure(spec: Any, credentials: Any, webhook: Any, store: Any) -> Any:
        assert v3.connector is not None  # the connector first
        calls.append(("ensure", webhook, store.read(webhook.secret_arn)))
        return app.SetupReport("v3", spec.base_url, False, ())

    def teardown(spec: Any, credentials: Any, url: str) -> Any:
        calls.append(("teardown", url, None))
        return app.SetupReport("v3", spec.base_url, False, ())

    monkeypatch.setattr(app, "ensure_webhook_side", ensure)
    monkeypatch.setattr(app, "teardown_webhook_side", teardown)
    url = CALLBACK.removesuffix("/connect/callback") + "/nylas/webhooks"
    props = {"WebhookUrl": url, "WebhookSecretArn": arn}
    assert run(app, cfn, event("create", secrets, **props))["Status"] == "SUCCESS"
    assert calls == [("ensure", app.WebhookSpec(url=url, secret_arn=arn), {})]
    assert run(app, cfn, event("delete", secrets, **props))["Status"] == "SUCCESS"
    assert calls[-1] == ("teardown", url, None)
    calls.clear()
    assert run(app, cfn, event("create", secrets))["Status"] == "SUCCESS"  # no webhook properties
    assert calls == []
    bad = run(
        app, cfn, event("create", secrets, WebhookUrl="http://evil.example.com/x", WebhookSecretArn=arn)
    )
    assert bad["Status"] == "FAILED"
    assert "WebhookUrl" in bad["Reason"]  # not the configured <PUBLIC_BASE_URL>/nylas/webhooks


def test_a_forged_webhook_target_is_refused_before_any_secret_is_read(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Confused deputy: an invoker must not have Nylas send grant notifications to another URL, nor
    have the webhook secret written into another secret."""
    arn = secrets["client"].create_secret(Name=f"wh-{time.monotonic_ns()}", SecretString="{}")["ARN"]
    other = secrets["client"].create_secret(Name=f"other-{time.monotonic_ns()}", SecretString="{}")["ARN"]
    url = CALLBACK.removesuffix("/connect/callback") + "/nylas/webhooks"
    configure_from(event("create", secrets, WebhookUrl=url, WebhookSecretArn=arn))
    monkeypatch.setattr(app, "ensure_webhook_side", lambda *a: pytest.fail("webhook set up"))
    for forged in (
        {"WebhookUrl": "https://attacker.example/nylas/webhooks", "WebhookSecretArn": arn},
        {"WebhookUrl": url, "WebhookSecretArn": other},
    ):
        body = run(app, cfn, event("create", secrets, **forged), configure=False)
        assert body["Status"] == "FAILED"
        assert next(k for k in forged if forged[k] not in (url, arn)) in body["Reason"]
