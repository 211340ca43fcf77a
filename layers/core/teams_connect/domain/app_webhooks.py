"""Deliver queued lifecycle events to the app's webhook URL (`functions/app_webhook`).

One SQS batch (FIFO, one message group: the order events reached the queue) is delivered in order.
Per message: build the contract's webhook (teams_connect.rules.app_webhooks), sign it with the current
key (and the previous one during a rotation's overlap), POST it (10 s timeout), then:
- 2xx: done (the message is deleted by Lambda);
- retryable failure (network, timeout, 408, 429, 5xx) within the 24 h budget: this message and every
  later one of the batch become visible again after the backoff (or Retry-After) and are reported as
  batch item failures, so the order holds and nothing overtakes the failed event;
- other 4xx, an exhausted budget, a malformed message: the whole message goes to the dead-letter
  queue (with the reason as message attributes) and delivery goes on with the next one.
Nothing is lost on an AWS failure: whatever could not be settled is reported as failed and comes back.
Logs name the webhook id and type, never the body (it holds the grant's email and the app's metadata).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from teams_connect.errors import ConnectError
from teams_connect.observability import logger, metrics
from teams_connect.rules.app_webhooks import (
    TIMEOUT_SECONDS,
    AppWebhook,
    Attempt,
    MalformedEvent,
    RetryPolicy,
    headers_for,
    signing_keys,
    webhook_for,
)

DELIVERED = "AppWebhookDelivered"
RETRIED = "AppWebhookRetried"
DEAD_LETTERED = "AppWebhookDeadLettered"
#: Start no delivery with less than this left of the invocation (the POST may take TIMEOUT_SECONDS).
_RESERVE_MS = int((TIMEOUT_SECONDS + 5) * 1000)
MAX_CLOCK_SCALE = 86400


class Sender(Protocol):
    def post(self, url: str, body: str, headers: Mapping[str, str]) -> Attempt: ...


class Queues(Protocol):
    def delay(self, receipt_handles: Sequence[str], seconds: int) -> None: ...

    def dead_letter(self, body: str, attributes: Mapping[str, str], dedupe_id: str) -> None: ...


@dataclass(frozen=True)
class AppWebhookSettings:
    url: str
    secret_arn: str
    queue_url: str
    dead_letter_url: str
    secrets_max_age: int = 300
    clock_scale: int = 1  # > 1 only locally (local/app_webhooks.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppWebhookSettings:
        from teams_connect.config import ConfigError

        e = os.environ if env is None else env
        scale_raw = e.get("APP_WEBHOOK_CLOCK_SCALE", "").strip() or "1"
        max_age_raw = e.get("SECRETS_MAX_AGE", "").strip() or "300"
        if not scale_raw.isdigit() or not 1 <= int(scale_raw) <= MAX_CLOCK_SCALE:
            raise ConfigError(f"APP_WEBHOOK_CLOCK_SCALE must be 1 to {MAX_CLOCK_SCALE}")
        if not max_age_raw.isdigit():
            raise ConfigError("SECRETS_MAX_AGE must be an integer")
        settings = cls(
            url=e.get("APP_WEBHOOK_URL", "").strip(),
            secret_arn=e.get("APP_WEBHOOK_SECRET_ARN", "").strip(),
            queue_url=e.get("APP_WEBHOOK_QUEUE_URL", "").strip(),
            dead_letter_url=e.get("APP_WEBHOOK_DEAD_LETTER_URL", "").strip(),
            secrets_max_age=int(max_age_raw),
            clock_scale=int(scale_raw),
        )
        for name, value in (
            ("APP_WEBHOOK_URL", settings.url),
            ("APP_WEBHOOK_SECRET_ARN", settings.secret_arn),
            ("APP_WEBHOOK_QUEUE_URL", settings.queue_url),
            ("APP_WEBHOOK_DEAD_LETTER_URL", settings.dead_letter_url),
        ):
            if not value:
                raise ConfigError(f"{name} is required by the app webhook delivery")
        _check_url(settings.url)
        return settings


def _check_url(url: str) -> None:
    """https, or http for a loopback host only (the template's AllowedPattern, checked again)."""
    from urllib.parse import urlsplit

    from teams_connect.config import ConfigError, is_loopback_host

    parts = urlsplit(url)
    if any(c.isspace() for c in url) or "@" in parts.netloc or not parts.hostname:
        raise ConfigError("APP_WEBHOOK_URL must be an absolute URL without userinfo")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return
    raise ConfigError("APP_WEBHOOK_URL must use https (http only for 127.0.0.1, localhost, [::1])")


@dataclass(frozen=True)
class Message:
    """The parts of a Lambda SQS record the delivery reads."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    first_received: float  # Unix seconds of the first attempt

    @classmethod
    def from_record(cls, record: Mapping[str, Any], now: float) -> Message:
        attributes = record.get("attributes") or {}
        first_ms = str(attributes.get("ApproximateFirstReceiveTimestamp") or "")
        return cls(
            message_id=str(record.get("messageId") or ""),
            receipt_handle=str(record.get("receiptHandle") or ""),
            body=str(record.get("body") or ""),
            receive_count=int(str(attributes.get("ApproximateReceiveCount") or "1") or "1"),
            first_received=int(first_ms) / 1000 if first_ms.isdigit() else now,
        )


class Delivery:
    def __init__(
        self,
        settings: AppWebhookSettings,
        *,
        sender: Sender,
        queues: Queues,
        secret: Callable[[], Mapping[str, Any]],
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.queues = queues
        self.secret = secret
        self.clock = clock
        self.rand = rand
        self.policy = RetryPolicy(scale=settings.clock_scale)

    def handle(self, records: Sequence[Mapping[str, Any]], remaining_ms: Callable[[], int]) -> list[str]:
        """Deliver the batch in order; returns the message ids to report as batch item failures."""
        now = self.clock()
        messages = [Message.from_record(r, now) for r in records]
        for index, message in enumerate(messages):
            rest = messages[index:]
            if remaining_ms() < _RESERVE_MS:
                return self._defer(rest, 0, "invocation time running out")
            try:
                webhook = webhook_for(message.body)
            except MalformedEvent as exc:
                if not self._dead_letter(message, None, f"malformed: {exc}", None):
                    return self._defer(rest, self.policy.delay_for(1, Attempt(), self.clock()), "dead letter")
                continue
            now = self.clock()
            try:
                keys = signing_keys(self.secret(), now)
            except (ValueError, ConnectError) as exc:
                # No key, no delivery (never unsigned); the secret comes back or an alarm fires first.
                logger.error("app webhook secret unusable", extra={"error_type": type(exc).__name__})
                delay = self.policy.delay_for(message.receive_count, Attempt(error="secret"), now, self.rand)
                return self._defer(rest, delay, "secret unusable")
            outcome = self.sender.post(self.settings.url, webhook.body, headers_for(keys, webhook, now))
            log = {
                "webhook_id": webhook.webhook_id,
                "webhook_type": webhook.type,
                "attempt": message.receive_count,
                "outcome": outcome.describe(),
            }
            if outcome.delivered:
                logger.info("app webhook delivered", extra=log)
                metrics.add_metric(name=DELIVERED, unit=MetricUnit.Count, value=1)
                continue
            if not outcome.retryable or self.policy.exhausted(message.first_received, self.clock()):
                reason = "refused" if not outcome.retryable else "retry budget spent"
                if self._dead_letter(message, webhook, reason, outcome):
                    continue
                outcome = Attempt(error="dead letter queue unavailable")
            delay = self.policy.delay_for(message.receive_count, outcome, self.clock(), self.rand)
            logger.warning("app webhook will be retried", extra={**log, "delay_seconds": delay})
            metrics.add_metric(name=RETRIED, unit=MetricUnit.Count, value=1)
            return self._defer(rest, delay, outcome.describe())
        return []

    def _defer(self, rest: Sequence[Message], seconds: int, why: str) -> list[str]:
        """This message and every later one come back together after `seconds` (order kept)."""
        try:
            self.queues.delay([m.receipt_handle for m in rest], seconds)
        except Exception as exc:  # botocore: they come back after the queue's visibility timeout
            logger.error("visibility change failed", extra={"error_type": type(exc).__name__, "why": why})
        return [m.message_id for m in rest]

    def _dead_letter(
        self, message: Message, webhook: AppWebhook | None, reason: str, outcome: Attempt | None
    ) -> bool:
        attributes = {
            "reason": reason,
            "last_outcome": outcome.describe() if outcome else "",
            "attempts": str(message.receive_count),
            "webhook_id": webhook.webhook_id if webhook else "",
            "webhook_type": webhook.type if webhook else "",
        }
        try:
            self.queues.dead_letter(message.body, attributes, dedupe_id=message.message_id)
        except Exception as exc:  # botocore: kept in the queue, retried later
            logger.error("dead-lettering failed", extra={"error_type": type(exc).__name__})
            return False
        logger.error(
            "app webhook dead-lettered",
            extra={
                k: v
                for k, v in attributes.items()
                if k in ("reason", "last_outcome", "attempts", "webhook_id")
            },
        )
        metrics.add_metric(name=DEAD_LETTERED, unit=MetricUnit.Count, value=1)
        return True


def build_delivery(settings: AppWebhookSettings | None = None) -> Delivery:
    """The container's delivery: clients created once, no network call at init."""
    from teams_connect.adapters.app_webhooks import HttpSender, SqsQueues
    from teams_connect.adapters.secrets import get_json_secret

    s = settings or AppWebhookSettings.from_env()
    return Delivery(
        s,
        sender=HttpSender(),
        queues=SqsQueues(s.queue_url, s.dead_letter_url),
        secret=lambda: get_json_secret(s.secret_arn, max_age=s.secrets_max_age),
    )
