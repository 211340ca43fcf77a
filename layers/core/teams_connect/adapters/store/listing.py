"""The grants listing's reads (`GET /v1/grants`): Queries on the grants table's three listing indexes,
never a Scan. Every index is keyed by one partition value and ordered by `user_id`, which never
changes for a record: "every record with user_id > the cursor" is exactly the rest of the listing.

- no filter: `grants-all` (`grant_list` = "grant" on every USER# item);
- `status`: `grants-by-status` (`status`, `user_id`);
- `email` (with or without `status`): `grants-by-email` (`email_lc`, `user_id`); a mailbox holds at
  most one grant (account_already_linked), so the status filter there reads one or two items.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters.store.base import aws_error, dynamodb_client
from teams_connect.adapters.store.grants import GrantRecord

INDEX_ALL, INDEX_STATUS, INDEX_EMAIL = "grants-all", "grants-by-status", "grants-by-email"
LIST_KEY = "grant"  # the `grant_list` value of every USER# item (GrantRecord.to_item)


class GrantListing:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else dynamodb_client()

    def page(
        self, *, status: str | None, email: str | None, after: str | None, limit: int
    ) -> tuple[list[GrantRecord], bool]:
        """Up to `limit` records with `user_id > after` in user_id order, and whether more follow."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        filter_expression = None
        if email is not None:
            index, condition = INDEX_EMAIL, "email_lc = :k"
            values[":k"] = {"S": email}
            if status is not None:
                filter_expression = "#st = :st"
                names["#st"] = "status"
                values[":st"] = {"S": status}
        elif status is not None:
            index, condition = INDEX_STATUS, "#st = :k"
            names["#st"] = "status"
            values[":k"] = {"S": status}
        else:
            index, condition = INDEX_ALL, "grant_list = :k"
            values[":k"] = {"S": LIST_KEY}
        if after is not None:
            condition += " AND user_id > :after"
            values[":after"] = {"S": after}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "Limit": limit + 1,  # one more than the page: tells whether another page follows
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        found: list[GrantRecord] = []
        while True:
            try:
                answer = self.client.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise aws_error(exc) from None
            for item in answer.get("Items") or []:
                if str(item.get("pk", {}).get("S", "")).startswith("USER#"):
                    found.append(GrantRecord.from_item(item))
            last = answer.get("LastEvaluatedKey")
            if len(found) > limit or not last:
                break
            kwargs["ExclusiveStartKey"] = last
        return found[:limit], len(found) > limit
