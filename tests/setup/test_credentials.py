"""Credentials from Secrets Manager (moto), and ensure()/teardown() reading them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from teams_connect.setup import SetupError, ensure, load_credentials, teardown

from .fakes import (
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    CALLBACK,
    NYLAS_API_KEY,
    NYLAS_CLIENT_ID,
    NYLAS_CLIENT_SECRET,
    FakeV3,
    assert_no_secret,
)
from .test_ensure import v3_spec


def test_load_credentials(secrets: dict[str, Any]) -> None:
    creds = load_credentials(secrets["nylas"], secrets["azure"], secrets["client"])
    assert creds.nylas_client_id == NYLAS_CLIENT_ID
    assert creds.nylas_api_key == NYLAS_API_KEY
    assert creds.nylas_client_secret == NYLAS_CLIENT_SECRET
    assert (creds.azure_client_id, creds.azure_client_secret) == (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)
    # default client: boto3's default chain (region from the environment)
    assert load_credentials(secrets["nylas"], None).azure_client_secret == ""


def test_missing_secret_names_arn_and_code(secrets: dict[str, Any]) -> None:
    missing = secrets["nylas"].replace("/nylas", "/nope")
    with pytest.raises(SetupError) as info:
        load_credentials(missing, secrets["azure"], secrets["client"])
    assert str(info.value) == f"could not read the Nylas secret {missing}: ResourceNotFoundException"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json " + AZURE_CLIENT_SECRET, "is not a JSON object"),
        (json.dumps([AZURE_CLIENT_SECRET]), "is not a JSON object"),
        (json.dumps({"client_secret": AZURE_CLIENT_SECRET}), "no usable 'client_id'"),
        (json.dumps({"client_id": AZURE_CLIENT_ID, "client_secret": 42}), "no usable 'client_secret'"),
    ],
)
def test_bad_azure_secret(secrets: dict[str, Any], value: str, message: str) -> None:
    secrets["client"].put_secret_value(SecretId=secrets["azure"], SecretString=value)
    with pytest.raises(SetupError, match=message) as info:
        load_credentials(secrets["nylas"], secrets["azure"], secrets["client"])
    assert_no_secret(str(info.value))


def test_nylas_secret_without_api_key_is_fine_for_beta(secrets: dict[str, Any]) -> None:
    secrets["client"].put_secret_value(
        SecretId=secrets["nylas"],
        SecretString=json.dumps({"client_id": NYLAS_CLIENT_ID, "client_secret": NYLAS_CLIENT_SECRET}),
    )
    creds = load_credentials(secrets["nylas"], secrets["azure"], secrets["client"])
    assert creds.nylas_api_key == ""


def test_ensure_and_teardown_from_secrets_manager(secrets: dict[str, Any], v3: FakeV3) -> None:
    report = ensure(v3_spec(), nylas_secret_arn=secrets["nylas"], azure_secret_arn=secrets["azure"])
    assert report.changed
    assert v3.secret_sent == AZURE_CLIENT_SECRET
    assert v3.urls() == [CALLBACK]
    report = teardown(v3_spec(), nylas_secret_arn=secrets["nylas"])
    assert report.lines()[0] == f"callback URI {CALLBACK}: removed"
    assert v3.urls() == []
