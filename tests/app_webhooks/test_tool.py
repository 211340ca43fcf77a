"""`python -m tools.app_webhooks rotate | show-secret` against moto's Secrets Manager: the rotation
writes the overlap the delivery honours (both secrets sign for 24 h, then only the new one)."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws
from standardwebhooks import Webhook
from tools import app_webhooks as tool

from teams_connect.rules.app_webhooks import AppWebhook, headers_for, signing_keys


@pytest.fixture
def secret_arn(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="app-webhook", SecretString=json.dumps({"secret": "A1" * 22}))["ARN"]
        yield client, arn


def test_rotation_keeps_the_old_secret_signing_for_the_overlap(secret_arn, capsys):
    client, arn = secret_arn
    now = time.time()
    fresh = tool.rotate(client, arn, overlap_hours=24, now=now)
    stored = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    assert fresh == "whsec_" + stored["secret"]
    assert len(stored["secret"]) == 44
    assert stored["secret"].isalnum()
    assert stored["previous_secret"] == "A1" * 22
    assert stored["previous_valid_until"] == int(now + 86400)
    hook = AppWebhook("evt_1", "grant.connected", '{"type":"grant.connected"}')
    both = headers_for(signing_keys(stored, now), hook, now)
    Webhook(fresh).verify(hook.body, both)
    Webhook("whsec_" + "A1" * 22).verify(hook.body, both)
    assert signing_keys(stored, now + 86400).secrets == (stored["secret"],)
    assert tool.main(["show-secret", "--secret-arn", arn], session=boto3.session.Session()) == 0
    assert capsys.readouterr().out.strip() == fresh


def test_bad_overlap_and_a_foreign_secret_are_refused(secret_arn, capsys):
    client, arn = secret_arn
    session = boto3.session.Session()
    assert tool.main(["rotate", "--secret-arn", arn, "--overlap-hours", "0"], session=session) == 2
    other = client.create_secret(Name="other", SecretString=json.dumps({"api_keys": []}))["ARN"]
    assert tool.main(["rotate", "--secret-arn", other], session=session) == 1
    assert "error" in capsys.readouterr().err
