"""App webhooks, locally: the template's rule → FIFO queue → delivery function, with moto's SQS.

Read from template.yaml (nothing declared twice):
- the queues `AppWebhookQueue`, `AppWebhookDeadLetters`, `AppWebhookRuleDeadLetters` with their
  attributes (FIFO, content-based deduplication, visibility, retention, redrive policy) → created in moto;
- the rule `AppWebhookRule`: its event pattern (`source`, `detail-type`) and the target's static
  `MessageGroupId` → `RuleTarget`, a target of the local EventBridge (local/eventbridge.py) that sends
  the event as EventBridge would: the whole event envelope as the message body;
- the function's SQS event (`BatchSize`) → `QueuePoller`, a stand-in for Lambda's SQS event source
  mapping: it receives up to BatchSize messages with all attributes, calls the real handler with a
  Lambda-shaped `{"Records": [...]}` and deletes every message not reported in `batchItemFailures`
  (`ReportBatchItemFailures`); a handler that raises deletes nothing.

The delivery function's clock is compressed locally with `APP_WEBHOOK_CLOCK_SCALE` (the stack sets
it): its backoff steps and 24 h budget are divided by the scale, so a person watches retries and the
dead-letter queue within a minute.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local import clock
from local.aws import REGION, client
from local.template import LOCAL_PSEUDO_PARAMETERS, Template

LOG = logging.getLogger("local.app_webhooks")
QUEUE_IDS = ("AppWebhookDeadLetters", "AppWebhookRuleDeadLetters", "AppWebhookQueue")
RULE_ID = "AppWebhookRule"
FUNCTION_ID = "AppWebhookFunction"
Handler = Callable[[dict[str, Any], Any], Any]


def _resource(template: Template, logical_id: str) -> dict[str, Any]:
    return dict((template.get("Resources") or {})[logical_id].get("Properties") or {})


@dataclass(frozen=True)
class LocalQueues:
    urls: dict[str, str]  # logical id → queue URL
    arns: dict[str, str]  # logical id → queue ARN


def make_fifo_groups_faithful() -> None:
    """A FIFO message group is locked while one of its messages is in flight, as in SQS (idempotent).

    moto counts a message as "pending" until a receive notices it is visible again, and one receive
    notices them one by one: after a batch of three whose visibility ran out together, it unlocked the
    group only at the third and delivered the third first (seen: a `grant.disconnected` webhook
    overtook the `grant.expired` retried before it). Only messages still invisible lock their group
    here. This changes moto only, never the product code (like local.aws.make_dynamodb_atomic)."""
    from moto.sqs.models import Queue

    def in_flight_groups(self: Any) -> set[str]:
        return {m.group_id for m in self._pending_messages if m.group_id is not None and not m.visible}

    Queue.pending_message_groups = property(in_flight_groups)  # type: ignore[method-assign,assignment]


def create_queues(endpoint_url: str, template: Template) -> LocalQueues:
    """The template's app-webhook queues in moto (dead letters first: the redrive policy names them)."""
    make_fifo_groups_faithful()
    sqs = client("sqs", endpoint_url)
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id in QUEUE_IDS:
        props = _resource(template, logical_id)
        fifo = bool(props.get("FifoQueue"))
        attributes: dict[str, str] = {}
        if fifo:
            attributes["FifoQueue"] = "true"
            dedupe = bool(props.get("ContentBasedDeduplication"))
            attributes["ContentBasedDeduplication"] = "true" if dedupe else "false"
        for name in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if name in props:
                attributes[name] = str(props[name])
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[target], "maxReceiveCount": int(redrive["maxReceiveCount"])}
            )
        name = f"{logical_id}.fifo" if fifo else logical_id
        url = str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        urls[logical_id] = url
        arns[logical_id] = str(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        )
    return LocalQueues(urls, arns)


def _matches(pattern: Mapping[str, Any], envelope: Mapping[str, Any]) -> bool:
    """EventBridge's exact-value matching, for the top-level fields the rule uses."""
    return all(envelope.get(field) in values for field, values in pattern.items())


class RuleTarget:
    """`AppWebhookRule` → `AppWebhookQueue`: a target of the local EventBridge."""

    def __init__(self, endpoint_url: str, template: Template, queue_url: str) -> None:
        props = _resource(template, RULE_ID)
        self.pattern: dict[str, Any] = dict(props["EventPattern"])
        (target,) = props["Targets"]
        self.group_id = str(target["SqsParameters"]["MessageGroupId"])
        self.queue_url = queue_url
        self.sqs = client("sqs", endpoint_url)
        self.sent = 0

    def __call__(self, event: dict[str, Any]) -> None:
        envelope = {
            "version": "0",
            "id": event.get("id") or str(uuid.uuid4()),
            "detail-type": event.get("detail_type"),
            "source": event.get("source"),
            "account": LOCAL_PSEUDO_PARAMETERS["AWS::AccountId"],
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": [],
            "detail": event.get("detail"),
        }
        if not _matches(self.pattern, envelope):
            return
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(envelope, separators=(",", ":")),
            MessageGroupId=self.group_id,
        )
        self.sent += 1


