"""The admin-consent use case (domain/admin_consent) on moto, with Microsoft answered by an httpx mock
transport: one-time links, browser binding, tenant checks, the client-credentials proof, and the
Microsoft adapter's retries, deadline and answers. The routes over HTTP: tests/integration,
tests/adversarial and tests/faults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from teams_connect.adapters.microsoft import AzureApp, MicrosoftIdentity
from teams_connect.adapters.store.tenants import TenantStore
from teams_connect.config import Settings
from teams_connect.domain.admin_consent import AdminConsentFlow, tenant_json
from teams_connect.errors import ConnectError, InvalidRequest, ServerError, UpstreamUnavailable

from .conftest import PUBLIC, SESSIONS, Aws, Clock, log_text
from .test_least_privilege import Recorder, declared

TENANTS = "tc-tenants"
LOGIN = "https://login.microsoftonline.com"
TENANT = "0b1f3c9e-7a2d-4c55-9f0e-2b8a6d4e1c77"
OTHER = "7d3a9f1e-1c2b-4e5f-8a9b-0c1d2e3f4a5b"
APP = AzureApp(client_id="azure-app-id", client_secret="azure-secret")
RETURN_TO = "https://app.example.com/integrations/teams/admin"


@dataclass
class Microsoft:
    """Answers per path; records every request."""

    answers: dict[str, list[httpx.Response]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.answers.get(request.url.path)
        if not queue:
            raise AssertionError(f"unexpected call {request.method} {request.url}")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def on(self, path: str, *responses: httpx.Response) -> None:
        self.answers[path] = list(responses)


def discovery(tenant_id: str) -> httpx.Response:
    return httpx.Response(200, json={"issuer": f"{LOGIN}/{tenant_id}/v2.0", "token_endpoint": "x"})


def token_ok() -> httpx.Response:
    return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t0k3n"})


def not_present() -> httpx.Response:
    return httpx.Response(
        400,
        json={
            "error": "unauthorized_client",
            "error_description": "AADSTS700016: …",
            "error_codes": [700016],
        },
    )


@dataclass
class Env:
    flow: AdminConsentFlow
    microsoft: Microsoft
    clock: Clock
    aws: Aws
    sleeps: list[float]


@pytest.fixture
def env(aws: Aws) -> Env:
    aws.client.create_table(
        TableName=TENANTS,
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "tenant_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    settings = Settings.from_env(aws.env(TENANTS_TABLE=TENANTS, ADMIN_CONSENT_TTL_SECONDS="3600"))
    clock = Clock()
    ms = Microsoft()
    sleeps: list[float] = []
    identity = MicrosoftIdentity(
        LOGIN, client=httpx.Client(transport=httpx.MockTransport(ms.handler)), sleep=sleeps.append
    )
    flow = AdminConsentFlow(
        settings, TenantStore(TENANTS, SESSIONS, aws.client), identity, app=lambda: APP, clock=clock
    )
    return Env(flow, ms, clock, aws, sleeps)


def follow(env: Env, *, tenant: str | None = None) -> tuple[str, dict[str, str], list[str]]:
    """A link made and followed: (consent id, Microsoft's query, the browser's cookies)."""
    body: dict[str, Any] = {"return_to": RETURN_TO}
    if tenant is not None:
        body["tenant"] = tenant
    created = env.flow.create(body)
    started = env.flow.start(created.consent_id)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.location).query).items()}
    return created.consent_id, query, [f"{started.cookie.name}={started.cookie.value}"]


def status_of(env: Env, consent_id: str) -> str:
    item = env.aws.client.get_item(TableName=SESSIONS, Key={"session_id": {"S": consent_id}})["Item"]
    return str(item["status"]["S"])


def test_a_link_for_a_domain_names_its_tenant_and_lives_its_ttl(env: Env) -> None:
    env.microsoft.on("/contoso.com/v2.0/.well-known/openid-configuration", discovery(TENANT))
    created = env.flow.create({"return_to": RETURN_TO, "tenant": "Contoso.com"})
    assert created.consent_url == f"{PUBLIC}/connect/admin-consent?consent={created.consent_id}"
    assert created.expires_at == int(env.clock.now) + 3600
    assert created.to_json()["expires_at"].endswith("Z")
    started = env.flow.start(created.consent_id)
    parts = urlsplit(started.location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{LOGIN}/{TENANT}/v2.0/adminconsent"
    query = parse_qs(parts.query)
    assert query["client_id"] == [APP.client_id]
    assert query["redirect_uri"] == [f"{PUBLIC}/connect/admin-consent/callback"]
    assert query["scope"] == ["https://graph.microsoft.com/.default"]
    assert started.cookie.name.startswith("__Host-tc_")
    assert started.cookie.max_age == 900


def test_the_whole_flow_records_the_tenant_once_microsoft_confirms(env: Env) -> None:
    consent_id, ms, cookies = follow(env)
    assert urlsplit(ms["redirect_uri"]).path == "/connect/admin-consent/callback"
    env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", token_ok())
    outcome = env.flow.complete({"admin_consent": "True", "tenant": TENANT, "state": ms["state"]}, cookies)
    assert outcome.error is None
    assert (outcome.return_to, outcome.tenant_id) == (RETURN_TO, TENANT)
    assert outcome.clear_cookie is not None
    request = env.microsoft.requests[-1]
    form = parse_qs(request.content.decode())
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == [APP.client_id]
    assert form["scope"] == ["https://graph.microsoft.com/.default"]
    record = env.flow.get_tenant(TENANT.upper())
    assert tenant_json(record) == {
        "tenant_id": TENANT,
        "admin_consented_at": "2027-01-15T08:00:00Z",
        "consent_id": consent_id,
    }
    assert status_of(env, consent_id) == "completed"


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (not_present, "consent_unverified", "failed"),
        (
            lambda: httpx.Response(401, json={"error": "invalid_client", "error_codes": [7000215]}),
            "server_error",
            "failed",
        ),
        (lambda: httpx.Response(503), "upstream_unavailable", "consent_started"),
        (lambda: httpx.Response(200, text="not json"), "upstream_unavailable", "consent_started"),
    ],
)
def test_microsofts_answer_decides(
    env: Env, answer: Callable[[], httpx.Response], code: str, status: str
) -> None:
    consent_id, ms, cookies = follow(env)
    env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", answer())
    outcome = env.flow.complete({"admin_consent": "True", "tenant": TENANT, "state": ms["state"]}, cookies)
    assert outcome.error is not None
    assert outcome.error.code == code
    assert outcome.error.return_to == RETURN_TO
    assert status_of(env, consent_id) == status
    assert (outcome.clear_cookie is None) == (status == "consent_started"), "a retryable end keeps the cookie"
    with pytest.raises(ConnectError):
        env.flow.get_tenant(TENANT)


def test_retries_stay_inside_the_deadline(env: Env) -> None:
    identity = env.flow.microsoft
    env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", httpx.Response(503), httpx.Response(503), token_ok())
    assert identity.app_present(TENANT, APP) is True
    assert len(env.microsoft.requests) == 3
    assert len(env.sleeps) == 2
    env.microsoft.requests.clear()
    import time

    with pytest.raises(UpstreamUnavailable):
        identity.app_present(TENANT, APP, deadline=time.monotonic() + 0.1)  # no room for an attempt
    assert env.microsoft.requests == []


def test_a_transport_failure_is_upstream_unavailable(env: Env) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    identity = MicrosoftIdentity(
        LOGIN, client=httpx.Client(transport=httpx.MockTransport(boom)), sleep=lambda s: None
    )
    with pytest.raises(UpstreamUnavailable):
        identity.app_present(TENANT, APP)
    assert identity.tenant_of_email("max@contoso.com") is None, "best effort: never raises"
    assert identity.tenant_of_email("max@outlook.com") == "9188040d-6c67-4c5b-b112-36a304b66dad"


def test_discovery_answers(env: Env) -> None:
    identity = env.flow.microsoft
    env.microsoft.on("/nowhere.example/v2.0/.well-known/openid-configuration", httpx.Response(400, json={}))
    with pytest.raises(InvalidRequest):
        identity.resolve_tenant("nowhere.example")
    env.microsoft.on(
        "/evil.example/v2.0/.well-known/openid-configuration",
        httpx.Response(200, json={"issuer": f"https://evil.example/{TENANT}/v2.0"}),
    )
    with pytest.raises(UpstreamUnavailable):
        identity.resolve_tenant("evil.example")
    env.microsoft.on("/contoso.com/v2.0/.well-known/openid-configuration", discovery(TENANT))
    assert identity.resolve_tenant("contoso.com") == TENANT
    calls = len(env.microsoft.requests)
    assert identity.tenant_of_email("max@Contoso.com") == TENANT
    assert len(env.microsoft.requests) == calls, "cached per container"


def test_the_callback_refuses_before_any_call(env: Env) -> None:
    env.microsoft.on("/contoso.com/v2.0/.well-known/openid-configuration", discovery(TENANT))
    consent_id, ms, cookies = follow(env, tenant="contoso.com")
    before = len(env.microsoft.requests)
    # Another browser: untouched, no call.
    other = env.flow.complete({"admin_consent": "True", "tenant": TENANT, "state": ms["state"]}, ["x=y"])
    assert other.error is not None
    assert other.error.code == "browser_mismatch"
    assert status_of(env, consent_id) == "consent_started"
    # Neither an answer nor an error: not a callback of Microsoft's.
    junk = env.flow.complete({"state": ms["state"]}, cookies)
    assert junk.error is not None
    assert junk.error.code == "session_invalid"
    assert status_of(env, consent_id) == "consent_started"
    # Another tenant than the link's.
    wrong = env.flow.complete({"admin_consent": "True", "tenant": OTHER, "state": ms["state"]}, cookies)
    assert wrong.error is not None
    assert wrong.error.code == "tenant_mismatch"
    assert len(env.microsoft.requests) == before
    assert status_of(env, consent_id) == "failed"
    # And the link is used up.
    again = env.flow.complete({"admin_consent": "True", "tenant": TENANT, "state": ms["state"]}, cookies)
    assert again.error is not None
    assert again.error.code == "session_used"


def test_an_administrator_who_cancels_ends_with_access_denied(env: Env) -> None:
    consent_id, ms, cookies = follow(env)
    outcome = env.flow.complete(
        {"error": "access_denied", "error_description": "AADSTS65004: declined", "state": ms["state"]},
        cookies,
    )
    assert outcome.error is not None
    assert outcome.error.code == "access_denied"
    assert status_of(env, consent_id) == "failed"
    assert env.microsoft.requests == []


def test_a_link_expires_and_starts_once(env: Env) -> None:
    created = env.flow.create({"return_to": RETURN_TO})
    env.clock.now += 3601
    with pytest.raises(ConnectError) as expired:
        env.flow.start(created.consent_id)
    assert expired.value.code == "session_expired"
    assert expired.value.return_to == RETURN_TO
    fresh = env.flow.create({"return_to": RETURN_TO})
    env.flow.start(fresh.consent_id)
    with pytest.raises(ConnectError) as used:
        env.flow.start(fresh.consent_id)
    assert used.value.code == "session_used"


def test_a_missing_azure_secret_changes_nothing(env: Env) -> None:
    def no_secret() -> AzureApp:
        raise ServerError()

    flow = AdminConsentFlow(
        env.flow.settings, env.flow.store, env.flow.microsoft, app=no_secret, clock=env.clock
    )
    created = flow.create({"return_to": RETURN_TO})
    with pytest.raises(ServerError):
        flow.start(created.consent_id)
    assert status_of(env, created.consent_id) == "consent_pending"


def test_nothing_secret_reaches_the_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    consent_id, ms, cookies = follow(env)
    env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", token_ok())
    env.flow.complete({"admin_consent": "True", "tenant": TENANT, "state": ms["state"]}, cookies)
    logs = log_text(caplog)
    assert "admin consent recorded" in logs
    for secret in (ms["state"], APP.client_secret, "t0k3n", cookies[0].split("=", 1)[1], consent_id):
        assert secret not in logs


def test_each_admin_consent_function_is_granted_exactly_what_it_performs(env: Env) -> None:
    """tools/static_gates.LEAST_PRIVILEGE of the four functions is what their use cases call."""
    recorder = Recorder(env.aws.client)
    env.flow.store._client = recorder
    env.microsoft.on("/contoso.com/v2.0/.well-known/openid-configuration", discovery(TENANT))
    env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", token_ok())
    with recorder.recording() as used:
        created = env.flow.create({"return_to": RETURN_TO, "tenant": "contoso.com"})
    assert used == declared("CreateAdminConsentFunction")
    with recorder.recording() as used:
        started = env.flow.start(created.consent_id)
    assert used == declared("AdminConsentStartFunction")
    flows = [started, *(env.flow.start(env.flow.create({"return_to": RETURN_TO}).consent_id) for _ in (1, 2))]
    # the three ends of a callback: recorded, released (Microsoft down), failed (not confirmed)
    answers = (token_ok(), httpx.Response(503), not_present())
    with recorder.recording() as used:
        for flow, answer in zip(flows, answers, strict=True):
            env.microsoft.on(f"/{TENANT}/oauth2/v2.0/token", answer)
            state = parse_qs(urlsplit(flow.location).query)["state"][0]
            query = {"admin_consent": "True", "tenant": TENANT, "state": state}
            env.flow.complete(query, [f"{flow.cookie.name}={flow.cookie.value}"])
    assert used == declared("AdminConsentCallbackFunction")
    with recorder.recording() as used:
        env.flow.get_tenant(TENANT)
    assert used == declared("GetTenantFunction")


def test_the_grants_tenant_lookup_is_bounded(env: Env) -> None:
    """On the connect callback's path: a slow Microsoft costs at most TENANT_LOOKUP_SECONDS."""
    from teams_connect.adapters import microsoft

    now = [0.0]

    def slow(request: httpx.Request) -> httpx.Response:
        now[0] += 1.0  # every attempt takes a second of the (fake) clock, then fails
        raise httpx.ReadTimeout("slow", request=request)

    identity = MicrosoftIdentity(
        LOGIN,
        client=httpx.Client(transport=httpx.MockTransport(slow)),
        monotonic=lambda: now[0],
        sleep=lambda s: None,
    )
    assert identity.tenant_of_email("max@contoso.com") is None
    assert now[0] <= microsoft.TENANT_LOOKUP_SECONDS + 1.0, "no attempt starts after the budget"
