"""A local stand-in for Lambda's DynamoDB Streams event source mapping (moto's stream → a handler).

It polls the table's stream in moto, hands each batch to the handler as Lambda would (`{"Records": [...]}`
with `eventSourceARN`, `ApproximateCreationDateTime` as epoch seconds) and honours
`ReportBatchItemFailures`: when the handler reports failures (or raises), the batch is retried from the
first failed record after a short pause, so nothing is skipped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from moto.events.models import EventPattern

from local.aws import client

LOG = logging.getLogger("local.streams")
Handler = Callable[[dict[str, Any], Any], Any]


MAX_IDLE_INTERVAL = 1.0
SHARD_REFRESH_SECONDS = 5.0
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
        filters: Sequence[Mapping[str, Any]] = (),
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
        self.filters = [EventPattern.load(json.dumps(p)) for p in filters]
        self._shards: list[str] | None = None
        self._described_at = 0.0
        self._next: dict[str, str] = {}  # shard → the iterator the last GetRecords handed back
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
        """An iterator per shard: the one the last GetRecords handed back, else one from the last
        position handled (after a failed batch, or for a shard not seen yet). The stream is described
        once per `SHARD_REFRESH_SECONDS`, not on every poll: each moto call costs the stack's one CPU."""
        now = time.monotonic()
        if self._shards is None or now - self._described_at >= SHARD_REFRESH_SECONDS:
            description = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
            self._shards = [shard["ShardId"] for shard in description["Shards"]]
            self._described_at = now
        iterators: dict[str, str] = {}
        for shard_id in self._shards:
            cached = self._next.get(shard_id)
            if cached:
                iterators[shard_id] = cached
                continue
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
                self._next.clear()  # start again from the positions handled
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
            answer = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            batch = answer.get("Records") or []
            self._next[shard_id] = answer.get("NextShardIterator") or ""
            if not batch:
                continue
            progressed = True
            # Lambda drops what the filter criteria do not match, without an invocation.
            records = [self._lambda_record(r) for r in batch]
            wanted = [r for r in records if self._wanted(r)]
            failures: list[str] = []
            if wanted:
                try:
                    answer = self.handler({"Records": wanted}, self.context_factory())
                    failures = [f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures") or []]
                except Exception:
                    LOG.exception("stream handler raised: the batch is retried")
                    failures = [wanted[0]["dynamodb"]["SequenceNumber"]]
                self.batches += 1
            if failures:
                first = int(min(failures, key=int))
                done = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) < first]
                if done:
                    positions[shard_id] = done[-1]["dynamodb"]["SequenceNumber"]
                self._next.pop(shard_id, None)  # retried from the first failed record
                self._stop.wait(self.retry_pause)
                continue
            positions[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return progressed

    def _wanted(self, record: dict[str, Any]) -> bool:
        """The event source mapping's `FilterCriteria` (any of its patterns), as Lambda applies them."""
        return not self.filters or any(f.matches_event(record) for f in self.filters)  # type: ignore[arg-type]

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}
