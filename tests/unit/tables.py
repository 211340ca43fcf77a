"""The DynamoDB tables of docs/internals.md, for moto: read from template.yaml (keys, indexes, TTL),
so the unit tests query the same indexes as the deployment."""

from __future__ import annotations

from typing import Any

from local.template import load_template, table_definitions


def create_tables(client: Any, sessions_table: str, grants_table: str) -> None:
    definitions = table_definitions(load_template())
    for name, logical_id in ((sessions_table, "SessionsTable"), (grants_table, "GrantsTable")):
        definition = definitions[logical_id]
        client.create_table(TableName=name, **definition.create_table_kwargs)
        if definition.ttl_attribute:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": definition.ttl_attribute},
            )
