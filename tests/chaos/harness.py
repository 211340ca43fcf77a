"""The campaign's hands and eyes on a running local stack: its public routes (as a SaaS backend and a
browser use them), the Nylas emulator's control API (Nylas-side changes, Nylas and notification
faults) and the stack's own control API (AWS faults, clock, sweep, stream progress).

`quiet()` lets everything in flight finish (faults cleared, held notifications released, Nylas's
retries answered, the grants stream published), `observe()` reads what the invariants judge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from local.aws import LOCAL_NYLAS_SECRET

from tests.chaos.invariants import Answer, Event, NylasGrant, Record
from tests.support.flow_client import parse_consent_form
from tests.support.stack_process import StackUrls

#: After the last fault, a 5xx may still be explained by it this long (the Nylas circuit breaker
#: stays open 30 s; a throttled write's effect on a retry, a notification's later attempt).
FAULT_SHADOW_SECONDS = 35.0
#: The grants table's stream poller, and any other the stack runs (local/streams.py).
QUIET_TIMEOUT = 60.0
#: How long the demo's list of app webhook deliveries must stay the same, once the queue is drained.
SETTLED_FOR = 0.5


class EventSink(Protocol):
    """Where the stack publishes lifecycle events; each is checked against the same oracle."""

    name: str

    def available(self) -> bool: ...

    def events(self) -> list[Event]: ...

    def settle(self) -> None:
        """Return once everything published so far has arrived here."""


@dataclass
class EventBridgeSink:
    """The local EventBridge's target: the demo app's event log (`GET <demo>/events`)."""

    demo_url: str
    name: str = "eventbridge"

    def available(self) -> bool:
        return True

    def events(self) -> list[Event]:
        """The grant events: invariant (d) compares them with the grants table's changes. `Connect
        Failed` and `Tenant Admin Consented` come from the sessions table (a flow's end), not from a
        grant record, and are left out here as in AppWebhookSink."""
        data = httpx.get(f"{self.demo_url}/events", timeout=10).json()["events"]
        return [
            Event(str(e["detail"].get("event_id", "")), str(e["detail_type"]), e["detail"])
            for e in data
            if str(e["detail_type"]).startswith("Grant ")
        ]

    def settle(self) -> None:
        return  # the local EventBridge delivers to the demo within the PutEvents call


@dataclass
class AppWebhookSink:
    """The app webhook's deliveries as the demo received them (`GET <demo>/webhooks`, contract.md
    "Events and app webhooks"): `webhook-id` is the event id, the body `{"type", "timestamp", "data"}`
    carries the EventBridge detail. Plugged in when the demo serves that route (issue 18)."""

    demo_url: str
    #: moto's SQS client and the delivery queue (template.yaml AppWebhookQueue): quiet means drained.
    sqs: Any = None
    queue: str = "AppWebhookQueue.fifo"
    name: str = "app-webhook"
    types: dict[str, str] = field(
        default_factory=lambda: {
            "grant.connected": "Grant Connected",
            "grant.reconnected": "Grant Reconnected",
            "grant.disconnected": "Grant Disconnected",
            "grant.expired": "Grant Expired",
            "grant.revoked": "Grant Revoked",
            "grant.needs_reauth": "Grant Needs Reauth",
        }
    )

    def available(self) -> bool:
        return httpx.get(f"{self.demo_url}/webhooks", timeout=10).status_code == 200

    def events(self) -> list[Event]:
        import json

        found: list[Event] = []
        for delivery in httpx.get(f"{self.demo_url}/webhooks", timeout=10).json()["deliveries"]:
            if not delivery.get("verified"):
                continue  # a delivery the demo could not verify is no publication
            body = json.loads(delivery["body"])
            detail_type = self.types.get(str(body.get("type")))
            if detail_type is None:
                continue  # connect.failed, tenant.admin_consented: not grant record changes
            headers = {str(k).lower(): str(v) for k, v in delivery["headers"].items()}
            found.append(Event(headers.get("webhook-id", ""), detail_type, body["data"]))
        return found

    def settle(self) -> None:
        """Every event queued for the app webhook was handed over (the queue holds none, in flight or
        waiting out a backoff), then the demo's list stopped growing."""
        if self.sqs is not None:
            url = self.sqs.get_queue_url(QueueName=self.queue)["QueueUrl"]
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

            def backlog() -> int:
                found = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
                return sum(int(found.get(name, 0)) for name in names)

            deadline = time.monotonic() + QUIET_TIMEOUT
            while backlog():
                assert time.monotonic() < deadline, "the app webhook queue never drained"
                time.sleep(0.1)
        # A drained queue means every delivery was answered: the poller deletes a message only after
        # the handler's POST came back, and the demo records a delivery before it answers
        # (local/app_webhooks.py, local/demo/app.py). The window only guards against a late straggler;
        # it was 2 s, paid twice per sequence (about 40 s of the bounded campaign and its findings).
        _stable(
            lambda: len(httpx.get(f"{self.demo_url}/webhooks", timeout=10).json()["deliveries"]),
            SETTLED_FOR,
        )


def _stable(read: Callable[[], int], quiet_for: float) -> None:
    deadline = time.monotonic() + QUIET_TIMEOUT
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_for:
        if time.monotonic() > deadline:
            raise AssertionError("never settled")
        time.sleep(0.2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()


@dataclass
class Observation:
    nylas: list[NylasGrant]
    records: list[Record]
    guards: dict[str, str]  # grant id -> owner (GRANT# guards naming an owner)
    mailboxes: dict[str, str]  # MAILBOX# key -> owner
    outbox: set[str]  # grant ids in the REVOKE# outbox
    lost: list[tuple[int, int]] = field(default_factory=list)  # LOST# entries' windows [since, before]


class Harness:
    def __init__(self, stack: StackUrls) -> None:
        self.stack = stack
        self.api = httpx.Client(
            base_url=stack.gateway, headers={"authorization": f"Bearer {stack.api_key}"}, timeout=30.0
        )
        self.public = httpx.Client(base_url=stack.gateway, timeout=30.0)  # no API key
        self.emulator = httpx.Client(base_url=stack.emulator, timeout=15.0)
        self.nylas = httpx.Client(
            base_url=stack.emulator,
            headers={"authorization": f"Bearer {LOCAL_NYLAS_SECRET['api_key']}"},
            timeout=15.0,
        )
        self.control = httpx.Client(base_url=stack.control, timeout=90.0)
        self.dynamodb = stack.dynamodb()
        self.sinks: list[EventSink] = [
            EventBridgeSink(stack.demo),
            AppWebhookSink(stack.demo, sqs=_client(stack, "sqs")),
        ]
        self.answers: list[Answer] = []
        self.step = 0
        self.armed = False
        self.shadow_until = 0.0
        self.faults_injected: dict[str, int] = {}

    def close(self) -> None:
        for client in (self.api, self.public, self.emulator, self.nylas, self.control):
            client.close()

    # ----------------------------------------------------------------------- bookkeeping
    def faults_possible(self) -> bool:
        return self.armed or time.monotonic() < self.shadow_until

    def note(self, route: str, status: int, *, bad_input: bool = False) -> None:
        self.answers.append(Answer(self.step, route, status, bad_input, self.faults_possible()))

    def fault(self, label: str) -> None:
        self.armed = True
        self.faults_injected[label] = self.faults_injected.get(label, 0) + 1

    # ----------------------------------------------------------------------- the public routes
    def connect(self, user: str, email: str, decision: str) -> str:
        """One connect flow as the SaaS backend and a browser run it; the outcome it ends in."""
        created = self.api.post(
            "/v1/sessions", json={"user_id": user, "return_to": f"{self.stack.demo}/return"}
        )
        self.note("POST /v1/sessions", created.status_code)
        if created.status_code != 201:
            return f"session:{created.status_code}"
        with httpx.Client(timeout=30.0, follow_redirects=False) as browser:
            started = browser.get(created.json()["connect_url"])
            self.note("GET /connect/start", started.status_code)
            if started.status_code != 302:
                return f"start:{started.status_code}"
            url = started.headers["location"]
            for _ in range(5):
                page = browser.get(url)
                if page.status_code not in (301, 302, 303, 307):
                    break
                url = urljoin(url, page.headers["location"])
            if page.status_code != 200:
                return f"consent-page:{page.status_code}"
            try:
                form = parse_consent_form(url, page.text)
            except AssertionError:  # not the consent form: e.g. the emulator's error page
                return f"consent-page:{page.text[:80]!r}"
            consented = browser.post(form.url, data={**form.fields, "email": email, "decision": decision})
            if consented.status_code not in (302, 303):
                return f"consent:{consented.status_code}"
            callback = browser.get(urljoin(form.url, consented.headers["location"]))
            self.note("GET /connect/callback", callback.status_code)
            if callback.status_code != 302:
                return f"callback:{callback.status_code}"
            query = parse_qs(urlsplit(callback.headers["location"]).query)
            return "/".join(v[0] for k, v in sorted(query.items()) if k in ("status", "error"))

    def disconnect(self, user: str) -> int:
        answer = self.api.delete(f"/v1/grants/{user}")
        self.note("DELETE /v1/grants/{user_id}", answer.status_code)
        return answer.status_code

    def read(self, user: str) -> int:
        answer = self.api.get(f"/v1/grants/{user}")
        self.note("GET /v1/grants/{user_id}", answer.status_code)
        return answer.status_code

    BAD_INPUTS = (
        "session_not_json",
        "session_bad_return_to",
        "session_no_key",
        "grant_bad_user_id",
        "delete_wrong_key",
        "callback_forged_state",
        "start_unknown_session",
        "webhook_bad_signature",
    )

    def bad_input(self, kind: str) -> int:
        demo_return = f"{self.stack.demo}/return"
        route, answer = {
            "session_not_json": lambda: (
                "POST /v1/sessions",
                self.api.post(
                    "/v1/sessions", content=b'{"user_id": ', headers={"content-type": "application/json"}
                ),
            ),
            "session_bad_return_to": lambda: (
                "POST /v1/sessions",
                self.api.post(
                    "/v1/sessions", json={"user_id": "x", "return_to": "https://evil.example/return"}
                ),
            ),
            "session_no_key": lambda: (
                "POST /v1/sessions",
                self.public.post("/v1/sessions", json={"user_id": "x", "return_to": demo_return}),
            ),
            "grant_bad_user_id": lambda: (
                "GET /v1/grants/{user_id}",
                self.api.get("/v1/grants/" + "%00" * 3),
            ),
            "delete_wrong_key": lambda: (
                "DELETE /v1/grants/{user_id}",
                self.public.delete("/v1/grants/someone", headers={"authorization": "Bearer wrong-key"}),
            ),
            "callback_forged_state": lambda: (
                "GET /connect/callback",
                self.public.get("/connect/callback", params={"state": "forged" * 4, "code": "x"}),
            ),
            "start_unknown_session": lambda: (
                "GET /connect/start",
                self.public.get("/connect/start", params={"session": "s" * 43}),
            ),
            "webhook_bad_signature": lambda: (
                "POST /nylas/webhooks",
                self.public.post(
                    "/nylas/webhooks",
                    content=b'{"id":"n","type":"grant.expired","time":1,"data":{"object":{"grant_id":"g"}}}',
                    headers={"x-nylas-signature": "0" * 64, "content-type": "application/json"},
                ),
            ),
        }[kind]()
        self.note(route, answer.status_code, bad_input=True)
        return answer.status_code

    # ----------------------------------------------------------------------- Nylas's side
    def grant_of(self, email: str) -> dict[str, Any] | None:
        grants = self.emulator.get("/_emulator/state").json()["state"]["grants"]
        return next((g for g in grants if g["email"].lower() == email.lower()), None)

    def nylas_set_status(self, email: str, status: str) -> bool:
        grant = self.grant_of(email)
        if grant is None:
            return False
        answer = self.emulator.post(f"/_emulator/grants/{grant['id']}/status", json={"status": status})
        assert answer.status_code == 200, answer.text
        return True

    def nylas_delete(self, email: str) -> bool:
        grant = self.grant_of(email)
        if grant is None:
            return False
        try:
            answer = self.nylas.delete(f"/v3/grants/{grant['id']}")
        except httpx.HTTPError:  # a fault injected on this route (dropped, slow) hits the operator too
            return False
        assert answer.status_code in (200, 404) or answer.status_code in (429, 500, 503), answer.text
        return answer.status_code == 200

    def nylas_change_scopes(self, email: str, scopes: list[str]) -> bool:
        """An administrator changes what the grant may do; Nylas sends `grant.updated` (without the
        scopes, as Nylas's own notification usually is)."""
        grant = self.grant_of(email)
        if grant is None:
            return False
        answer = self.nylas.patch(f"/v3/grants/{grant['id']}", json={"scope": scopes})
        assert answer.status_code == 200, answer.text
        sent = self.emulator.post(
            "/_emulator/webhooks/send", json={"trigger_type": "grant.updated", "grant_id": grant["id"]}
        )
        assert sent.status_code == 202, sent.text
        return True

    def notifications(self, label: str | None, **faults: Any) -> None:
        """Nylas's delivery faults (duplicate, hold, delay_ms); `label` counts it as an injected fault."""
        answer = self.emulator.post("/_emulator/webhooks/faults", json=faults)
        assert answer.status_code == 200, answer.text
        if label is not None:
            self.faults_injected[label] = self.faults_injected.get(label, 0) + 1

    def release(self, order: str) -> None:
        answer = self.emulator.post("/_emulator/webhooks/release", json={"order": order})
        assert answer.status_code == 200, answer.text

    def nylas_fault(self, method: str, path: str, kind: str, count: int) -> None:
        fault: dict[str, Any] = {"method": method, "path": path, "count": count}
        if kind == "timeout":
            fault["delay_ms"] = 800  # the stack waits 500 ms per attempt (NYLAS_READ_TIMEOUT_MS)
        elif kind == "drop":
            fault["drop"] = True
        else:
            fault["status"] = int(kind)
        answer = self.emulator.post("/_emulator/faults", json=fault)
        assert answer.status_code == 201, answer.text
        self.fault(f"Nylas {method} {path}: {kind}")

    # ----------------------------------------------------------------------- AWS, clock, sweeper
    def aws_fault(self, service: str, operation: str, kind: str, count: int) -> None:
        body = {"service": service, "operation": operation, "kind": kind, "count": count}
        answer = self.control.post("/_local/faults", json=body)
        assert answer.status_code == 201, answer.text
        self.fault(f"AWS {service} {operation}: {kind}")

    def advance_clock(self, seconds: int) -> None:
        answer = self.control.post("/_local/clock", json={"advance_seconds": seconds})
        assert answer.status_code == 200, answer.text

    def sweep(self) -> dict[str, Any]:
        answer = self.control.post("/_local/sweep")
        assert answer.status_code in (200, 502), answer.text
        if answer.status_code == 502:
            assert self.faults_possible(), f"the sweeper failed with no fault injected: {answer.text}"
            return {}
        return dict(answer.json()["result"])

    # ----------------------------------------------------------------------- quiet and observe
    def clear_faults(self) -> None:
        assert self.emulator.delete("/_emulator/faults").status_code == 200
        assert self.control.delete("/_local/faults").status_code == 200
        self.notifications(None, duplicate=0, hold=False, delay_ms=0)
        self.release("fifo")  # delayed, not lost
        if self.armed:
            self.armed = False
            self.shadow_until = time.monotonic() + FAULT_SHADOW_SECONDS

    def quiet(self) -> None:
        """Faults off, every notification answered for good, every record change published."""
        self.clear_faults()
        deadline = time.monotonic() + QUIET_TIMEOUT
        while self.emulator.get("/_emulator/webhooks/deliveries").json()["pending"]:
            assert time.monotonic() < deadline, "Nylas's notifications never drained"
            time.sleep(0.1)
        self.streams_published()
        for sink in self.sinks:
            if sink.available():
                sink.settle()

    def streams_published(self) -> None:
        """Every stream poller has polled twice and found nothing since now (the first such poll may
        have started before the last write)."""
        start = {t: s["idle_polls"] for t, s in self.control.get("/_local/streams").json()["streams"].items()}
        deadline = time.monotonic() + QUIET_TIMEOUT
        while True:
            now = self.control.get("/_local/streams").json()["streams"]
            if all(now[t]["idle_polls"] >= start[t] + 2 for t in start):
                return
            assert time.monotonic() < deadline, "the table streams were never published"
            time.sleep(0.1)

    def observe(self, emails: Iterable[str], users: Iterable[str]) -> Observation:
        mine_emails = {e.lower() for e in emails}
        mine_users = set(users)
        state = self.emulator.get("/_emulator/state").json()["state"]
        nylas = [
            NylasGrant(
                g["id"],
                g["email"],
                g["grant_status"],
                tuple(g["scope"]),
                bool(g["verified"]),
                int(g["created_at"]),
            )
            for g in state["grants"]
            if g["email"].lower() in mine_emails
        ]
        records: list[Record] = []
        guards: dict[str, str] = {}
        mailboxes: dict[str, str] = {}
        outbox: set[str] = set()
        lost: list[tuple[int, int]] = []
        for item in _scan(self.dynamodb, "GrantsTable"):
            pk = item["pk"]["S"]
            if pk.startswith("USER#") and pk[5:] in mine_users:
                records.append(
                    Record(
                        user_id=pk[5:],
                        grant_id=item["grant_id"]["S"],
                        email=item["email"]["S"],
                        status=item["status"]["S"],
                        scopes=tuple(x["S"] for x in item.get("scopes", {}).get("L", [])),
                    )
                )
            elif pk.startswith("GRANT#") and "owner" in item:
                guards[pk[6:]] = item["owner"]["S"]
            elif pk.startswith("MAILBOX#") and "owner" in item:
                mailboxes[pk] = item["owner"]["S"]
            elif pk.startswith("REVOKE#"):
                outbox.add(pk[7:])
            elif pk.startswith("LOST#"):  # LOST#<since>-<before>-<flow>: a lost code exchange
                since, before, _ = pk[5:].split("-", 2)
                lost.append((int(since), int(before)))
        return Observation(nylas, records, guards, mailboxes, outbox, lost)

    def stream(self, users: Iterable[str]) -> list[dict[str, Any]]:
        """Every change of these users' USER# records, in order (the grants table's stream)."""
        keys = {f"USER#{u}" for u in users}
        streams = _client(self.stack, "dynamodbstreams")
        arn = self.dynamodb.describe_table(TableName="GrantsTable")["Table"]["LatestStreamArn"]
        found: list[dict[str, Any]] = []
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = streams.get_records(ShardIterator=iterator, Limit=1000)
                records = page.get("Records") or []
                found += [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] in keys]
                iterator = page.get("NextShardIterator") if records else None
        return found

    def events(self) -> dict[str, list[Event]]:
        return {sink.name: sink.events() for sink in self.sinks if sink.available()}


def _client(stack: StackUrls, service: str) -> Any:
    import boto3

    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack.moto,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
