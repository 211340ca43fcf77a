"""Nylas answers 401 to a cached credential (rotation): the secret is re-read once (force_fetch)
and the call repeated once; the one-time code exchange only when the re-read key differs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import boto3
import httpx
import pytest
import respx
from moto import mock_aws

from teams_connect.adapters import secrets as tc_secrets
from teams_connect.adapters.nylas.http import NylasHttp
from teams_connect.adapters.nylas.port import CallbackInput, PendingFlow
from teams_connect.adapters.nylas.v3 import V3Adapter
from teams_connect.adapters.secrets import BOTO_CONFIG, SecretsProvider, secrets_client
from teams_connect.config import Settings
from teams_connect.domain.flow import build_flow
from teams_connect.errors import ConnectError

from .support import FIGURES

BASE = "https://api.us.nylas.com"
GRANT = "5a9b8c7d-1234-4abc-9def-0123456789ab"
TOKEN_OK = {"grant_id": GRANT, "email": "max@contoso.com", "provider": "microsoft", "scope": "a b"}


@pytest.fixture
def rotation(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, str]]:
    """A Nylas secret in in-process moto (unique names: moto may already be running, unreset, for
    tests/unit); the test rotates it behind the cache's back."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        tc_secrets.clear_caches()
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(
            Name=f"faults/nylas-{uuid.uuid4().hex}",
            SecretString=json.dumps({"client_id": "cid", "api_key": "old-key"}),
        )["ARN"]
        keys = sm.create_secret(
            Name=f"faults/api-keys-{uuid.uuid4().hex}", SecretString=json.dumps({"api_keys": ["k" * 20]})
        )["ARN"]
        settings = Settings.from_env(
            {
                "PUBLIC_BASE_URL": "https://connect.example.com",
                "SESSIONS_TABLE": "s-table",
                "GRANTS_TABLE": "g-table",
                "NYLAS_SECRET_ARN": arn,
                "API_KEYS_SECRET_ARN": keys,
            }
        )
        yield settings, arn
        tc_secrets.clear_caches()


def _rotate(arn: str, key: str) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId=arn, SecretString=json.dumps({"client_id": "cid", "api_key": key})
    )


def _exchange(adapter: V3Adapter) -> None:
    adapter.complete(
        CallbackInput(state="s", code="the-code"),
        PendingFlow(
            started_at=0, redirect_uri="https://connect.example.com/connect/callback", code_verifier="v"
        ),
    )


def _secrets_for(calls: respx.Route) -> list[str]:
    return [json.loads(c.request.content)["client_secret"] for c in calls.calls]


def test_the_secrets_client_uses_standard_retries(rotation: tuple[Settings, str]) -> None:
    assert BOTO_CONFIG.retries == {"mode": "standard", "total_max_attempts": 3}
    assert secrets_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_code_exchange_401_rereads_a_rotated_key_and_retries_once(rotation: tuple[Settings, str]) -> None:
    settings, arn = rotation
    adapter = V3Adapter(settings, SecretsProvider(settings), NylasHttp(BASE, sleep=lambda _: None))
    assert adapter.client_id() == "cid"  # the old key is now cached
    _rotate(arn, "new-key")
    with respx.mock() as router:
        token = router.post(f"{BASE}/v3/connect/token").mock(
            side_effect=[
                httpx.Response(401, json={"error": "invalid_client"}),
                httpx.Response(200, json=TOKEN_OK),
            ]
        )
        _exchange(adapter)
    assert _secrets_for(token) == ["old-key", "new-key"]
    FIGURES.scenario(
        layer="nylas",
        flavour="v3",
        target="POST /v3/connect/token",
        fault="401 after key rotation",
        nylas_calls=2,
        outcome="secret re-read once, exchange repeated once, connected",
    )


def test_code_exchange_401_with_an_unchanged_key_is_not_repeated(rotation: tuple[Settings, str]) -> None:
    settings, _ = rotation
    adapter = V3Adapter(settings, SecretsProvider(settings), NylasHttp(BASE, sleep=lambda _: None))
    with respx.mock() as router:
        token = router.post(f"{BASE}/v3/connect/token").mock(
            return_value=httpx.Response(401, json={"error": "invalid_client"})
        )
        with pytest.raises(ConnectError) as err:
            _exchange(adapter)
    assert err.value.code == "server_error"
    assert _secrets_for(token) == ["old-key"]


def test_revoke_401_rereads_the_secret_once(rotation: tuple[Settings, str]) -> None:
    settings, arn = rotation
    adapter = V3Adapter(settings, SecretsProvider(settings), NylasHttp(BASE, sleep=lambda _: None))
    assert adapter.client_id() == "cid"
    _rotate(arn, "new-key")
    with respx.mock() as router:
        revoke = router.delete(f"{BASE}/v3/grants/{GRANT}").mock(
            side_effect=[httpx.Response(401), httpx.Response(200, json={"request_id": "r"})]
        )
        adapter.revoke(GRANT)
    assert [c.request.headers["authorization"] for c in revoke.calls] == ["Bearer old-key", "Bearer new-key"]
    with respx.mock() as router:
        router.delete(f"{BASE}/v3/grants/{GRANT}").mock(return_value=httpx.Response(401))
        with pytest.raises(ConnectError) as err:
            adapter.revoke(GRANT)  # still 401 after the fresh read: server_error, no loop
        assert router.calls.call_count == 2
    assert err.value.code == "server_error"


def test_the_flow_applies_the_configured_read_timeout(rotation: tuple[Settings, str]) -> None:
    settings, _ = rotation
    for env, expected in (({"NYLAS_READ_TIMEOUT_MS": "750"}, 0.75), ({}, 5.0)):
        for flavour in ("v3", "beta"):
            configured = Settings.from_env({**_env(settings), "NYLAS_API": flavour, **env})
            flow = build_flow(configured)
            assert flow.nylas is not None
            assert flow.nylas._http.read_timeout == expected  # type: ignore[attr-defined]


def _env(settings: Settings) -> dict[str, str]:
    return {
        "PUBLIC_BASE_URL": settings.public_base_url,
        "SESSIONS_TABLE": settings.sessions_table,
        "GRANTS_TABLE": settings.grants_table,
        "NYLAS_SECRET_ARN": settings.nylas_secret_arn,
        "API_KEYS_SECRET_ARN": settings.api_keys_secret_arn,
    }
