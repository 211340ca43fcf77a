"""The idempotency table, for Powertools' Idempotency utility, on the container's botocore client.

Powertools' own `DynamoDBPersistenceLayer` imports boto3 at module level (for its type
(de)serialiser and a default client), and the utility's package `__init__` imports that module, so
any use of the utility would load boto3 and s3transfer at cold start: about 30 ms of the create
function's init for a library it never calls (`make bench`, docs/performance.md). So:

- `IdempotencyStore` is a `BasePersistenceLayer` with the very items, condition expressions and
  error mapping of `DynamoDBPersistenceLayer` (Powertools 3.x: key `id`, `expiration`,
  `in_progress_expiration`, `status`, `data`, `validation`; the put returns the old item on a failed
  condition), written against the low-level botocore client the store already has: every attribute
  is a string or a number, so no type serialiser is needed;
- `utility()` imports the utility's modules without running its package `__init__` first: the package
  module is created from its spec, empty, and completes itself (runs the real `__init__`) the first
  time anyone asks it for a name, e.g. `from aws_lambda_powertools.utilities.idempotency import
  DynamoDBPersistenceLayer`. Nothing is patched; the utility's code runs as shipped.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

PACKAGE = "aws_lambda_powertools.utilities.idempotency"
_lock = threading.Lock()


def _lazy_package() -> ModuleType:
    """The utility's package in sys.modules, its `__init__` run only on the first attribute asked."""
    with _lock:
        existing = sys.modules.get(PACKAGE)
        if existing is not None:
            return existing
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ImportError(f"{PACKAGE} is not installed")
        package = importlib.util.module_from_spec(spec)
        completed = False

        def complete(name: str) -> Any:
            nonlocal completed
            if name.startswith("__") or completed:
                raise AttributeError(name)
            completed = True
            del package.__dict__["__getattr__"]
            spec.loader.exec_module(package)  # type: ignore[union-attr]
            return getattr(package, name)

        package.__dict__["__getattr__"] = complete
        sys.modules[PACKAGE] = package
        return package


_lazy_package()  # before the first import of the utility's modules (their package's __init__ waits)

# isort: off
from aws_lambda_powertools.utilities.idempotency.config import (  # noqa: E402 - after _lazy_package()
    IdempotencyConfig,
)
from aws_lambda_powertools.utilities.idempotency.idempotency import (  # noqa: E402 - likewise
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import (  # noqa: E402 - likewise
    BasePersistenceLayer,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (  # noqa: E402 - likewise
    STATUS_CONSTANTS,
    DataRecord,
)
import aws_lambda_powertools.utilities.idempotency.exceptions as exceptions  # noqa: E402 - likewise

# isort: on

__all__ = ["DataRecord", "IdempotencyConfig", "IdempotencyStore", "exceptions", "idempotent_function"]
INPROGRESS = STATUS_CONSTANTS["INPROGRESS"]

KEY, EXPIRY, IN_PROGRESS_EXPIRY, STATUS, DATA, VALIDATION = (
    "id",
    "expiration",
    "in_progress_expiration",
    "status",
    "data",
    "validation",
)


def _number(value: dict[str, str] | None) -> int | None:
    return None if value is None else int(value["N"])


def _string(value: dict[str, str] | None) -> Any:
    """The string of an `{"S": …}` attribute; None when absent (DataRecord's optional fields)."""
    return None if value is None else value["S"]


class IdempotencyStore(BasePersistenceLayer):
    """Powertools' DynamoDB persistence, item for item, on a botocore DynamoDB client."""

    def __init__(self, table_name: str, client: Any) -> None:
        self.table_name = table_name
        self.client = client
        super().__init__()  # type: ignore[no-untyped-call]

    def _key(self, idempotency_key: str) -> dict[str, dict[str, str]]:
        return {KEY: {"S": idempotency_key}}

    def _item_to_data_record(self, item: dict[str, Any]) -> Any:
        return DataRecord(
            idempotency_key=_string(item[KEY]),
            status=_string(item[STATUS]),
            expiry_timestamp=_number(item[EXPIRY]),
            in_progress_expiry_timestamp=_number(item.get(IN_PROGRESS_EXPIRY)),
            response_data=_string(item.get(DATA)),
            payload_hash=_string(item.get(VALIDATION)),
        )

    def _get_record(self, idempotency_key: str) -> Any:
        response = self.client.get_item(
            TableName=self.table_name, Key=self._key(idempotency_key), ConsistentRead=True
        )
        if "Item" not in response:
            raise exceptions.IdempotencyItemNotFoundError
        return self._item_to_data_record(response["Item"])

    def _put_record(self, data_record: Any) -> None:
        item: dict[str, dict[str, str]] = {
            **self._key(data_record.idempotency_key),
            EXPIRY: {"N": str(data_record.expiry_timestamp)},
            STATUS: {"S": data_record.status},
        }
        if data_record.in_progress_expiry_timestamp is not None:
            item[IN_PROGRESS_EXPIRY] = {"N": str(data_record.in_progress_expiry_timestamp)}
        if self.payload_validation_enabled and data_record.payload_hash:
            item[VALIDATION] = {"S": data_record.payload_hash}
        now = dt.datetime.now()
        try:
            # New key, or an expired record, or an in-progress one whose Lambda timed out.
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=(
                    "attribute_not_exists(#id) OR #expiry < :now OR (#status = :inprogress AND "
                    "attribute_exists(#in_progress_expiry) AND #in_progress_expiry < :now_in_millis)"
                ),
                ExpressionAttributeNames={
                    "#id": KEY,
                    "#expiry": EXPIRY,
                    "#in_progress_expiry": IN_PROGRESS_EXPIRY,
                    "#status": STATUS,
                },
                ExpressionAttributeValues={
                    ":now": {"N": str(int(now.timestamp()))},
                    ":now_in_millis": {"N": str(int(now.timestamp() * 1000))},
                    ":inprogress": {"S": INPROGRESS},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")  # type: ignore[typeddict-item]
            if old is None:
                raise exceptions.IdempotencyItemAlreadyExistsError() from exc
            old_record = self._item_to_data_record(old)
            self._validate_payload(data_payload=data_record, stored_data_record=old_record)
            self._save_to_cache(data_record=old_record)
            raise exceptions.IdempotencyItemAlreadyExistsError(old_data_record=old_record) from exc

    def _update_record(self, data_record: Any) -> None:
        expression = "SET #response_data = :response_data, #expiry = :expiry, #status = :status"
        values = {
            ":expiry": {"N": str(data_record.expiry_timestamp)},
            ":response_data": {"S": data_record.response_data},
            ":status": {"S": data_record.status},
        }
        names = {"#expiry": EXPIRY, "#response_data": DATA, "#status": STATUS}
        if self.payload_validation_enabled:
            expression += ", #validation_key = :validation_key"
            values[":validation_key"] = {"S": data_record.payload_hash}
            names["#validation_key"] = VALIDATION
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(data_record.idempotency_key),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _delete_record(self, data_record: Any) -> None:
        self.client.delete_item(TableName=self.table_name, Key=self._key(data_record.idempotency_key))
