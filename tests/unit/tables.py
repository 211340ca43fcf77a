"""The DynamoDB tables of docs/internals.md, for moto.

Kept in one function so it can later read the definitions from template.yaml instead.
"""

from __future__ import annotations

from typing import Any


def create_tables(client: Any, sessions_table: str, grants_table: str) -> None:
    client.create_table(
        TableName=sessions_table,
        KeySchema=[{"AttributeName": "session_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "session_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=sessions_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    client.create_table(
        TableName=grants_table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "outbox", "AttributeType": "S"},
            {"AttributeName": "due_at", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "revoke-due",
                "KeySchema": [
                    {"AttributeName": "outbox", "KeyType": "HASH"},
                    {"AttributeName": "due_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["attempts"]},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
