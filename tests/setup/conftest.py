from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import respx
from moto import mock_aws

from teams_connect.setup import Credentials, RetryPolicy
from teams_connect.setup import http as setup_http

from .fakes import (
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    NYLAS_API_KEY,
    NYLAS_CLIENT_ID,
    NYLAS_CLIENT_SECRET,
    FakeBeta,
    FakeV3,
)

NO_WAIT = RetryPolicy(attempts=3, multiplier=0, max_wait=0)


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_http, "DEFAULT_RETRY", NO_WAIT)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No host configuration leaks into the tests (the CLI reads defaults from these)."""
    for name in (
        "NYLAS_API",
        "NYLAS_REGION",
        "NYLAS_BASE_URL",
        "AZURE_TENANT",
        "PUBLIC_BASE_URL",
        "NYLAS_SECRET_ARN",
        "AZURE_SECRET_ARN",
        "NYLAS_SCOPES",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def creds() -> Credentials:
    return Credentials(
        nylas_client_id=NYLAS_CLIENT_ID,
        nylas_api_key=NYLAS_API_KEY,
        nylas_client_secret=NYLAS_CLIENT_SECRET,
        azure_client_id=AZURE_CLIENT_ID,
        azure_client_secret=AZURE_CLIENT_SECRET,
    )


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """Every httpx request must hit a declared route (assert_all_mocked); none need be called."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def v3(router: respx.MockRouter) -> FakeV3:
    return FakeV3(router)


@pytest.fixture
def beta(router: respx.MockRouter) -> FakeBeta:
    return FakeBeta(router)


@pytest.fixture(scope="module")
def _aws() -> Iterator[Any]:
    """One moto Secrets Manager per test module (starting moto per test is slow; a session-wide one would
    intercept boto3 in other suites); each test uses its own secret names."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            mp.setenv(name, value)
        with mock_aws():
            yield boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def secrets(_aws: Any) -> dict[str, Any]:
    """The two secrets under fresh names; returns their ARNs and the client."""
    prefix = f"teams-connect-{uuid.uuid4().hex[:8]}"
    nylas = _aws.create_secret(
        Name=f"{prefix}/nylas",
        SecretString=json.dumps(
            {"client_id": NYLAS_CLIENT_ID, "api_key": NYLAS_API_KEY, "client_secret": NYLAS_CLIENT_SECRET}
        ),
    )
    azure = _aws.create_secret(
        Name=f"{prefix}/azure",
        SecretString=json.dumps({"client_id": AZURE_CLIENT_ID, "client_secret": AZURE_CLIENT_SECRET}),
    )
    return {"nylas": nylas["ARN"], "azure": azure["ARN"], "client": _aws}
