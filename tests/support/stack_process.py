"""The local stack (`python -m local.run`, what `make run` starts) in a subprocess, for tests.

Each flavour gets its own process: the handlers read their configuration once per "container", exactly
as in Lambda, so two flavours cannot share one interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[2]
LOCAL_API_KEY = "local-dev-api-key"


@dataclass(frozen=True)
class StackUrls:
    flavour: str
    gateway: str
    emulator: str
    demo: str
    moto: str
    eventbridge: str = ""
    control: str = ""  # the stack's own control API (local/control.py): sweep, clock, AWS faults
    api_key: str = LOCAL_API_KEY
    log: Path | None = None  # the stack process's stdout and stderr

    def dynamodb(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "dynamodb",
            endpoint_url=self.moto,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _wait_until_ready(ready_file: Path, proc: subprocess.Popen[bytes], deadline: float) -> dict[str, str]:
    while time.monotonic() < deadline:
        if ready_file.is_file():
            return dict(json.loads(ready_file.read_text(encoding="utf-8")))
        if proc.poll() is not None:
            raise StackDied(f"local stack exited early with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError("local stack did not become ready in time")


class StackDied(RuntimeError):
    pass


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# What conftests put into this process's environment for in-process handlers (Powertools, AWS and the
# functions' own settings) must not reach the stack: `make run` starts it from a plain shell, and a
# leaked POWERTOOLS_METRICS_NAMESPACE once hid a handler that had lost its namespace.
_TEST_ONLY_PREFIXES = ("POWERTOOLS_", "AWS_", "LAMBDA_")
_FUNCTION_SETTINGS = frozenset(
    {
        "LOG_LEVEL",
        "NYLAS_API",
        "NYLAS_REGION",
        "NYLAS_BASE_URL",
        "AZURE_TENANT",
        "ALLOWED_RETURN_URLS",
        "SESSION_TTL_SECONDS",
        "PUBLIC_BASE_URL",
        "SESSIONS_TABLE",
        "GRANTS_TABLE",
        "IDEMPOTENCY_TABLE",
        "NYLAS_SECRET_ARN",
        "AZURE_SECRET_ARN",
        "API_KEYS_SECRET_ARN",
        "NYLAS_SCOPES",
        "BETA_AUTH_EXPIRES_IN",
        "FLOW_TTL_SECONDS",
        "SECRETS_MAX_AGE",
        "NYLAS_READ_TIMEOUT_MS",
        "WEBHOOK_SECRET_ARN",
        "EVENT_BUS_NAME",
        "GRANTS_STREAM_ARN",
        "SESSIONS_STREAM_ARN",
        "MICROSOFT_LOGIN_URL",
        "ADMIN_CONSENT_TTL_SECONDS",
        "TENANTS_TABLE",
    }
)


def shell_environment() -> dict[str, str]:
    """This process's environment as a developer's shell would have it: without test-only settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_TEST_ONLY_PREFIXES) and name not in _FUNCTION_SETTINGS
    }


@contextmanager
def running_stack(
    flavour: str, *, module: str = "local.run", attempts: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[StackUrls]:
    """Start `python -m local.run` for `flavour` on free ports (the stack binds port 0 itself and
    reports its URLs through TC_READY_FILE: no port can be taken by someone else in between).
    `env` adds settings for this stack (e.g. NYLAS_READ_TIMEOUT_MS) to the shell's environment; the
    scheduled functions run only on demand unless `env` sets TC_SCHEDULE_MAX_SECONDS."""
    results = ROOT / "test-results"
    results.mkdir(exist_ok=True)
    for attempt in range(1, attempts + 1):
        tag = f"{flavour}-{os.getpid()}-{time.monotonic_ns()}"
        ready_file = results / f"stack-{tag}.ready.json"
        env = {
            **shell_environment(),
            "NYLAS_API": flavour,
            "TC_GATEWAY_PORT": "0",
            "TC_EMULATOR_PORT": "0",
            "TC_DEMO_PORT": "0",
            "TC_MOTO_PORT": "0",
            "TC_READY_FILE": str(ready_file),
            "PYTHONUNBUFFERED": "1",
            # Scheduled functions on demand only (`POST <control>/_local/sweep`): a sweeper running by
            # itself every 15 s would make the suites that count Nylas and AWS calls depend on timing.
            # tests/local/test_scheduled_sweeper.py runs the schedule.
            "TC_SCHEDULE_MAX_SECONDS": "0",
            **(env or {}),
        }
        log_path = results / f"stack-{tag}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            try:
                try:
                    urls = _wait_until_ready(ready_file, proc, time.monotonic() + 90)
                except StackDied:
                    if attempt == attempts:
                        raise
                    continue  # e.g. moto's port taken between its check and its bind: start again
                yield StackUrls(
                    flavour=flavour,
                    gateway=urls["gateway"],
                    emulator=urls["emulator"],
                    demo=urls["demo"],
                    moto=urls["moto"],
                    eventbridge=urls.get("eventbridge", ""),
                    control=urls.get("control", ""),
                    log=log_path,
                )
                return
            finally:
                _stop(proc)
                ready_file.unlink(missing_ok=True)


def pause_webhooks(emulator_url: str) -> None:
    """Pause the emulator's grant-notification destinations. Suites that count the connect flow's own
    calls, or load it, leave the webhook route out (its own suites: tests/unit/test_webhooks.py and
    the integration and browser tests)."""
    from local.aws import LOCAL_NYLAS_SECRET

    auth = {"authorization": f"Bearer {LOCAL_NYLAS_SECRET['api_key']}"}
    with httpx.Client(base_url=emulator_url, headers=auth, timeout=10) as nylas:
        for webhook in nylas.get("/v3/webhooks").json()["data"]:
            assert nylas.put(f"/v3/webhooks/{webhook['id']}", json={"status": "pause"}).status_code == 200
