"""Scheduled functions, locally: the `Schedule` events of template.yaml run on a compressed interval.

In AWS an EventBridge rule invokes a function with `Type: Schedule` (or `ScheduleV2`) events on its
`rate(...)`. Locally the same functions run in this process, each on its own thread ("environment"),
one invocation at a time per function (as `ReservedConcurrentExecutions: 1` does for the sweeper),
with the event EventBridge sends (`detail-type: Scheduled Event`).

The interval is compressed so that a developer sees the effect while watching: the template's period
divided by `COMPRESSION`, at most `max_interval` seconds (default 15, `TC_SCHEDULE_MAX_SECONDS`), at
least `MIN_INTERVAL`: the revoke sweeper's `rate(5 minutes)` runs every 15 s, so a due revoke is
retried within 15 s of falling due (contract.md, "Locally"). `cron(...)` expressions run every
`max_interval` seconds. `invoke_now()` (the control route `POST /_local/sweep`) runs one at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local.gateway import ACCOUNT_ID, REGION, STACK_NAME, Handler, HandlerLoader, make_context
from local.template import Route, Template, function_property

LOG = logging.getLogger("local.scheduler")

COMPRESSION = 20
DEFAULT_MAX_INTERVAL = 15.0
MIN_INTERVAL = 1.0
REVOKE_SWEEPER = "RevokeSweeperFunction"
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")


@dataclass(frozen=True)
class Schedule:
    function_logical_id: str
    event_name: str
    expression: str
    period_seconds: float | None  # None for cron(...)
    route: Route  # the function's code, handler, timeout and memory (method/path unused)

    def local_interval(self, max_interval: float = DEFAULT_MAX_INTERVAL) -> float:
        if self.period_seconds is None:
            return max_interval
        return max(MIN_INTERVAL, min(self.period_seconds / COMPRESSION, max_interval))


def period_of(expression: str) -> float | None:
    """Seconds of a `rate(N unit)` expression; None for `cron(...)`; anything else is an error."""
    text = expression.strip()
    if text.startswith("cron(") and text.endswith(")"):
        return None
    match = _RATE.match(text)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"unsupported schedule expression {expression!r}")
    count, unit = int(match.group(1)), match.group(2)
    if count < 1 or (count == 1) != (not unit.endswith("s")):
        raise ValueError(f"invalid rate {expression!r} (rate(1 minute), rate(5 minutes), ...)")
    return float(count * _UNITS[unit])


def schedules(template: Template) -> list[Schedule]:
    """Every enabled `Schedule`/`ScheduleV2` event of every AWS::Serverless::Function, in template order."""
    found: list[Schedule] = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            kind = event.get("Type")
            if kind not in ("Schedule", "ScheduleV2"):
                continue
            props = event.get("Properties") or {}
            if props.get("Enabled") is False or str(props.get("State", "ENABLED")).upper() == "DISABLED":
                continue
            expression = str(props.get("Schedule" if kind == "Schedule" else "ScheduleExpression", ""))
            route = Route(
                method="",
                path="",
                function_logical_id=logical_id,
                code_uri=str(function_property(template, logical_id, "CodeUri")),
                handler=str(function_property(template, logical_id, "Handler", "app.lambda_handler")),
                timeout=int(function_property(template, logical_id, "Timeout", 3)),
                memory_size=int(function_property(template, logical_id, "MemorySize", 128)),
            )
            found.append(Schedule(logical_id, str(name), expression, period_of(expression), route))
    return found


def scheduled_event(schedule: Schedule, now: float) -> dict[str, Any]:
    """What EventBridge delivers for a scheduled rule."""
    rule = f"{STACK_NAME}-{schedule.function_logical_id}{schedule.event_name}"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}"],
        "detail": {},
    }


def max_interval_from_env(name: str = "TC_SCHEDULE_MAX_SECONDS") -> float | None:
    """`make run`'s setting: the longest local interval in seconds (default 15), or None for "only on
    demand" (0). Anything else stops the start with a message."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULT_MAX_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, not {raw!r}") from None
    if value == 0:
        return None
    if not MIN_INTERVAL <= value <= 3600:
        raise SystemExit(f"{name} must be 0 (on demand only) or 1 to 3600 seconds, not {raw!r}")
    return value


class FunctionError(RuntimeError):
    """The scheduled function raised (Lambda: an invocation error; EventBridge would retry)."""


@dataclass
class _Runner:
    schedule: Schedule
    interval: float
    handler: Callable[[], Handler]
    lock: threading.Lock = field(default_factory=threading.Lock)  # one invocation at a time
    runs: int = 0
    errors: int = 0
    last_result: Any = None
    last_error: str = ""
    last_run_at: float = 0.0

    def invoke(self, trigger: str) -> Any:
        with self.lock:
            event = scheduled_event(self.schedule, time.time())
            context = make_context(self.schedule.route)
            self.last_run_at = time.time()
            self.runs += 1
            try:
                result = self.handler()(event, context)
            except Exception as exc:
                self.errors += 1
                self.last_error = type(exc).__name__
                LOG.exception("%s (%s) raised", self.schedule.function_logical_id, trigger)
                raise FunctionError(type(exc).__name__) from exc
            self.last_result, self.last_error = result, ""
            LOG.info("%s (%s): %s", self.schedule.function_logical_id, trigger, result)
            return result

    def describe(self) -> dict[str, Any]:
        return {
            "function": self.schedule.function_logical_id,
            "event": self.schedule.event_name,
            "expression": self.schedule.expression,
            "local_interval_seconds": self.interval,
            "runs": self.runs,
            "errors": self.errors,
            "last_result": self.last_result,
            "last_error": self.last_error or None,
            "last_run_at": int(self.last_run_at) if self.last_run_at else None,
        }


def _lazy(loader: HandlerLoader, route: Route) -> Callable[[], Handler]:
    """The handler, imported at its first run (as the gateway imports a route's on its first request)."""
    return lambda: loader(route)


class Scheduler:
    """Runs each schedule on its own daemon thread; `invoke_now` runs one at once (synchronously)."""

    def __init__(
        self,
        template_schedules: list[Schedule],
        loader: HandlerLoader,
        *,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        run_on_schedule: bool = True,
    ) -> None:
        if not max_interval >= MIN_INTERVAL:
            raise ValueError(f"the longest local interval must be at least {MIN_INTERVAL} s")
        self.run_on_schedule = run_on_schedule
        self._runners: dict[str, _Runner] = {}
        for schedule in template_schedules:
            self._runners[schedule.function_logical_id] = _Runner(
                schedule, schedule.local_interval(max_interval), _lazy(loader, schedule.route)
            )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def functions(self) -> list[str]:
        return list(self._runners)

    def start(self) -> Scheduler:
        if not self.run_on_schedule:
            return self
        for name, runner in self._runners.items():
            thread = threading.Thread(target=self._loop, args=(runner,), name=f"schedule-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self, runner: _Runner) -> None:
        # The first run one interval after start, as a new rule's first trigger.
        while not self._stop.wait(runner.interval):
            # A failed run is logged; the next tick runs again (EventBridge's retries are not modelled).
            with contextlib.suppress(FunctionError):
                runner.invoke("schedule")

    def invoke_now(self, function_logical_id: str) -> Any:
        """Run the function once, now, and return its result; KeyError if it has no schedule."""
        return self._runners[function_logical_id].invoke("on demand")

    def describe(self) -> list[dict[str, Any]]:
        return [runner.describe() for runner in self._runners.values()]
