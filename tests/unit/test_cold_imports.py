"""What each handler imports at cold start (imports are the cold-start cost): checked in a fresh
interpreter, as Lambda loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "PUBLIC_BASE_URL": "https://connect.example.com",
    "ALLOWED_RETURN_URLS": "https://app.example.com/return",
    "SESSIONS_TABLE": "sessions",
    "GRANTS_TABLE": "grants",
    "NYLAS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nylas-AbCdEf",
    "AZURE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:azure-AbCdEf",
    "API_KEYS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_METRICS_NAMESPACE": "TeamsConnect",
}
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
watched = {"httpx", "tenacity", "pybreaker", "aws_xray_sdk"}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in watched)))
"""


def imported_at_init(function: str, flavour: str, *, tracing: bool = False) -> set[str]:
    env = {**os.environ, **ENV, "NYLAS_API": flavour, "PYTHONPATH": str(ROOT / "layers" / "core")}
    env.pop("LAMBDA_TASK_ROOT", None)
    env["POWERTOOLS_TRACE_DISABLED"] = "false" if tracing else "true"
    if tracing:  # as in Lambda with `Tracing: Active`
        env["LAMBDA_TASK_ROOT"] = str(ROOT / "functions" / function)
    out = subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / function / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "functions" / function,
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize(
    ("function", "flavour", "expected"),
    [
        ("connect_start", "v3", set()),  # the auth URL is built locally: no HTTP stack at init
        ("connect_start", "beta", {"httpx", "tenacity", "pybreaker"}),  # beta start calls Nylas
        ("connect_callback", "v3", {"httpx", "tenacity", "pybreaker"}),
        ("create_session", "v3", set()),
        ("get_grant", "v3", set()),
        ("nylas_webhooks", "v3", set()),  # DynamoDB + Secrets Manager only: never the Nylas client
        ("grant_events", "v3", set()),
    ],
)
def test_a_handler_imports_only_what_it_uses(function: str, flavour: str, expected: set[str]) -> None:
    assert imported_at_init(function, flavour) == expected


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("get_grant", {"aws_xray_sdk"}),  # botocore patched; httpx never imported by the tracer
        ("create_session", {"aws_xray_sdk"}),
        ("connect_callback", {"aws_xray_sdk", "httpx", "tenacity", "pybreaker"}),
    ],
)
def test_with_tracing_only_the_nylas_callers_load_httpx(function: str, expected: set[str]) -> None:
    assert imported_at_init(function, "v3", tracing=True) == expected


LEAN_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.batch")
print(json.dumps(sorted(n for n in sys.modules if n.startswith(heavy) or n == "teams_connect.web")))
"""


@pytest.mark.parametrize("function", ["nylas_webhooks", "grant_events"])
def test_lifecycle_handlers_load_no_resolver_and_no_batch_utility(function: str) -> None:
    env = {**os.environ, **ENV, "NYLAS_API": "v3", "PYTHONPATH": str(ROOT / "layers" / "core")}
    env.pop("LAMBDA_TASK_ROOT", None)
    env["POWERTOOLS_TRACE_DISABLED"] = "true"
    out = subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", LEAN_PROBE, str(ROOT / "functions" / function / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "functions" / function,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
