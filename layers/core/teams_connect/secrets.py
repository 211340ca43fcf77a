"""Secrets Manager through Powertools Parameters: cached for `SECRETS_MAX_AGE`, re-read on demand.

The provider's boto3 client uses the standard retry mode (3 attempts, capped backoff, retry quota)
and explicit timeouts, like the DynamoDB client. It is registered among Powertools' default providers,
so `parameters.clear_caches()` forgets it (and its cache) too.
Secret values never appear in logs, reprs or exceptions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from botocore.config import Config

from teams_connect.config import Settings
from teams_connect.errors import ServerError, UpstreamUnavailable
from teams_connect.observability import logger

BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)
_PROVIDER_KEY = "teams_connect.secrets"
_provider_lock = threading.Lock()


def secrets_provider() -> parameters.SecretsProvider:
    """The container's Powertools SecretsProvider (created lazily, once per cache generation)."""
    provider = DEFAULT_PROVIDERS.get(_PROVIDER_KEY)
    if provider is None:
        with _provider_lock:
            provider = DEFAULT_PROVIDERS.get(_PROVIDER_KEY)
            if provider is None:
                provider = parameters.SecretsProvider(boto_config=BOTO_CONFIG)
                DEFAULT_PROVIDERS[_PROVIDER_KEY] = provider
    assert isinstance(provider, parameters.SecretsProvider)
    return provider


@dataclass(frozen=True, slots=True)
class NylasCredentials:
    client_id: str
    api_key: str = field(default="", repr=False)  # v3
    client_secret: str = field(default="", repr=False)  # beta


def get_json_secret(arn: str, *, max_age: int, force_fetch: bool = False) -> dict[str, Any]:
    """The JSON object stored in the secret `arn`. Fails closed (no value → an error page)."""
    try:
        value = secrets_provider().get(arn, transform="json", max_age=max_age, force_fetch=force_fetch)
    except parameters.exceptions.TransformParameterError:
        logger.error("secret is not a JSON object", extra={"secret_arn": arn})
        raise ServerError() from None
    except Exception as exc:  # GetParameterError and botocore errors: never log the value
        logger.error("secret could not be read", extra={"secret_arn": arn, "error_type": type(exc).__name__})
        raise UpstreamUnavailable() from None
    if not isinstance(value, dict):
        logger.error("secret is not a JSON object", extra={"secret_arn": arn})
        raise ServerError()
    return value


class SecretsProvider:
    """Typed access to the three secrets of the settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def nylas(self, *, force_fetch: bool = False) -> NylasCredentials:
        data = get_json_secret(
            self._settings.nylas_secret_arn, max_age=self._settings.secrets_max_age, force_fetch=force_fetch
        )
        client_id = data.get("client_id")
        field_name = "api_key" if self._settings.nylas_api == "v3" else "client_secret"
        secret = data.get(field_name)
        if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
            logger.error("Nylas secret lacks client_id or " + field_name)
            raise ServerError()
        if self._settings.nylas_api == "v3":
            return NylasCredentials(client_id=client_id, api_key=secret)
        return NylasCredentials(client_id=client_id, client_secret=secret)

    def api_keys(self, *, force_fetch: bool = False) -> tuple[str, ...]:
        data = get_json_secret(
            self._settings.api_keys_secret_arn,
            max_age=self._settings.secrets_max_age,
            force_fetch=force_fetch,
        )
        keys = data.get("api_keys")
        if (
            not isinstance(keys, list)
            or not all(isinstance(k, str) and len(k) >= 16 for k in keys)
            or not keys
        ):
            logger.error("API keys secret must be {'api_keys': [<string of >= 16 chars>, ...]}")
            raise ServerError()
        return tuple(keys)


def webhook_secrets(settings: Settings, *, force_fetch: bool = False) -> tuple[str, ...]:
    """The Nylas webhook secret(s) from `WEBHOOK_SECRET_ARN`: `{"webhook_secret", "previous_webhook_secret"
    (optional, the rotation overlap), "webhook_id"}`. Empty when the setup has not stored one yet."""
    if not settings.webhook_secret_arn:
        return ()
    data = get_json_secret(
        settings.webhook_secret_arn, max_age=settings.secrets_max_age, force_fetch=force_fetch
    )
    found = (data.get("webhook_secret"), data.get("previous_webhook_secret"))
    return tuple(s for s in found if isinstance(s, str) and len(s) >= 8)