def batch_size(template: Template) -> int:
    events = _resource(template, FUNCTION_ID).get("Events") or {}
    (event,) = (e for e in events.values() if e.get("Type") == "SQS")
    return int((event.get("Properties") or {}).get("BatchSize", 10))


class QueuePoller:
    """Lambda's SQS event source mapping, locally: one batch at a time, partial batch responses."""

    def __init__(
        self,
        endpoint_url: str,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        context_factory: Callable[[], Any],
        *,
        batch_size: int = 10,
        wait_seconds: int = 1,
    ) -> None:
        self.sqs = client("sqs", endpoint_url)
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.context_factory = context_factory
        self.batch_size = batch_size
        self.wait_seconds = wait_seconds
        self.batches = 0
        self._deferred: set[str] = set()  # messages reported as failures: in flight, holding the group
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-app-webhook", daemon=True)

    def start(self) -> QueuePoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                LOG.exception("app webhook queue poll failed")
                self._stop.wait(1.0)

    def poll_once(self) -> int:
        """Receive one batch and hand it to the handler; returns the number of messages received."""
        if self._group_held():
            # SQS FIFO returns no message of a group while an earlier one of it is in flight, also
            # while it waits out a backoff (a changed visibility); moto returned later messages then,
            # and a later event overtook a deferred one. The rule sends every event in one group.
            self._stop.wait(0.05)
            return 0
        messages = (
            self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=self.wait_seconds,
            ).get("Messages")
            or []
        )
        if not messages:
            return 0
        records = [self._lambda_record(m) for m in messages]
        try:
            with clock.steady():  # signed and verified in one time line (local/clock.py)
                answer = self.handler({"Records": records}, self.context_factory())
            failed = {str(f["itemIdentifier"]) for f in (answer or {}).get("batchItemFailures") or []}
        except Exception:
            LOG.exception("app webhook handler raised: the batch stays in the queue")
            failed = {m["MessageId"] for m in messages}
        self.batches += 1
        for m in messages:  # reported failures wait out their backoff, in flight: their group is held
            if m["MessageId"] in failed:
                self._deferred.add(m["MessageId"])
            else:
                self._deferred.discard(m["MessageId"])
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        return len(messages)

    def _group_held(self) -> bool:
        """A deferred message is still in flight in moto (this process's moto: the local stack's)."""
        if not self._deferred:
            return False
        from moto.sqs.models import sqs_backends

        try:
            backend = sqs_backends[LOCAL_PSEUDO_PARAMETERS["AWS::AccountId"]][REGION]
            queue = backend.get_queue(self.queue_url.rsplit("/", 1)[-1])
        except Exception:  # not this process's moto: its own FIFO behaviour, as before
            self._deferred.clear()
            return False
        waiting = {m.id: m for m in list(queue._messages) if m.id in self._deferred}
        for message_id in list(self._deferred):
            if message_id not in waiting:  # gone (deleted, or moved by the redrive policy)
                self._deferred.discard(message_id)
        return any(not m.visible for m in waiting.values())

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": dict(message.get("MessageAttributes") or {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }


#: The local stack's compressed clock: 24 h of retry budget pass in one minute.
DEFAULT_CLOCK_SCALE = 1440
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_generated_secret(length: int) -> str:
    """What the template's GenerateSecretString (letters and digits, no punctuation) makes."""
    import secrets

    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def generated_secret_string(template: Template, logical_id: str) -> str:
    """The SecretString a template secret with GenerateSecretString would hold, generated locally."""
    spec = _resource(template, logical_id)["GenerateSecretString"]
    value = json.loads(spec.get("SecretStringTemplate") or "{}")
    value[spec["GenerateStringKey"]] = new_generated_secret(int(spec["PasswordLength"]))
    return json.dumps(value)


def start_delivery(
    endpoint_url: str, template: Template, queues: LocalQueues, route: Any, handler: Handler
) -> QueuePoller:
    """The SQS event source of `AppWebhookFunction`, locally (its own environment, as in Lambda)."""
    from local.gateway import make_context

    return QueuePoller(
        endpoint_url,
        queues.urls["AppWebhookQueue"],
        queues.arns["AppWebhookQueue"],
        handler,
        lambda: make_context(route),
        batch_size=batch_size(template),
    ).start()


def whsec_of(secret_string: str) -> str:
    """The receiver's `whsec_` secret of the stored app webhook secret JSON."""
    return "whsec_" + str(json.loads(secret_string)["secret"])
