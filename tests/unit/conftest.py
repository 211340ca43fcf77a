"""Fixtures for the in-process unit tests: moto (DynamoDB + Secrets Manager), settings, flows."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before anything imports Powertools or boto3.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "teams-connect",
        "POWERTOOLS_METRICS_NAMESPACE": "TeamsConnectTest",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOGGER_LOG_EVENT": "true",  # the handlers must override it
        "LOG_LEVEL": "INFO",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)

import boto3
import pytest
from moto import mock_aws

from teams_connect.adapters import secrets as tc_secrets
from teams_connect.adapters.nylas.beta import BetaAdapter
from teams_connect.adapters.nylas.http import NylasHttp
from teams_connect.adapters.nylas.v3 import V3Adapter
from teams_connect.adapters.secrets import SecretsProvider
from teams_connect.adapters.store import base as store
from teams_connect.adapters.store.grants import GrantStore
from teams_connect.adapters.store.sessions import SessionStore
from teams_connect.config import Settings, get_settings
from teams_connect.domain.flow import ConnectFlow

from .tables import create_tables

ROOT = Path(__file__).resolve().parents[2]
SESSIONS = "tc-sessions"
GRANTS = "tc-grants"
API_KEY = "test-api-key-0123456789abcdef"
OLD_API_KEY = "old-api-key-0123456789abcdef"
NYLAS_API_KEY = "nyk_v3_secret_value_123"
NYLAS_CLIENT_ID = "nylas-client-id-1"
NYLAS_CLIENT_SECRET = "beta_client_secret_456"
V3_BASE = "https://api.us.nylas.com"
BETA_BASE = "https://beta.us.nylas.com"
PUBLIC = "https://connect.example.com"
RETURN_TO = "https://app.example.com/integrations/teams?tab=1"


def pytest_configure(config: pytest.Config) -> None:
    # Powertools warns when an invocation emits no metric (the API routes emit none).
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """Wraps the boto3 client and counts calls per operation."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if callable(attr) and not name.startswith("_") and name != "exceptions":

            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)

            return wrapper
        return attr


@dataclass
class Aws:
    client: Any
    nylas_secret_arn: str
    api_keys_secret_arn: str

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "NYLAS_API": "v3",
            "NYLAS_REGION": "us",
            "AZURE_TENANT": "common",
            "ALLOWED_RETURN_URLS": "https://app.example.com/integrations,http://127.0.0.1:8000/",
            "SESSION_TTL_SECONDS": "600",
            "PUBLIC_BASE_URL": PUBLIC,
            "SESSIONS_TABLE": SESSIONS,
            "GRANTS_TABLE": GRANTS,
            "NYLAS_SECRET_ARN": self.nylas_secret_arn,
            "API_KEYS_SECRET_ARN": self.api_keys_secret_arn,
            "SECRETS_MAX_AGE": "300",
        }
        env.update(overrides)
        return env


@pytest.fixture(scope="session")
def _moto() -> Iterator[tuple[str, str]]:
    """One moto mock for the whole run (starting it per test costs more than the tests)."""
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        nylas = sm.create_secret(
            Name="tc/nylas",
            SecretString=json.dumps(
                {"client_id": NYLAS_CLIENT_ID, "api_key": NYLAS_API_KEY, "client_secret": NYLAS_CLIENT_SECRET}
            ),
        )
        keys = sm.create_secret(
            Name="tc/api-keys", SecretString=json.dumps({"api_keys": [OLD_API_KEY, API_KEY]})
        )
        yield nylas["ARN"], keys["ARN"]


@pytest.fixture
def aws(_moto: tuple[str, str]) -> Iterator[Aws]:
    """Fresh, empty tables for every test; no cached secret, settings or client."""
    tc_secrets.clear_caches()
    store.reset_client()
    get_settings.cache_clear()
    client = boto3.client("dynamodb", region_name="us-east-1")
    for table in client.list_tables()["TableNames"]:
        client.delete_table(TableName=table)
    create_tables(client, SESSIONS, GRANTS)
    yield Aws(client, *_moto)
    tc_secrets.clear_caches()
    store.reset_client()
    get_settings.cache_clear()


@dataclass
class Harness:
    flow: ConnectFlow
    settings: Settings
    clock: Clock
    client: CountingClient
    sleeps: list[float]


def make_harness(aws: Aws, flavour: str = "v3", **env: str) -> Harness:
    settings = Settings.from_env(aws.env(NYLAS_API=flavour, **env))
    clock = Clock()
    client = CountingClient(aws.client)
    secrets = SecretsProvider(settings)
    sleeps: list[float] = []
    http = NylasHttp(settings.nylas_base_url, sleep=sleeps.append)
    adapter = (V3Adapter if flavour == "v3" else BetaAdapter)(settings, secrets, http)
    flow = ConnectFlow(
        settings,
        SessionStore(SESSIONS, client),
        GrantStore(GRANTS, SESSIONS, client),
        secrets,
        adapter,
        clock=clock,
    )
    return Harness(flow, settings, clock, client, sleeps)


@pytest.fixture
def v3(aws: Aws) -> Harness:
    return make_harness(aws, "v3")


@pytest.fixture
def beta(aws: Aws) -> Harness:
    return make_harness(aws, "beta")


# --- handlers -----------------------------------------------------------------------------------
class FakeContext:
    function_name = "teams-connect-test"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:teams-connect-test"
    aws_request_id = "req-0001"
    log_group_name = "/aws/lambda/teams-connect-test"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def load_handler(name: str) -> Any:
    """Import functions/<name>/app.py under a unique module name (inside the moto mock)."""
    get_settings.cache_clear()
    store.reset_client()
    module_name = f"handler_{name}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, ROOT / "functions" / name / "app.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def http_event(
    method: str,
    path: str,
    *,
    raw_query: str = "",
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    body: str | None = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": "connect.example.com", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "connect.example.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "t",
            },
            "requestId": f"apigw-{uuid.uuid4().hex[:12]}",
            "routeKey": route_key or f"{method} {path}",
            "stage": "$default",
            "time": "01/Jan/2027:00:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies is not None:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = body
    return event


@pytest.fixture
def handler_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Aws:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return aws


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the loggers emitted, including structured extra keys."""
    return "\n".join(json.dumps(r.__dict__, default=str) for r in caplog.records)
