"""What the meetings handlers import at cold start, in a fresh interpreter as Lambda loads them:
no event-handler resolver anywhere, the idempotency utility only in the create function, and no
HTTP stack in a beta deployment (whose routes only answer unsupported_flavour)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.unit.test_cold_imports import ENV, ROOT

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
watched = ("httpx", "aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.idempotency")
print(json.dumps(sorted(w for w in watched if w in sys.modules)))
"""
HTTP = "httpx"
RESOLVER = "aws_lambda_powertools.event_handler"
IDEMPOTENCY = "aws_lambda_powertools.utilities.idempotency"


def loaded(function: str, flavour: str) -> set[str]:
    env = {
        **os.environ,
        **ENV,
        "IDEMPOTENCY_TABLE": "idempotency",
        "NYLAS_API": flavour,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONPATH": str(ROOT / "layers" / "core"),
    }
    out = subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / function / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "functions" / function,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("function", "flavour", "expected"),
    [
        ("create_meeting", "v3", {HTTP, IDEMPOTENCY}),
        ("get_meeting", "v3", {HTTP}),
        ("update_meeting", "v3", {HTTP}),
        ("delete_meeting", "v3", {HTTP}),
        ("get_meeting", "beta", set()),
    ],
)
def test_meetings_handlers_import_only_what_they_use(function: str, flavour: str, expected: set[str]) -> None:
    assert loaded(function, flavour) == expected
