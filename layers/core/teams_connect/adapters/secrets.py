"""Secrets Manager through one botocore client: JSON secrets cached for a max age, re-read on demand.

The same rules as Powertools Parameters (which this replaces: it imports boto3 and s3transfer, about
150 ms of every cold start): a value is served from the container's cache until it is `max_age`
seconds old; `force_fetch=True` reads it again (a Nylas 401 does, see `nylas.http`). The client uses
the standard retry mode (3 attempts, capped backoff, retry quota) and explicit timeouts, like the
DynamoDB client, and is created at init without any network call.

Backend API keys (security review F7): the keys secret has a shorter max age
(`API_KEYS_MAX_AGE`, 60 s) so that a revoked key stops working within a minute in every warm
container, and a key that matches nothing forces one re-read, so that a newly added key works at
once. That re-read happens at most once per `API_KEYS_REREAD_INTERVAL` (30 s) per container: a flood
of wrong keys costs at most one Secrets Manager call per container per 30 s.

Secret values never appear in logs, reprs or exceptions.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

from teams_connect.adapters import aws
from teams_connect.config import Settings
from teams_connect.errors import ServerError, Unauthorized, UpstreamUnavailable
from teams_connect.observability import logger
from teams_connect.rules import security

BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)
API_KEYS_MAX_AGE = 60
API_KEYS_REREAD_INTERVAL = 30.0
API_KEYS_FORMATTED_REREAD_INTERVAL = 5.0

_client: Any = None
_client_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # arn -> (read at, monotonic; value)
_cache_lock = threading.Lock()


def secrets_client() -> Any:
    """The container's one Secrets Manager client (botocore; created once, no network call)."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = aws.session().create_client("secretsmanager", config=BOTO_CONFIG)
    return _client


def clear_caches() -> None:
    """Forget the cached values and the client (tests; a new container)."""
    global _client
    with _cache_lock:
        _cache.clear()
    _client = None


class SecretUnavailable(UpstreamUnavailable):
    """Secrets Manager did not give the secret (AccessDenied, e.g. no kms:Decrypt on a customer-managed
    key; throttling; an outage). A scheduled function fails its invocation on it (security review 3, G1)."""


class SecretInvalid(ServerError):
    """The secret is there but not what the deployment needs (not JSON, a field missing)."""


def _fetch(arn: str) -> dict[str, Any]:
    try:
        raw = secrets_client().get_secret_value(SecretId=arn).get("SecretString")
    except Exception as exc:  # botocore ClientError / BotoCoreError: never log the value
        code = (
            getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
        )
        logger.error(
            "secret could not be read",
            extra={"secret_arn": arn, "error_type": type(exc).__name__, "error_code": str(code)[:64]},
        )
        raise SecretUnavailable() from None
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        logger.error("secret is not a JSON object", extra={"secret_arn": arn})
        raise SecretInvalid()
    return value


def get_json_secret(
    arn: str, *, max_age: float, force_fetch: bool = False, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """The JSON object stored in the secret `arn`: cached for `max_age` seconds. Fails closed (no
    value → an error); a failed read keeps the cached value for the next call."""
    if not force_fetch:
        with _cache_lock:
            cached = _cache.get(arn)
        if cached is not None and clock() - cached[0] < max_age:
            return cached[1]
    value = _fetch(arn)
    with _cache_lock:
        _cache[arn] = (clock(), value)
    return value


@dataclass(frozen=True)
class NylasCredentials:
    client_id: str
    api_key: str = field(default="", repr=False)  # v3
    client_secret: str = field(default="", repr=False)  # beta


class SecretsProvider:
    """Typed access to the secrets of the settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._last_forced_keys_read = float("-inf")
        self._last_formatted_keys_read = float("-inf")
        self._keys_lock = threading.Lock()

    def nylas(self, *, force_fetch: bool = False) -> NylasCredentials:
        data = get_json_secret(
            self._settings.nylas_secret_arn,
            max_age=self._settings.secrets_max_age,
            force_fetch=force_fetch,
            clock=self._clock,
        )
        client_id = data.get("client_id")
        field_name = "api_key" if self._settings.nylas_api == "v3" else "client_secret"
        secret = data.get(field_name)
        if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
            logger.error("Nylas secret lacks client_id or " + field_name)
            raise SecretInvalid()
        if self._settings.nylas_api == "v3":
            return NylasCredentials(client_id=client_id, api_key=secret)
        return NylasCredentials(client_id=client_id, client_secret=secret)

    def api_keys(self, *, force_fetch: bool = False) -> tuple[str, ...]:
        data = get_json_secret(
            self._settings.api_keys_secret_arn,
            max_age=min(self._settings.secrets_max_age, API_KEYS_MAX_AGE),
            force_fetch=force_fetch,
            clock=self._clock,
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

    def api_keys_after_mismatch(self, *, recognised: bool = False) -> tuple[str, ...] | None:
        """The keys read again after a presented key matched none of the cached ones, or None when
        this container already re-read them recently or the read failed (the caller then answers 401:
        the key matches nothing known). A key of the recognisable form (`security.api_key_recognised`)
        has its own slot, every `API_KEYS_FORMATTED_REREAD_INTERVAL` (5 s), that no other token can use
        up; any other token shares one re-read per `API_KEYS_REREAD_INTERVAL` (30 s)."""
        with self._keys_lock:
            now = self._clock()
            if recognised:
                if now - self._last_formatted_keys_read < API_KEYS_FORMATTED_REREAD_INTERVAL:
                    return None
                self._last_formatted_keys_read = now
            else:
                if now - self._last_forced_keys_read < API_KEYS_REREAD_INTERVAL:
                    return None
                self._last_forced_keys_read = now
        try:
            return self.api_keys(force_fetch=True)
        except (UpstreamUnavailable, ServerError):
            return None

    def authenticate(self, authorization: str | None) -> None:
        """`Authorization: Bearer <key>` against every configured key, in constant time; a presented
        key that matches none forces one re-read (rate-limited, above), so a key added by a rotation
        works at once. The one implementation for every API route (security review 3, G5)."""
        keys = self.api_keys()
        try:
            security.authenticate_bearer(authorization, keys)
        except Unauthorized:
            token = security.bearer_token(authorization)
            if not token:
                raise
            fresh = self.api_keys_after_mismatch(recognised=security.api_key_recognised(token))
            if fresh is None or fresh == keys:
                raise
            security.authenticate_bearer(authorization, fresh)


def webhook_secrets(
    settings: Settings, *, force_fetch: bool = False, now: Callable[[], float] = time.time
) -> tuple[str, ...]:
    """The Nylas webhook secret(s) from `WEBHOOK_SECRET_ARN`: `{"webhook_secret", "previous_webhook_secret"
    (optional, the rotation overlap) until "previous_expires_at" (epoch seconds), "webhook_id"}`. A
    previous secret without an expiry, or past it, is not accepted (security review 3, G3: a rotated-out
    secret stops working after the overlap). Empty when the setup has not stored one yet."""
    if not settings.webhook_secret_arn:
        return ()
    data = get_json_secret(
        settings.webhook_secret_arn, max_age=settings.secrets_max_age, force_fetch=force_fetch
    )
    found = [data.get("webhook_secret")]
    expires = data.get("previous_expires_at")
    if isinstance(expires, int | float) and not isinstance(expires, bool) and now() < expires:
        found.append(data.get("previous_webhook_secret"))
    return tuple(s for s in found if isinstance(s, str) and len(s) >= 8)
