"""Backend API keys rotate and revoke promptly (issue 9 item 7, security review F7): a presented key
that matches none of the cached ones forces one re-read of the keys secret, at most once per 30 s per
container (a flood of wrong keys cannot drive Secrets Manager calls); the keys are cached for at most
60 s, so a revoked key stops working within a minute in every warm container."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from teams_connect.adapters import secrets as tc_secrets
from teams_connect.adapters.secrets import API_KEYS_MAX_AGE, API_KEYS_REREAD_INTERVAL, SecretsProvider
from teams_connect.adapters.store.grants import GrantStore
from teams_connect.adapters.store.sessions import SessionStore
from teams_connect.config import Settings
from teams_connect.domain.flow import ConnectFlow
from teams_connect.errors import Unauthorized

from .support import FIGURES

OLD = "old-key-0123456789abcdef"
NEW = "new-key-0123456789abcdef"
WRONG = "attacker-guess-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Keys:
    flow: ConnectFlow
    clock: Clock
    arn: str
    reads: list[str]

    def set(self, *keys: str) -> None:
        boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
            SecretId=self.arn, SecretString=json.dumps({"api_keys": list(keys)})
        )

    def accepts(self, key: str) -> bool:
        try:
            self.flow.authenticate(f"Bearer {key}")
        except Unauthorized:
            return False
        return True


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[Keys]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        tc_secrets.clear_caches()
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        arn = sm.create_secret(
            Name=f"faults/api-keys-{uuid.uuid4().hex}", SecretString=json.dumps({"api_keys": [OLD]})
        )["ARN"]
        nylas = sm.create_secret(
            Name=f"faults/nylas-{uuid.uuid4().hex}",
            SecretString=json.dumps({"client_id": "c", "api_key": "k"}),
        )["ARN"]
        settings = Settings.from_env(
            {
                "PUBLIC_BASE_URL": "https://connect.example.com",
                "SESSIONS_TABLE": "s-table",
                "GRANTS_TABLE": "g-table",
                "NYLAS_SECRET_ARN": nylas,
                "API_KEYS_SECRET_ARN": arn,
                "SECRETS_MAX_AGE": "300",  # the template's value: the keys still expire after 60 s
            }
        )
        clock = Clock()
        reads: list[str] = []
        tc_secrets.secrets_client().meta.events.register(
            "before-parameter-build.secrets-manager.GetSecretValue",
            lambda params, **_: reads.append(params["SecretId"]),
        )
        flow = ConnectFlow(
            settings,
            SessionStore("s-table"),
            GrantStore("g-table", "s-table"),
            SecretsProvider(settings, clock=clock),
            None,
        )
        yield Keys(flow, clock, arn, reads)
        tc_secrets.clear_caches()


def test_a_key_added_by_a_rotation_works_at_once(keys: Keys) -> None:
    assert keys.accepts(OLD)  # the keys are now cached
    keys.set(OLD, NEW)
    keys.clock.now += 1
    assert keys.accepts(NEW)  # one forced re-read, not a 401 for up to the max age
    assert keys.reads == [keys.arn, keys.arn]
    assert keys.accepts(NEW)
    assert keys.accepts(OLD)
    assert len(keys.reads) == 2  # both served from the refreshed cache
    FIGURES.scenario(
        layer="secretsmanager",
        flavour="any",
        target="GetSecretValue (API keys)",
        fault="key added by a rotation, old keys cached",
        outcome="one forced re-read on the mismatch; the new key is accepted at once",
    )


def test_a_revoked_key_stops_working_within_the_keys_max_age(keys: Keys) -> None:
    assert keys.accepts(OLD)
    keys.set(NEW)  # OLD revoked (leaked, say)
    keys.clock.now += API_KEYS_MAX_AGE - 1
    assert keys.accepts(OLD)  # still cached: the documented worst case is API_KEYS_MAX_AGE
    keys.clock.now += 2
    assert not keys.accepts(OLD)
    assert keys.accepts(NEW)
    assert API_KEYS_MAX_AGE <= 60
    FIGURES.scenario(
        layer="secretsmanager",
        flavour="any",
        target="GetSecretValue (API keys)",
        fault="key revoked while cached",
        outcome=f"refused once the cached keys are {API_KEYS_MAX_AGE} s old",
    )


def test_a_flood_of_wrong_keys_rereads_at_most_once_per_interval(keys: Keys) -> None:
    assert keys.accepts(OLD)
    for _ in range(50):
        assert not keys.accepts(WRONG)
        keys.clock.now += 0.1
    assert len(keys.reads) == 2  # the first read + one forced re-read for 50 wrong keys in 5 s
    keys.clock.now += API_KEYS_REREAD_INTERVAL
    assert not keys.accepts(WRONG)
    assert len(keys.reads) == 3
    FIGURES.scenario(
        layer="secretsmanager",
        flavour="any",
        target="GetSecretValue (API keys)",
        fault="flood of wrong API keys",
        outcome=f"at most one re-read per {API_KEYS_REREAD_INTERVAL:.0f} s per container, all 401",
    )


@pytest.mark.parametrize("authorization", [None, "", "Basic abc", "Bearer ", "bearer"])
def test_no_presented_key_forces_no_reread(keys: Keys, authorization: str | None) -> None:
    assert keys.accepts(OLD)
    with pytest.raises(Unauthorized):
        keys.flow.authenticate(authorization)
    assert len(keys.reads) == 1


def test_a_failed_reread_is_a_401_and_keeps_the_cache(keys: Keys) -> None:
    assert keys.accepts(OLD)
    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId=keys.arn, ForceDeleteWithoutRecovery=True
    )
    assert not keys.accepts(WRONG)  # the re-read fails: the wrong key is refused, not a 503
    assert len(keys.reads) == 2
    assert keys.accepts(OLD)  # the cached keys still serve until they expire
