"""DynamoDB plumbing shared by the store's aggregates: the container's one low-level client (no
resource layer, standard retries) and the mapping of DynamoDB failures to the contract's errors."""

from __future__ import annotations

import threading
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from teams_connect.adapters import aws
from teams_connect.errors import ConnectError, ServerError, UpstreamUnavailable
from teams_connect.observability import logger

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)

_client: Any = None
_client_lock = threading.Lock()


def dynamodb_client() -> Any:
    """The container's one DynamoDB client (created lazily, once)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = aws.session().create_client(  # botocore, not boto3 (teams_connect.adapters.aws)
                    "dynamodb",
                    config=Config(retries={"mode": "standard"}, connect_timeout=2, read_timeout=5),
                )
    return _client


def reset_client() -> None:
    """Forget the cached client (tests)."""
    global _client
    _client = None


# Why a transaction was cancelled, per item, when no condition failed: all transient.
_TRANSIENT_CANCELLATIONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict", "RequestLimitExceeded"}
)


def aws_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def aws_error(exc: Exception) -> ConnectError:
    """A DynamoDB failure that is not a business condition → upstream_unavailable / server_error.

    A `TransactionCanceledException` (never retried by the SDK) whose reasons are throttling or a
    conflict with another transaction is transient too: nothing was written, a retry may succeed."""
    code = aws_error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    reasons: list[str] = []
    if isinstance(exc, ClientError) and code == "TransactionCanceledException":
        reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons") or []]
    logger.error("DynamoDB call failed", extra={"aws_error": code, "cancellation_reasons": reasons})
    if isinstance(exc, BotoCoreError) or code in _TRANSIENT_CODES:
        return UpstreamUnavailable()
    if reasons and any(r in _TRANSIENT_CANCELLATIONS for r in reasons):
        return UpstreamUnavailable()
    return ServerError()
