"""GET|POST /nylas/webhooks: Nylas's challenge and its signed grant notifications
(teams_connect.domain.webhooks).

Lean on purpose: the API Gateway HTTP API v2 event is read directly (no event-handler resolver);
DynamoDB and Secrets Manager clients are created once per container, at init. The Nylas client (httpx)
is built only on the first notification that cannot be ordered by time (a tie: Nylas decides).
"""

import time
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.adapters.secrets import SecretsProvider, secrets_client, webhook_secrets
from teams_connect.adapters.store.base import dynamodb_client
from teams_connect.adapters.store.notifications import NotificationStore
from teams_connect.config import get_settings
from teams_connect.domain.webhooks import WebhookService
from teams_connect.observability import logger, metrics, tracer
from teams_connect.rules import lifecycle

TIE_BUDGET_SECONDS = 5.0  # Nylas waits ~10 s for the answer to a delivery
_nylas: Any = None


def read_grant(grant_id: str) -> tuple[str, tuple[str, ...] | None]:
    """What Nylas says of the grant now (the V3 adapter, made on the first tie of this container)."""
    global _nylas
    if _nylas is None:
        from teams_connect.adapters.nylas.http import NylasHttp
        from teams_connect.adapters.nylas.v3 import V3Adapter

        _nylas = V3Adapter(
            settings,
            SecretsProvider(settings),
            http_factory=lambda: NylasHttp(settings.nylas_base_url, read_timeout=settings.nylas_read_timeout),
        )
    state: tuple[str, tuple[str, ...] | None] = _nylas.grant_state(
        grant_id, deadline=time.monotonic() + TIE_BUDGET_SECONDS
    )
    return state


ROUTES = ("GET /nylas/webhooks", "POST /nylas/webhooks")  # template.yaml; checked by tests/contract
settings = get_settings()
secrets_client()
service = WebhookService(
    store=NotificationStore(settings.grants_table, dynamodb_client()),
    load_secrets=lambda force: webhook_secrets(settings, force_fetch=force),
    required_scopes=lifecycle.required_scopes(settings),
    read_grant=read_grant,
)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return service.handle(event).to_lambda()
