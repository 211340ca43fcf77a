"""The Powertools Logger / Metrics / Tracer instances shared by every function.

Never enable `log_event`: the raw event holds `code`, `state`, cookies and API keys.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "teams-connect")

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

CONNECT_STARTED = "ConnectStarted"
CONNECT_SUCCEEDED = "ConnectSucceeded"
CONNECT_FAILED = "ConnectFailed"


def count(metric: str, *, error_code: str | None = None) -> None:
    """Add one to `metric`; a failure carries its contract error code as a dimension."""
    if error_code is not None:
        metrics.add_dimension(name="ErrorCode", value=error_code)
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
