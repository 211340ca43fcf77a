"""adapters/store/idempotency.py: Powertools' DynamoDB idempotency records, item for item, on a
botocore client, and the utility without boto3 at cold start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from moto import mock_aws

from teams_connect.adapters.store.idempotency import DataRecord, IdempotencyStore, exceptions
from tests.unit.test_cold_imports import ROOT


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        # A unique name: a suite-wide moto may already hold an `idempotency` table.
        table = f"idempotency-{uuid.uuid4().hex[:12]}"
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb, table


def _record(key: str, status: str = "INPROGRESS", **extra: Any) -> Any:
    now = int(time.time())
    return DataRecord(
        idempotency_key=key,
        status=status,
        expiry_timestamp=now + 3600,
        in_progress_expiry_timestamp=(now + 10) * 1000,
        **extra,
    )


def _stores(client: Any, table: str) -> tuple[Any, Any]:
    ours = IdempotencyStore(table, client)
    theirs = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    for store in (ours, theirs):
        store.payload_validation_enabled = True
    return ours, theirs


def test_the_items_are_powertools_own(aws: tuple[Any, str]) -> None:
    client, table = aws
    ours, theirs = _stores(client, table)
    for writer, reader in ((ours, theirs), (theirs, ours)):
        key = f"k-{type(writer).__name__}"
        writer._put_record(_record(key, payload_hash="h1"))
        written = client.get_item(TableName=table, Key={"id": {"S": key}})["Item"]
        assert set(written) == {"id", "expiration", "in_progress_expiration", "status", "validation"}
        got = reader._get_record(key)
        assert (got.idempotency_key, got.status, got.payload_hash) == (key, "INPROGRESS", "h1")
        assert int(got.expiry_timestamp) == int(written["expiration"]["N"])
        done = _record(key, status="COMPLETED", response_data='{"id": "m1"}', payload_hash="h1")
        writer._update_record(done)
        again = reader._get_record(key)
        assert (again.status, again.response_data) == ("COMPLETED", '{"id": "m1"}')
        writer._delete_record(done)
        with pytest.raises(exceptions.IdempotencyItemNotFoundError):
            reader._get_record(key)


def test_a_second_put_for_a_live_key_returns_the_first_record(aws: tuple[Any, str]) -> None:
    client, table = aws
    ours, _ = _stores(client, table)
    ours._put_record(_record("same", payload_hash="h1"))
    with pytest.raises(exceptions.IdempotencyItemAlreadyExistsError) as raised:
        ours._put_record(_record("same", payload_hash="h1"))
    old = raised.value.old_data_record
    assert old is not None
    assert old.status == "INPROGRESS"
    with pytest.raises(exceptions.IdempotencyValidationError):  # same key, another payload
        ours._put_record(_record("same", payload_hash="h2"))


def test_an_expired_record_is_replaced(aws: tuple[Any, str]) -> None:
    client, table = aws
    ours, _ = _stores(client, table)
    stale = DataRecord(idempotency_key="old", status="COMPLETED", expiry_timestamp=int(time.time()) - 10)
    ours._put_record(stale)
    ours._put_record(_record("old"))
    assert ours._get_record("old").status == "INPROGRESS"


def test_the_utility_loads_without_boto3_and_still_completes_for_other_users() -> None:
    probe = (
        "import json, sys\n"
        "import teams_connect.adapters.store.idempotency\n"
        "before = 'boto3' in sys.modules\n"
        "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent\n"
        "print(json.dumps([before, 'boto3' in sys.modules, DynamoDBPersistenceLayer.__name__]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "core"), "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "DynamoDBPersistenceLayer"]
