"""The local scheduler (template.yaml's Schedule events on a compressed interval), the stack's control
API, and the injected AWS faults, in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from local.aws import start_moto
from local.aws_faults import FaultBook
from local.control import create_control_app
from local.scheduler import (
    DEFAULT_MAX_INTERVAL,
    REVOKE_SWEEPER,
    FunctionError,
    Scheduler,
    max_interval_from_env,
    period_of,
    scheduled_event,
    schedules,
)
from local.stack import bind_socket, serve_app, socket_url
from local.template import Route, load_template

from local import clock


def _template(events: dict[str, Any]) -> dict[str, Any]:
    return {
        "Globals": {"Function": {"Timeout": 7}},
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "functions/x/", "Handler": "app.handler", "Events": events},
            },
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        },
    }


# --------------------------------------------------------------------------- reading the template


def test_the_revoke_sweeper_is_read_from_the_template_and_runs_at_least_every_15_s() -> None:
    found = {s.function_logical_id: s for s in schedules(load_template())}
    sweeper = found[REVOKE_SWEEPER]
    assert sweeper.expression == "rate(5 minutes)"
    assert sweeper.period_seconds == 300
    assert sweeper.local_interval() == DEFAULT_MAX_INTERVAL == 15
    assert sweeper.route.code_uri == "functions/revoke_sweeper/"
    assert sweeper.route.timeout == 60


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("cron(0 12 * * ? *)", None),
    ],
)
def test_schedule_expressions(expression: str, seconds: int | None) -> None:
    assert period_of(expression) == seconds


@pytest.mark.parametrize(
    "expression", ["rate(5 minute)", "rate(1 minutes)", "rate(0 minutes)", "every 5m", ""]
)
def test_a_bad_schedule_expression_is_an_error_not_a_silent_default(expression: str) -> None:
    with pytest.raises(ValueError, match=r"schedule expression|rate"):
        period_of(expression)


def test_disabled_schedules_and_other_events_are_not_run() -> None:
    template = _template(
        {
            "On": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}},
            "V2": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(10 minutes)"}},
            "Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)", "Enabled": False}},
            "Off2": {
                "Type": "ScheduleV2",
                "Properties": {"ScheduleExpression": "rate(1 hour)", "State": "DISABLED"},
            },
            "Api": {"Type": "HttpApi", "Properties": {"Method": "get", "Path": "/x"}},
        }
    )
    found = schedules(template)
    assert [(s.event_name, s.local_interval()) for s in found] == [("On", 3.0), ("V2", 15.0)]
    assert found[0].route.timeout == 7  # from Globals
    assert found[0].local_interval(max_interval=2) == 2


def test_the_event_is_eventbridges_scheduled_event() -> None:
    (schedule,) = schedules(
        _template({"S": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}})
    )
    event = scheduled_event(schedule, 1_800_000_000)
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2027-01-15T08:00:00Z"
    assert event["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")
    assert event["detail"] == {}


# --------------------------------------------------------------------------- running


class _Recorder:
    """A handler that records its invocations (and whether two ever overlapped)."""

    def __init__(self, *, fail: bool = False, pause: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail
        self.pause = pause
        self.running = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, int]:
        with self._lock:
            self.running += 1
            self.overlapped |= self.running > 1
            self.calls.append(event)
        try:
            time.sleep(self.pause)
            if self.fail:
                raise RuntimeError("boom")
            assert context.get_remaining_time_in_millis() > 0
            return {"revoked": len(self.calls)}
        finally:
            with self._lock:
                self.running -= 1


def _scheduler(handler: _Recorder, *, max_interval: float = 1.0, on_schedule: bool = True) -> Scheduler:
    template = _template({"Sweep": {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}}})
    loaded: list[Route] = []

    def loader(route: Route) -> Any:
        loaded.append(route)
        return handler

    return Scheduler(schedules(template), loader, max_interval=max_interval, run_on_schedule=on_schedule)


def test_a_scheduled_function_runs_on_its_compressed_interval() -> None:
    handler = _Recorder()
    scheduler = _scheduler(handler).start()
    try:
        time.sleep(2.6)
    finally:
        scheduler.stop()
    assert len(handler.calls) == 2  # at 1 s and 2 s, none at start
    assert all(c["detail-type"] == "Scheduled Event" for c in handler.calls)
    assert scheduler.describe()[0]["runs"] == 2


def test_on_demand_only_never_runs_by_itself_and_invoke_now_returns_the_result() -> None:
    handler = _Recorder()
    scheduler = _scheduler(handler, on_schedule=False).start()
    try:
        time.sleep(1.3)
        assert handler.calls == []
        assert scheduler.invoke_now("Fn") == {"revoked": 1}
    finally:
        scheduler.stop()
    with pytest.raises(KeyError):
        scheduler.invoke_now("NoSuchFunction")


def test_one_invocation_at_a_time_per_function() -> None:
    handler = _Recorder(pause=0.2)
    scheduler = _scheduler(handler, on_schedule=False)
    threads = [threading.Thread(target=scheduler.invoke_now, args=("Fn",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(handler.calls) == 4
    assert not handler.overlapped


def test_a_failing_run_is_reported_and_the_schedule_goes_on() -> None:
    handler = _Recorder(fail=True)
    scheduler = _scheduler(handler).start()
    try:
        with pytest.raises(FunctionError, match="RuntimeError"):
            scheduler.invoke_now("Fn")
        time.sleep(2.4)
    finally:
        scheduler.stop()
    described = scheduler.describe()[0]
    assert described["errors"] == described["runs"] >= 3
    assert described["last_error"] == "RuntimeError"


# --------------------------------------------------------------------------- the control API


@contextmanager
def served_control(scheduler: Scheduler, book: FaultBook) -> Iterator[httpx.Client]:
    sock = bind_socket("127.0.0.1", 0)
    served = serve_app(create_control_app(scheduler, book), sock, name="control-test")
    try:
        with httpx.Client(base_url=socket_url(sock), timeout=10) as client:
            yield client
    finally:
        served.stop()


def test_control_api_runs_the_sweeper_now_and_reports_errors() -> None:
    handler = _Recorder()
    scheduler = _scheduler(handler, on_schedule=False)
    # The sweeper route runs the function named RevokeSweeperFunction; this template's is "Fn".
    with served_control(scheduler, FaultBook()) as control:
        assert control.post("/_local/schedules/Fn/invoke").json() == {
            "function": "Fn",
            "result": {"revoked": 1},
        }
        assert control.post("/_local/sweep").status_code == 404
        assert control.post("/_local/schedules/Nope/invoke").status_code == 404
        assert control.get("/_local/schedules").json()["schedules"][0]["runs"] == 1
        handler.fail = True
        failed = control.post("/_local/schedules/Fn/invoke")
        assert failed.status_code == 502
        assert failed.json() == {"error": "function_error", "type": "RuntimeError"}


def test_control_api_validates_faults_and_the_clock() -> None:
    book = FaultBook()
    with served_control(_scheduler(_Recorder(), on_schedule=False), book) as control:
        for bad in (
            {"service": "s3", "kind": "internal"},
            {"service": "dynamodb", "operation": "DeleteTable", "kind": "internal"},
            {"service": "dynamodb", "kind": "explode"},
            {"service": "dynamodb", "kind": "internal", "count": 0},
            {"service": "dynamodb", "kind": "internal", "count": "3"},
            {"service": "dynamodb", "kind": "timeout", "delay_ms": -1},
        ):
            assert control.post("/_local/faults", json=bad).status_code == 400, bad
        assert control.post("/_local/faults", content=b"[1]").status_code == 400
        assert control.get("/_local/faults").json() == {"faults": [], "fired": {}}
        armed = control.post("/_local/faults", json={"service": "events", "kind": "timeout"})
        assert armed.status_code == 201
        assert armed.json()["fault"]["delay_ms"] == 5500
        assert control.delete("/_local/faults").json() == {"cleared": 1}
        if (
            not clock.installed()
        ):  # only `python -m local.run` installs it (tests/local/test_scheduled_sweeper.py)
            assert control.post("/_local/clock", json={"advance_seconds": 5}).status_code == 409
        assert control.get("/_local/clock").json()["installed"] is clock.installed()


# --------------------------------------------------------------------------- AWS faults in moto


@pytest.fixture(scope="module")
def faulty_moto() -> Any:
    book = FaultBook()
    server, url = start_moto(faults=book)
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )
    dynamodb.create_table(
        TableName="faulty",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield book, dynamodb
    server.stop()


def test_throttling_is_retried_by_botocore_and_surfaces_once_the_retries_are_spent(faulty_moto: Any) -> None:
    book, dynamodb = faulty_moto
    book.arm("dynamodb", "PutItem", "throttling", count=2)
    dynamodb.put_item(TableName="faulty", Item={"pk": {"S": "a"}})  # two throttled attempts, the third passes
    book.arm("dynamodb", "PutItem", "throttling", count=3)
    with pytest.raises(ClientError) as raised:
        dynamodb.put_item(TableName="faulty", Item={"pk": {"S": "b"}})
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert "Item" not in dynamodb.get_item(TableName="faulty", Key={"pk": {"S": "b"}})
    assert book.fired["dynamodb:throttling"] == 5


def test_an_internal_error_is_a_500_and_the_wildcard_spares_inspection_calls(faulty_moto: Any) -> None:
    book, dynamodb = faulty_moto
    book.arm("dynamodb", "*", "internal", count=3)
    dynamodb.scan(TableName="faulty")  # not a data-plane call of the functions: untouched
    dynamodb.describe_table(TableName="faulty")
    with pytest.raises(ClientError) as raised:
        dynamodb.get_item(TableName="faulty", Key={"pk": {"S": "a"}})
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert book.pending() == []


def test_a_timeout_is_served_late_so_the_write_may_land_after_the_caller_gave_up(faulty_moto: Any) -> None:
    book, dynamodb = faulty_moto
    impatient = boto3.client(
        "dynamodb",
        endpoint_url=dynamodb.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    book.arm("dynamodb", "PutItem", "timeout", delay_ms=800)
    with pytest.raises(Exception, match=r"timeout|Read timed out"):
        impatient.put_item(TableName="faulty", Item={"pk": {"S": "late"}})
    time.sleep(1.0)
    assert "Item" in dynamodb.get_item(TableName="faulty", Key={"pk": {"S": "late"}})


# --------------------------------------------------------------------------- make run's setting


@pytest.mark.parametrize(
    ("raw", "expected"), [("", DEFAULT_MAX_INTERVAL), ("0", None), ("2", 2.0), ("7.5", 7.5), (" 15 ", 15.0)]
)
def test_the_schedule_setting_of_make_run(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: float | None
) -> None:
    monkeypatch.setenv("TC_SCHEDULE_MAX_SECONDS", raw)
    assert max_interval_from_env() == expected


@pytest.mark.parametrize("raw", ["-1", "0.5", "3601", "soon"])
def test_a_bad_schedule_setting_stops_make_run_with_a_message(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("TC_SCHEDULE_MAX_SECONDS", raw)
    with pytest.raises(SystemExit, match="TC_SCHEDULE_MAX_SECONDS"):
        max_interval_from_env()
