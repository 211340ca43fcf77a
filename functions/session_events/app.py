"""DynamoDB Streams (sessions table, NEW_AND_OLD_IMAGES) → EventBridge: `Connect Failed` for every
connect flow that ends in an error, `Tenant Admin Consented` for every completed admin consent.

As grant_events: failed records are returned as batch item failures, so an event is published at
least once and never lost, with an `event_id` stable across redeliveries. No HTTP, no Nylas client.
"""

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.adapters.publisher import events_client, publish
from teams_connect.observability import logger, metrics, tracer
from teams_connect.rules.session_events import event_for

PUBLISHED = "SessionEventsPublished"
PUBLISH_FAILED = "SessionEventsPublishFailed"
BUS = os.environ.get("EVENT_BUS_NAME", "") or "default"
# Only records of the sessions table's own stream are published (security review 3, G6), as in
# grant_events. Unset: nothing is accepted.
SOURCES = frozenset(a for a in os.environ.get("SESSIONS_STREAM_ARN", "").split(",") if a)
client = events_client()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    failed, sent = publish(records, client=client, bus=BUS, sources=SOURCES, mapper=event_for)
    metrics.add_metric(name=PUBLISHED, unit=MetricUnit.Count, value=sent)
    if failed:
        metrics.add_metric(name=PUBLISH_FAILED, unit=MetricUnit.Count, value=len(failed))
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}
