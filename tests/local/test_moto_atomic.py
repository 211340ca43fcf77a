"""The local moto is atomic as DynamoDB is: a transaction is seen whole or not at all, also by the
table's stream. Findings of the fault campaign: the stream poller published `Grant Connected` and
`Grant Reconnected` for writes of transactions that were cancelled (a user whose connect lost the
mailbox to another user: account_already_linked). moto undoes a cancelled transaction by putting back
a copy of the table, with a new stream shard, while an iterator taken before still read the old shard
and its cancelled records."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from local.aws import client, start_moto

from local import aws

# moto's backends are per process: another suite's moto in this process may have its own table "t".
TABLE = "atomic-streams"


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[Any, Any, str]]:
    server, url = start_moto()
    dynamodb = client("dynamodb", url)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    yield dynamodb, client("dynamodbstreams", url), arn
    server.stop()


def _records(streams: Any, arn: str) -> list[dict[str, Any]]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return list(streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"])


def test_a_stream_read_waits_for_an_item_operation_in_progress(moto: tuple[Any, Any, str]) -> None:
    _, streams, arn = moto
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    done = threading.Event()

    def read() -> None:
        streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=10)
        done.set()

    with aws._DYNAMODB_LOCK:  # what a transaction holds from its first write to its rollback
        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)
        assert not done.is_set(), "the stream was read in the middle of an item operation"
    reader.join(timeout=10)
    assert done.is_set()


def test_a_cancelled_transaction_leaves_nothing_in_the_stream(moto: tuple[Any, Any, str]) -> None:
    dynamodb, streams, arn = moto
    before = len(_records(streams, arn))
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "switched"}}}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {"pk": {"S": "guard"}},
                        "ConditionExpression": "attribute_exists(pk)",  # fails: cancels the whole
                    }
                },
            ]
        )
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "after"}})
    records = _records(streams, arn)[before:]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["after"]


def _cancelled_transaction(dynamodb: Any, key: str) -> None:
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {"pk": {"S": key}}}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {"pk": {"S": "guard"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )


def test_an_iterator_taken_before_a_cancelled_transaction_never_reads_its_writes(
    moto: tuple[Any, Any, str],
) -> None:
    dynamodb, streams, arn = moto
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
    _cancelled_transaction(dynamodb, "lost-the-mailbox")  # what the poller's next read came after
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "next"}})
    records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=100)["Records"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["next"]
    # And a fresh reader agrees, sequence numbers included.
    fresh = _records(streams, arn)
    assert fresh[-1]["dynamodb"]["SequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert "lost-the-mailbox" not in [r["dynamodb"]["Keys"]["pk"]["S"] for r in fresh]


def _switch(token: str, key: str) -> dict[str, Any]:
    return {
        "ClientRequestToken": token,
        "TransactItems": [
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {"pk": {"S": key}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ],
    }


def test_a_retried_transaction_with_the_same_client_token_is_not_applied_twice(
    moto: tuple[Any, Any, str],
) -> None:
    """botocore sends one ClientRequestToken per call and the same one on each retry: a transaction that
    committed but answered after the read timeout is retried, and DynamoDB answers it as done. moto
    applied it again, its condition failed, and a stored connection ended `session_used`."""
    dynamodb, _, _ = moto
    dynamodb.transact_write_items(**_switch("token-1", "once"))
    dynamodb.transact_write_items(**_switch("token-1", "once"))  # the retry: success, nothing applied
    with pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(**_switch("token-2", "once"))  # a new request: its condition fails
    with pytest.raises(ClientError, match="IdempotentParameterMismatch"):
        dynamodb.transact_write_items(**_switch("token-1", "another"))
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "another"}})
