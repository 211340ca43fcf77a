"""The app webhook's outside systems: the receiver (HTTPS POST with httpx) and the SQS queues
(backoff by changing a message's visibility; the dead-letter queue), created once per container."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from botocore.config import Config

from teams_connect.adapters import aws, tls
from teams_connect.rules.app_webhooks import TIMEOUT_SECONDS, Attempt

#: 10 s for the whole answer: connect, send, wait, read (a receiver should answer 2xx at once).
_TIMEOUT = httpx.Timeout(TIMEOUT_SECONDS, connect=5.0, pool=1.0)
_MAX_ANSWER_BYTES = 4096  # only the status and Retry-After matter; a huge answer is not read


class HttpSender:
    """POSTs one webhook; never follows redirects (a signed event goes where it was configured to)."""

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            timeout=_TIMEOUT, follow_redirects=False, transport=transport, verify=tls.context()
        )

    def post(self, url: str, body: str, headers: Mapping[str, str]) -> Attempt:
        try:
            with self._client.stream(
                "POST", url, content=body.encode("utf-8"), headers=dict(headers)
            ) as answer:
                read = 0
                for chunk in answer.iter_bytes():
                    read += len(chunk)
                    if read >= _MAX_ANSWER_BYTES:
                        break
                return Attempt(status=answer.status_code, retry_after=answer.headers.get("retry-after"))
        except httpx.TimeoutException as exc:
            return Attempt(error=type(exc).__name__)
        except httpx.HTTPError as exc:
            return Attempt(error=type(exc).__name__)


_sqs: Any = None
_lock = threading.Lock()


def sqs_client() -> Any:
    """The container's SQS client (botocore, standard retries, explicit timeouts)."""
    global _sqs
    if _sqs is None:
        with _lock:
            if _sqs is None:
                _sqs = aws.session().create_client(
                    "sqs", config=Config(retries={"mode": "standard"}, connect_timeout=2, read_timeout=5)
                )
    return _sqs


class SqsQueues:
    """The delivery queue (visibility = backoff) and its FIFO dead-letter queue."""

    def __init__(self, queue_url: str, dead_letter_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else sqs_client()

    def delay(self, receipt_handles: Sequence[str], seconds: int) -> None:
        """Make these in-flight messages visible again in `seconds` (their next attempt)."""
        for start in range(0, len(receipt_handles), 10):
            chunk = receipt_handles[start : start + 10]
            answer = self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": seconds}
                    for i, handle in enumerate(chunk)
                ],
            )
            if answer.get("Failed"):
                raise RuntimeError(f"{len(answer['Failed'])} visibility changes failed")

    def dead_letter(self, body: str, attributes: Mapping[str, str], dedupe_id: str) -> None:
        """Keep the whole event (the message body as EventBridge wrote it) with why it gave up."""
        self.client.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=body,
            MessageGroupId="lifecycle",
            MessageDeduplicationId=dedupe_id,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value[:256]}
                for name, value in attributes.items()
                if value
            },
        )
