"""What each handler imports at cold start (imports are the cold-start cost): checked in a fresh
interpreter, as Lambda loads it."""

from __future__ import annotations

import functools
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
    "IDEMPOTENCY_TABLE": "idempotency",
    "WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook-AbCdEf",
    "TENANTS_TABLE": "tenants",
    "LISTING_CURSOR_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cursor-AbCdEf",
    "APP_WEBHOOK_URL": "https://app.example.com/hooks/teams",
    "APP_WEBHOOK_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-webhook-AbCdEf",
    "APP_WEBHOOK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
    "APP_WEBHOOK_DEAD_LETTER_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq.fifo",
}
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
watched = {"httpx", "tenacity", "pybreaker", "aws_xray_sdk"}
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in watched)))
print(json.dumps(sorted(sys.modules)))
"""
HTTP_FUNCTIONS = (
    "create_session",
    "connect_start",
    "connect_callback",
    "get_grant",
    "list_grants",
    "delete_grant",
    "get_meeting",
    "update_meeting",
    "delete_meeting",
    "nylas_webhooks",
    "session_status",
    "create_admin_consent",
    "admin_consent_start",
    "admin_consent_callback",
    "get_tenant",
)
# create_meeting legitimately loads Powertools Idempotency (issue 12: idempotent creation on DynamoDB),
# but not boto3: its records go through adapters/store/idempotency.py on the botocore client, and the
# utility's package __init__ (which imports Powertools' boto3-based DynamoDB layer) is not run at init.
ALLOWED_FOR = {
    "create_meeting": ("aws_lambda_powertools.utilities.idempotency",),
}
# Never on an HTTP route's cold path: boto3 and s3transfer (botocore clients are enough), Powertools'
# multi-route resolvers (every resolver of the package, for one route), Parameters (imports boto3),
# and what only other features use (Idempotency, parser/pydantic, data classes, batch, validation).
FORBIDDEN_PREFIXES = (
    "boto3",
    "s3transfer",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.utilities.idempotency",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.utilities.data_classes",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.validation",
    "pydantic",
    "crhelper",
)


def modules_at_init(
    function: str | Path, flavour: str, *, tracing: bool = False
) -> tuple[set[str], set[str]]:
    """(watched top-level packages, every module name) after importing the handler module
    (`function`: a directory under functions/, or any directory holding an app.py)."""
    folder = function if isinstance(function, Path) else ROOT / "functions" / function
    watched, modules = _probe(folder, flavour, tracing)
    return set(watched), set(modules)


@functools.cache
def _probe(folder: Path, flavour: str, tracing: bool) -> tuple[frozenset[str], frozenset[str]]:
    """One fresh interpreter per (handler, flavour, tracing): what it imports at init does not change
    within a run, so the tests that ask the same question share one probe (each probe costs a whole
    interpreter start and the handler's imports, about a second on two cores). Each test still gets
    its own copy and makes its own assertions; a tmp_path handler is a new folder, so a new probe."""
    env = {**os.environ, **ENV, "NYLAS_API": flavour, "PYTHONPATH": str(ROOT / "layers" / "core")}
    env.pop("LAMBDA_TASK_ROOT", None)
    env["POWERTOOLS_TRACE_DISABLED"] = "false" if tracing else "true"
    if tracing:  # as in Lambda with `Tracing: Active`
        env["LAMBDA_TASK_ROOT"] = str(folder)
    out = subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", PROBE, str(folder / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    watched_line, all_line = out.stdout.strip().splitlines()[-2:]
    return frozenset(name.split(".")[0] for name in json.loads(watched_line)), frozenset(json.loads(all_line))


def imported_at_init(function: str, flavour: str, *, tracing: bool = False) -> set[str]:
    return modules_at_init(function, flavour, tracing=tracing)[0]


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
        ("session_status", "v3", set()),  # one DynamoDB read: no secrets, no Nylas
        ("connect_script", "v3", set()),
        ("session_events", "v3", set()),
        # Admin consent: the start builds Microsoft's URL locally and the lookup reads DynamoDB; the
        # callback (client-credentials check) and link creation (a tenant's discovery) call Microsoft
        # with httpx alone (no Nylas retry stack or breaker).
        ("admin_consent_start", "v3", set()),
        ("get_tenant", "v3", set()),
        ("admin_consent_callback", "v3", {"httpx"}),
        ("create_admin_consent", "v3", {"httpx"}),
        ("list_grants", "v3", set()),  # index queries + the cursor key: no HTTP client
        ("app_webhook", "v3", {"httpx"}),  # the receiver's POST: httpx alone, no Nylas retry stack
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


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
@pytest.mark.parametrize("tracing", [False, True])
def test_no_boto3_no_resolver_no_unused_powertools_on_http_routes(function: str, tracing: bool) -> None:
    _, modules = modules_at_init(function, "v3", tracing=tracing)
    loaded = sorted(m for m in modules if m.startswith(FORBIDDEN_PREFIXES))
    assert loaded == [], f"{function} imports {loaded[:8]} at init"
    assert "botocore.client" in modules  # the clients are created at init (no network: see below)


@pytest.mark.parametrize(
    "function",
    [*HTTP_FUNCTIONS, "create_meeting", "grant_events", "session_events", "revoke_sweeper", "app_webhook"],
)
def test_the_first_connection_imports_nothing(function: str) -> None:
    # botocore encodes the host name of its first connection with the IDNA codec: loaded at init
    # (teams_connect.adapters.aws), not inside the first invocation (bench: "first call imports").
    _, modules = modules_at_init(function, "v3")
    assert "encodings.idna" in modules


@pytest.mark.parametrize("tracing", [False, True])
def test_create_meeting_loads_only_its_explicit_allowance(tracing: bool) -> None:
    _, modules = modules_at_init("create_meeting", "v3", tracing=tracing)
    forbidden = sorted(m for m in modules if m.startswith(FORBIDDEN_PREFIXES))
    allowed = ALLOWED_FOR["create_meeting"]
    assert [m for m in forbidden if not m.startswith(allowed)] == []
    # The allowance is used (else it should go): the utility, without its boto3-based DynamoDB layer.
    assert "aws_lambda_powertools.utilities.idempotency.idempotency" in modules
    assert "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb" not in modules
    assert "boto3" not in modules
    assert "s3transfer" not in modules
    assert "botocore.client" in modules


def test_the_create_meeting_allowance_is_no_wider_than_needed(tmp_path: Path) -> None:
    # A handler that loaded the resolver or Parameters beside the Idempotency utility is still caught.
    (tmp_path / "app.py").write_text(
        "from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer\n"
        "from aws_lambda_powertools.utilities import parameters\n",
        encoding="utf-8",
    )
    _, modules = modules_at_init(tmp_path, "v3")
    forbidden = sorted(m for m in modules if m.startswith(FORBIDDEN_PREFIXES))
    outside = [m for m in forbidden if not m.startswith(ALLOWED_FOR["create_meeting"])]
    assert any(m.startswith("aws_lambda_powertools.utilities.parameters") for m in outside)


def test_the_script_route_creates_no_aws_client_and_reads_no_secret() -> None:
    # connect.js is in the function's package: no botocore, no Secrets Manager, no DynamoDB.
    _, modules = modules_at_init("connect_script", "v3")
    assert "botocore.client" not in modules
    assert not [m for m in modules if m.startswith(("boto3", "teams_connect.adapters"))]


def test_the_script_route_loads_no_powertools_and_none_of_the_flow() -> None:
    """Its cold start is the script's own work (`assets.script_route`): no Logger, Metrics or
    Tracer, and no module of the connect flow."""
    _, modules = modules_at_init("connect_script", "v3")
    ours = sorted(m for m in modules if m.startswith(("teams_connect", "aws_lambda_powertools")))
    assert ours == [
        "teams_connect",
        "teams_connect.errors",
        "teams_connect.http",
        "teams_connect.http.assets",
        "teams_connect.rules",
        "teams_connect.rules.query",
    ]


def test_the_status_route_reads_no_secret() -> None:
    _, modules = modules_at_init("session_status", "v3")
    assert "teams_connect.adapters.secrets" not in modules
    assert "teams_connect.domain.flow" not in modules


def test_the_app_webhook_delivery_loads_no_boto3_and_no_powertools_utility() -> None:
    _, modules = modules_at_init("app_webhook", "v3")
    assert sorted(m for m in modules if m.startswith(FORBIDDEN_PREFIXES)) == []
    assert "standardwebhooks" in modules  # the official signer (a few stdlib lines)


@pytest.mark.parametrize("function", ["connect_start", "connect_callback"])
def test_beta_browser_routes_are_lean_too(function: str) -> None:
    _, modules = modules_at_init(function, "beta")
    assert sorted(m for m in modules if m.startswith(FORBIDDEN_PREFIXES)) == []


@pytest.mark.parametrize(
    "source",
    [
        "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n",  # yesterday's handlers
        "from aws_lambda_powertools.utilities import parameters\n",
        "import boto3\n",
    ],
)
def test_the_forbidden_list_bites(source: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(source, encoding="utf-8")
    _, modules = modules_at_init(tmp_path, "v3")
    assert any(m.startswith(FORBIDDEN_PREFIXES) for m in modules)


LEAN_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
heavy = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.batch")
print(json.dumps(sorted(n for n in sys.modules if n.startswith(heavy) or n == "teams_connect.http.web")))
"""


@pytest.mark.parametrize("function", ["nylas_webhooks", "grant_events", "session_events", "app_webhook"])
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


def test_the_layer_declares_no_slotted_dataclass() -> None:
    """`@dataclass(slots=True)` builds every class twice: about 0.6 ms more per class at init, on
    Python 3.12 (dataclasses' generated methods are compiled at import). A meeting function imports
    14 of ours, the callback about 20 (docs/performance.md, "What the cold start pays for")."""
    slotted = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "layers" / "core" / "teams_connect").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.lstrip().startswith("@dataclass") and "slots=True" in line
    ]
    assert slotted == []
