"""Nylas-side setup for both flavours: the Microsoft connector (v3) or integration (beta) and the
callback URI, created or updated idempotently; in v3 also the grant-notification webhook and its secret
(`ensure_webhook_side`, setup/webhook.py). Used by the `nylas_setup` custom resource, the operator
command `tools/nylas_setup.py` and the local stack (`ensure_nylas_side` with already-loaded credentials).

Delete policy (`teardown`): by default (`Retain`) only this deployment's callback URI is removed and the
connector/integration is kept, because deleting it stops every grant of the Nylas application at once;
`Remove` deletes it too.
"""

from .http import RetryPolicy
from .models import (
    DEFAULT_SCOPES,
    Action,
    Credentials,
    Flavour,
    OnDelete,
    Outcome,
    SetupError,
    SetupReport,
    SetupSpec,
    check_tenant,
    default_base_url,
    physical_resource_id,
    redact,
    resolve_base_url,
)
from .service import (
    ensure,
    ensure_nylas_side,
    ensure_webhook_side,
    load_credentials,
    teardown,
    teardown_nylas_side,
    teardown_webhook_side,
)
from .webhook import GRANT_TRIGGERS, SecretsManagerStore, WebhookSpec, probe_challenge

__all__ = [
    "DEFAULT_SCOPES",
    "GRANT_TRIGGERS",
    "Action",
    "Credentials",
    "Flavour",
    "OnDelete",
    "Outcome",
    "RetryPolicy",
    "SecretsManagerStore",
    "SetupError",
    "SetupReport",
    "SetupSpec",
    "WebhookSpec",
    "check_tenant",
    "default_base_url",
    "ensure",
    "ensure_nylas_side",
    "ensure_webhook_side",
    "load_credentials",
    "physical_resource_id",
    "probe_challenge",
    "redact",
    "resolve_base_url",
    "teardown",
    "teardown_nylas_side",
    "teardown_webhook_side",
]
