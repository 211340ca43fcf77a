"""App webhook queue (SQS FIFO) → Standard Webhooks POST to AppWebhookUrl.

`ReportBatchItemFailures`: a message that must be retried (and every later one of the batch, so the
order holds) is reported as failed after its visibility was set to the backoff; the rest are deleted
by Lambda. No boto3, no Nylas client.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.domain.app_webhooks import build_delivery
from teams_connect.observability import logger, metrics, tracer

delivery = build_delivery()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = delivery.handle(event.get("Records") or [], context.get_remaining_time_in_millis)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
