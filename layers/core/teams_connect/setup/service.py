"""Entry points: ensure / tear down the Nylas side, from loaded credentials or from Secrets Manager."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .flavours import ensure_beta, ensure_v3, teardown_beta, teardown_v3
from .http import NylasSetupHttp, RetryPolicy
from .models import ON_DELETE, Action, Credentials, OnDelete, SetupError, SetupReport, SetupSpec
from .webhook import (
    PREVIOUS_SECRET_TTL,
    SecretStore,
    WebhookSpec,
    ensure_webhook,
    probe_challenge,
    teardown_webhook,
)


def _nylas_http(spec: SetupSpec, creds: Credentials, retry: RetryPolicy | None) -> NylasSetupHttp:
    if spec.flavour == "v3":
        if not creds.nylas_api_key:
            raise SetupError("the Nylas secret has no api_key (needed for the v3 flavour)")
        authorization = f"Bearer {creds.nylas_api_key}"
    else:
        if not creds.nylas_client_id or not creds.nylas_client_secret:
            raise SetupError("the Nylas secret needs client_id and client_secret (for the beta flavour)")
        token = base64.b64encode(f"{creds.nylas_client_id}:{creds.nylas_client_secret}".encode()).decode()
        authorization = f"Basic {token}"
    return NylasSetupHttp(spec.base_url, authorization, creds.secret_values(), retry=retry)


def ensure_nylas_side(
    spec: SetupSpec,
    credentials: Credentials,
    *,
    dry_run: bool = False,
    push_secret: bool = False,
    retry: RetryPolicy | None = None,
) -> SetupReport:
    """Create or update the Microsoft connector (v3) / integration (beta) and register the callback.

    Idempotent: a second run with the same input reads only and reports every object `unchanged`.
    `dry_run` reads only and reports what would be written. `push_secret` re-sends the Azure settings
    (with the client secret, which cannot be compared) even when nothing comparable changed.
    """
    if not isinstance(spec, SetupSpec):
        raise SetupError("spec must be a SetupSpec")
    if not credentials.azure_client_id or not credentials.azure_client_secret:
        raise SetupError("the Azure secret needs client_id and client_secret")
    with _nylas_http(spec, credentials, retry) as http:
        step = ensure_v3 if spec.flavour == "v3" else ensure_beta
        actions = step(http, spec, credentials, dry_run=dry_run, push_secret=push_secret)
    return SetupReport(spec.flavour, spec.base_url, dry_run, tuple(actions))


def teardown_nylas_side(
    spec: SetupSpec,
    credentials: Credentials,
    *,
    on_delete: OnDelete = "Retain",
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> SetupReport:
    """Undo this deployment's registration (the custom resource's Delete).

    `Retain` (default): remove only our callback URI (v3 redirect-URI registration; beta: our entry in
    the integration's `redirect_uris`) and keep the connector/integration, which is shared by every grant
    of the Nylas application (deleting it stops them all at once, nylas-api.md §1.8).
    `Remove`: also delete the connector (v3) / the integration (beta).
    Needs only the Nylas credentials; the Azure ones may be empty.
    """
    if on_delete not in ON_DELETE:
        raise SetupError(f"OnDelete must be one of {', '.join(ON_DELETE)}")
    with _nylas_http(spec, credentials, retry) as http:
        step = teardown_v3 if spec.flavour == "v3" else teardown_beta
        actions = step(http, spec, on_delete=on_delete, dry_run=dry_run)
    return SetupReport(spec.flavour, spec.base_url, dry_run, tuple(actions))


# -- Secrets Manager --------------------------------------------------------------------------------


def _read_json_secret(client: Any, arn: str, what: str) -> dict[str, Any]:
    if not isinstance(arn, str) or not arn:
        raise SetupError(f"the {what} secret ARN is required")
    try:
        answer = client.get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SetupError(f"could not read the {what} secret {arn}: {code}") from None
    except BotoCoreError as exc:
        raise SetupError(f"could not read the {what} secret {arn}: {type(exc).__name__}") from None
    text = answer.get("SecretString")
    if not isinstance(text, str):
        raise SetupError(f"the {what} secret {arn} has no SecretString")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise SetupError(f"the {what} secret {arn} is not a JSON object")
    return value


def _field(value: dict[str, Any], key: str, what: str, *, required: bool) -> str:
    item = value.get(key, "")
    if item is None:
        item = ""
    if not isinstance(item, str) or (required and not item):
        raise SetupError(f"the {what} secret has no usable {key!r}")
    return item


def load_credentials(
    nylas_secret_arn: str, azure_secret_arn: str | None, client: Any | None = None
) -> Credentials:
    """Read the Nylas secret `{"client_id", "api_key", "client_secret"}` and the Azure secret
    `{"client_id", "client_secret"}` (skipped when `azure_secret_arn` is None, e.g. for teardown).

    `client` is a boto3 Secrets Manager client (default: the default credential chain; AWS_ENDPOINT_URL
    is honoured by boto3). Errors name the ARN and the AWS error code, never a value.
    """
    if client is None:
        try:
            client = boto3.client("secretsmanager")
        except BotoCoreError as exc:
            raise SetupError(f"cannot use Secrets Manager: {type(exc).__name__}") from None
    sm = client
    nylas = _read_json_secret(sm, nylas_secret_arn, "Nylas")
    azure = _read_json_secret(sm, azure_secret_arn, "Azure") if azure_secret_arn is not None else {}
    return Credentials(
        nylas_client_id=_field(nylas, "client_id", "Nylas", required=True),
        nylas_api_key=_field(nylas, "api_key", "Nylas", required=False),
        nylas_client_secret=_field(nylas, "client_secret", "Nylas", required=False),
        azure_client_id=_field(azure, "client_id", "Azure", required=azure_secret_arn is not None),
        azure_client_secret=_field(azure, "client_secret", "Azure", required=azure_secret_arn is not None),
    )


def ensure(
    spec: SetupSpec,
    *,
    nylas_secret_arn: str,
    azure_secret_arn: str,
    dry_run: bool = False,
    push_secret: bool = False,
    client: Any | None = None,
    retry: RetryPolicy | None = None,
) -> SetupReport:
    """`ensure_nylas_side` with the credentials read from Secrets Manager."""
    credentials = load_credentials(nylas_secret_arn, azure_secret_arn, client)
    return ensure_nylas_side(spec, credentials, dry_run=dry_run, push_secret=push_secret, retry=retry)


def teardown(
    spec: SetupSpec,
    *,
    nylas_secret_arn: str,
    on_delete: OnDelete = "Retain",
    dry_run: bool = False,
    client: Any | None = None,
    retry: RetryPolicy | None = None,
) -> SetupReport:
    """`teardown_nylas_side` with the Nylas credentials read from Secrets Manager."""
    credentials = load_credentials(nylas_secret_arn, None, client)
    return teardown_nylas_side(spec, credentials, on_delete=on_delete, dry_run=dry_run, retry=retry)


# -- the webhook destination (v3) --------------------------------------------------------------------


def ensure_webhook_side(
    spec: SetupSpec,
    credentials: Credentials,
    webhook: WebhookSpec,
    store: SecretStore,
    *,
    dry_run: bool = False,
    rotate: bool = False,
    retire_previous: bool = False,
    previous_ttl: int = PREVIOUS_SECRET_TTL,
    retry: RetryPolicy | None = None,
    probe: Callable[[str], None] = probe_challenge,
) -> SetupReport:
    """Create or update the grant-notification webhook (v3) and keep its secret in `webhook.secret_arn`.
    Beta has no webhooks: nothing is done (its users get Grant Connected / Disconnected events only).
    Call it only once the webhook route serves: Nylas runs the challenge during the create call."""
    if spec.flavour != "v3":
        action = Action("webhook", webhook.url, "absent", "beta has no webhooks")
        return SetupReport(spec.flavour, spec.base_url, dry_run, (action,))
    with _nylas_http(spec, credentials, retry) as http:
        actions = ensure_webhook(
            http,
            webhook,
            store,
            dry_run=dry_run,
            rotate=rotate,
            retire_previous=retire_previous,
            previous_ttl=previous_ttl,
            probe=probe,
        )
    return SetupReport(spec.flavour, spec.base_url, dry_run, tuple(actions))


def teardown_webhook_side(
    spec: SetupSpec, credentials: Credentials, webhook_url: str, *, dry_run: bool = False
) -> SetupReport:
    """Delete this deployment's webhook destination (v3); beta: nothing to do."""
    if spec.flavour != "v3":
        return SetupReport(spec.flavour, spec.base_url, dry_run, ())
    with _nylas_http(spec, credentials, None) as http:
        actions = teardown_webhook(http, webhook_url, dry_run=dry_run)
    return SetupReport(spec.flavour, spec.base_url, dry_run, tuple(actions))
