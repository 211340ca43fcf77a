"""DynamoDB Streams (grants table, NEW_AND_OLD_IMAGES) → EventBridge lifecycle events.

Failed records are returned as batch item failures (`ReportBatchItemFailures`): Lambda retries from
the first of them, so an event is published at least once and never lost. No HTTP, no Nylas client.
"""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.adapters.publisher import PUBLISH_FAILED, PUBLISHED, events_client, publish
from teams_connect.observability import logger, metrics, tracer

BUS = os.environ.get("EVENT_BUS_NAME", "") or "default"
# Only records of the grants table's own stream are published (security review 3, G6): whoever may
# invoke this function cannot have it put what they like on the bus. Unset: nothing is accepted.
SOURCES = frozenset(a for a in os.environ.get("GRANTS_STREAM_ARN", "").split(",") if a)
client = events_client()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    failed, sent = publish(records, client=client, bus=BUS, sources=SOURCES)
    metrics.add_metric(name=PUBLISHED, unit=MetricUnit.Count, value=sent)
    if failed:
        metrics.add_metric(name=PUBLISH_FAILED, unit=MetricUnit.Count, value=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}
