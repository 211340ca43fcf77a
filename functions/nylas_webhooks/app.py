"""GET|POST /nylas/webhooks: Nylas's challenge and its signed grant notifications
(teams_connect.domain.webhooks).

Lean on purpose: the API Gateway HTTP API v2 event is read directly (no event-handler resolver), no
Nylas client; DynamoDB and Secrets Manager clients are created once per container, at init.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.adapters.secrets import secrets_client, webhook_secrets
from teams_connect.adapters.store.base import dynamodb_client
from teams_connect.adapters.store.notifications import NotificationStore
from teams_connect.config import get_settings
from teams_connect.domain.webhooks import WebhookService
from teams_connect.observability import logger, metrics, tracer
from teams_connect.rules import lifecycle

ROUTES = ("GET /nylas/webhooks", "POST /nylas/webhooks")  # template.yaml; checked by tests/contract
settings = get_settings()
secrets_client()
service = WebhookService(
    store=NotificationStore(settings.grants_table, dynamodb_client()),
    load_secrets=lambda force: webhook_secrets(settings, force_fetch=force),
    required_scopes=lifecycle.required_scopes(settings),
)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return service.handle(event).to_lambda()
