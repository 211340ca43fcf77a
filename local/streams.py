"""A local stand-in for Lambda's DynamoDB Streams event source mapping (moto's stream → a handler).

It polls the table's stream in moto, hands each batch to the handler as Lambda would (`{"Records": [...]}`
with `eventSourceARN`, `ApproximateCreationDateTime` as epoch seconds) and honours
`ReportBatchItemFailures`: when the handler reports failures (or raises), the batch is retried from the
first failed record after a short pause, so nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from local.aws import client

LOG = logging.getLogger("local.streams")
Handler = Callable[[dict[str, Any], Any], Any]


MAX_IDLE_INTERVAL = 1.0
# Every running poller by table, for the stack's control API (`GET /_local/streams`): a caller can
# wait until each has polled and found nothing since its own last write (tests/chaos).
POLLERS: dict[str, StreamPoller] = {}


class StreamPoller:
    def __init__(
        self,
        endpoint_url: str,
        table: str,
        handler: Handler,
        context_factory: Callable[[], Any],
        *,
        interval: float = 0.2,
        retry_pause: float = 0.5,
        batch_size: int = 100,
    ) -> None:
        self.dynamodb = client("dynamodb", endpoint_url)
        self.streams = client("dynamodbstreams", endpoint_url)
        self.table = table
        self.handler = handler
        self.context_factory = context_factory
        self.interval = interval
        self.retry_pause = retry_pause
        self.batch_size = batch_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{table}", daemon=True)
        self.stream_arn = str(self.dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"])
        self.batches = 0
        self.idle_polls = 0  # polls that found nothing to do (no new record, no failed batch)

    def start(self) -> StreamPoller:
        self._thread.start()
        POLLERS[self.table] = self
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if POLLERS.get(self.table) is self:
            del POLLERS[self.table]

    def describe(self) -> dict[str, int]:
        return {"batches": self.batches, "idle_polls": self.idle_polls}

    def _iterators(self, positions: dict[str, str]) -> dict[str, str]:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        iterators: dict[str, str] = {}
        for shard in shards:
            shard_id = shard["ShardId"]
            after = positions.get(shard_id)
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
            if after:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
            else:
                kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            iterators[shard_id] = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        return iterators

    def _run(self) -> None:
        positions: dict[str, str] = {}  # shard → last sequence number handled
        idle = self.interval
        while not self._stop.is_set():
            try:
                progressed = self._poll_once(positions)
            except Exception:
                LOG.exception("stream poll failed")
                progressed = False
            if progressed:
                idle = self.interval
            else:
                self.idle_polls += 1
                # An idle stack (the test suites keep several alive) backs off to one poll a second
                # instead of three moto calls every `interval`; any record brings the pace back.
                self._stop.wait(idle)
                idle = min(idle * 2, MAX_IDLE_INTERVAL)

    def _poll_once(self, positions: dict[str, str]) -> bool:
        progressed = False
        for shard_id, iterator in self._iterators(positions).items():
            records = (
                self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size).get("Records") or []
            )
            if not records:
                continue
            event = {"Records": [self._lambda_record(r) for r in records]}
            try:
                answer = self.handler(event, self.context_factory())
                failures = [f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures") or []]
            except Exception:
                LOG.exception("stream handler raised: the batch is retried")
                failures = [records[0]["dynamodb"]["SequenceNumber"]]
            self.batches += 1
            if failures:
                first = min(failures, key=int)
                done = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) < int(first)]
                if done:
                    positions[shard_id] = done[-1]["dynamodb"]["SequenceNumber"]
                self._stop.wait(self.retry_pause)
                progressed = True
                continue
            positions[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
            progressed = True
        return progressed

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}
