"""The `Custom::NylasSetup` Lambda: crhelper answers CloudFormation on the ResponseURL (intercepted at
crhelper.utils.HTTPSConnection), SUCCESS or FAILED, and the Reason never holds a secret."""

from __future__ import annotations

import copy
import importlib.util
import json
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


def run(
    app: ModuleType, cfn: Responses, ev: dict[str, Any], context: Context | None = None
) -> dict[str, Any]:
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


def test_update_with_new_callback_drops_the_old_one(
    app: ModuleType, cfn: Responses, secrets: dict[str, Any], v3: FakeV3
) -> None:
    run(app, cfn, event("create", secrets))
    ev = event("update", secrets, CallbackUrl=OTHER)
    ev["OldResourceProperties"]["AzureTenant"] = TENANT_GUID
    body = run(app, cfn, ev)
    assert body["Status"] == "SUCCESS", body["Reason"]
    assert v3.urls() == [OTHER]


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
    app.lambda_handler(event("create", secrets), Context(remaining_ms=600))
    first = cfn.sent[0][3]
    assert first["Status"] == "FAILED"
    assert first["Reason"] == "Execution timed out"


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
    url = "https://api.example.com/nylas/webhooks"
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
    assert "webhook URL must use https" in bad["Reason"]
