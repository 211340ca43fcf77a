"""Static security gates: `python -m tools.static_gates` (the `make static` target).

Three gates; the process exits 1 with the list of findings if any gate finds something:

1. bandit on our code (layers/core, functions, local, tools; tests are not scanned). A finding is
   accepted only when it is suppressed *with a reason*: `# nosec BXXX - reason` or the project's ruff
   form `# noqa: SXXX - reason` (ruff's flake8-bandit `S` codes are bandit's numbers). A `# nosec`
   without a test id and a reason is itself a finding. Whole-test skips and path allowances are listed
   in BANDIT_SKIPS / BANDIT_PATH_ALLOWANCES below, each with its reason.
2. checkov (`--framework cloudformation`) on the SAM-translated template. checkov 3.3.30 pins
   networkx<2.7 (and an older boto3), which conflicts with requirements-dev.txt, so it runs from its own
   venv `.venv-tools/`, created here on first use from the exact pins of requirements-tools.txt
   (recreated when that file changes; a no-op otherwise). Every accepted failure is in CHECKOV_SKIPS
   with its reason, scoped to resources; a skip that no longer matches anything is a finding too, and
   the checks the project relies on (REQUIRED_CHECKOV_PASSES) must have run and passed.
3. The project's own template policy (POLICY_CHECKS), on the translated template: sessions TTL, PITR
   and SSE with the template's KMS key on both tables, no wildcard IAM for DynamoDB / Secrets
   Manager, secrets only by ARN parameter (or a stack-created secret without a value), API Gateway
   throttling, API function timeouts < 29 s,
   reserved concurrency configurable.

bandit and checkov run in parallel subprocesses while the policy checks run here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from local.template import ROOT, TEMPLATE_PATH, load_template

# --------------------------------------------------------------------------- bandit configuration

BANDIT_TARGETS = ("layers/core", "functions", "local", "tools")
BANDIT_EXCLUDES = ("*/__pycache__/*", "*/.aws-sam/*", "*/.build/*")

# Tests skipped everywhere, with the reason (the one place where they are listed).
BANDIT_SKIPS: dict[str, str] = {
    "B101": "assert: used for type narrowing of invariants; the Lambda runtime never runs with -O "
    "(ruff's S101 is ignored project-wide for the same reason)",
    "B404": "importing subprocess is not itself a risk; every call is judged by B602-B607",
    "B603": "subprocess without a shell, argv lists of our own tools; B602/B604/B605/B607 still catch "
    "shell use and partial executable paths",
}

# Tests allowed under a path (fnmatch on the path relative to the repo), with the reason. Mirrors
# ruff's per-file-ignores for local/.
BANDIT_PATH_ALLOWANCES: list[tuple[str, str, str]] = [
    (
        "local/*",
        "B105",
        "local stack only (never deployed): fixed fake credentials for moto and the Nylas emulator",
    ),
    ("local/*", "B106", "local stack only (never deployed): fake credentials passed to local clients"),
    ("local/*", "B104", "local stack only: servers bind where the developer asks"),
    ("local/*", "B311", "local stack only: the emulator's non-security randomness"),
    (
        "tools/bytecode_modules.py",
        "B105",
        "build-time import trace: fake ARNs and credentials in a probe environment that calls nothing",
    ),
]

_NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$", re.IGNORECASE)
_NOQA = re.compile(r"#\s*noqa\s*:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)(?P<rest>.*)$")
_REASON = re.compile(r"^\s*(?:-|--|:|—)\s*\S.{3,}")


@dataclass(frozen=True)
class Suppression:
    test_ids: frozenset[str]
    reason: str


def parse_suppression(line: str) -> Suppression | None:
    """The suppression on one source line, if any: `# nosec B603 - why` or `# noqa: S603 - why`."""
    match = _NOSEC.search(line)
    if match:
        rest = match.group("rest")
        ids = re.match(r"\s*(?P<ids>B\d{3}(?:\s*,\s*B\d{3})*)?(?P<tail>.*)$", rest)
        assert ids is not None
        test_ids = frozenset(re.findall(r"B\d{3}", ids.group("ids") or ""))
        tail = ids.group("tail")
        return Suppression(test_ids, tail.strip(" -:—") if _REASON.match(tail) else "")
    match = _NOQA.search(line)
    if match:
        codes = re.findall(r"S(\d{3})", match.group("codes"))
        if not codes:
            return None
        rest = match.group("rest")
        return Suppression(
            frozenset(f"B{c}" for c in codes), rest.strip(" -:—") if _REASON.match(rest) else ""
        )
    return None


def comments_by_line(source: str) -> dict[int, str]:
    """The comment of each line of Python source (comments only: never text inside strings)."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def unexplained_nosec(path: Path, relative: str) -> list[str]:
    """Every `# nosec` comment of a file that does not name its test ids and give a reason."""
    findings: list[str] = []
    for number, line in sorted(comments_by_line(path.read_text(encoding="utf-8")).items()):
        if not _NOSEC.search(line):
            continue
        suppression = parse_suppression(line)
        if suppression is None or not suppression.test_ids or not suppression.reason:
            findings.append(f"{relative}:{number}: `# nosec` must name its test ids and give a reason")
    return findings


def _allowed_by_path(relative: str, test_id: str) -> bool:
    return any(fnmatch(relative, pattern) and test_id == tid for pattern, tid, _ in BANDIT_PATH_ALLOWANCES)


def judge_bandit(results: list[dict[str, Any]], root: Path = ROOT) -> list[str]:
    """bandit's JSON results (run with --ignore-nosec) minus the suppressions with a reason."""
    findings: list[str] = []
    comments_of: dict[str, dict[int, str]] = {}
    for result in results:
        filename = str(result["filename"])
        relative = os.path.relpath(filename, root) if os.path.isabs(filename) else filename
        test_id = str(result["test_id"])
        if test_id in BANDIT_SKIPS or _allowed_by_path(relative, test_id):
            continue
        if filename not in comments_of:
            comments_of[filename] = comments_by_line((root / relative).read_text(encoding="utf-8"))
        comments = comments_of[filename]
        numbers = result.get("line_range") or [result["line_number"]]
        suppressed = False
        for number in numbers:
            suppression = parse_suppression(comments.get(number, ""))
            if suppression and test_id in suppression.test_ids and suppression.reason:
                suppressed = True
        if not suppressed:
            findings.append(
                f"{relative}:{result['line_number']}: {test_id} ({result['issue_severity']}) "
                f"{result['issue_text']}"
            )
    return findings


def bandit_command(root: Path = ROOT) -> list[str]:
    bandit = Path(sys.executable).parent / "bandit"
    return [
        str(bandit),
        "--recursive",
        "--format",
        "json",
        "--quiet",
        "--ignore-nosec",  # judged here, so that every suppression needs a reason
        "--exclude",
        ",".join(BANDIT_EXCLUDES),
        *[str(root / target) for target in BANDIT_TARGETS],
    ]


def python_files(root: Path = ROOT) -> Iterator[tuple[Path, str]]:
    for target in BANDIT_TARGETS:
        for path in sorted((root / target).rglob("*.py")):
            relative = str(path.relative_to(root))
            if not any(fnmatch(relative, pattern) for pattern in BANDIT_EXCLUDES):
                yield path, relative


# --------------------------------------------------------------------------- checkov configuration

TOOLS_VENV = ROOT / ".venv-tools"
TOOLS_REQUIREMENTS = ROOT / "requirements-tools.txt"
_TOOLS_STAMP = TOOLS_VENV / ".requirements-sha256"


@dataclass(frozen=True)
class CheckovSkip:
    resources: tuple[str, ...]  # fnmatch patterns on checkov's "Type.LogicalId"
    reason: str


# Every accepted checkov failure, scoped to the resources it is accepted for, with its reason.
CHECKOV_SKIPS: dict[str, CheckovSkip] = {
    "CKV_AWS_116": CheckovSkip(
        ("AWS::Lambda::Function.*",),
        "DLQ: the route functions are invoked synchronously by API Gateway (a DLQ only receives failed "
        "asynchronous events); the custom resource's outcome is reported to CloudFormation by crhelper",
    ),
    "CKV_AWS_117": CheckovSkip(
        ("AWS::Lambda::Function.*",),
        "VPC: the functions reach only Nylas (internet) and AWS APIs and no private resource; a VPC "
        "would add a NAT gateway and cold-start latency for no isolation gain",
    ),
    "CKV_AWS_173": CheckovSkip(
        ("AWS::Lambda::Function.*",),
        "environment encryption with a CMK: the environment holds no secret (ARNs, table names, "
        "settings); secret values live in Secrets Manager only",
    ),
    "CKV_AWS_95": CheckovSkip(
        ("AWS::ApiGatewayV2::Stage.HttpApiApiGatewayDefaultStage",),
        "access logging is deliberately off (template.yaml): the callback's query string carries "
        "OAuth code and state, which must stay out of logs; the functions log hashed correlation ids",
    ),
    "CKV_AWS_33": CheckovSkip(
        ("AWS::KMS::Key.DataKey",),
        "the key policy's `Principal: *` statement is AWS's own aws/dynamodb key-policy pattern: "
        "restricted by kms:CallerAccount = this account and kms:ViaService = DynamoDB in this region, "
        "so only this account's principals that may use the tables can use the key, only via DynamoDB",
    ),
    "CKV_AWS_27": CheckovSkip(
        (
            "AWS::SQS::Queue.AppWebhookQueue",
            "AWS::SQS::Queue.AppWebhookDeadLetters",
            "AWS::SQS::Queue.AppWebhookRuleDeadLetters",
        ),
        "encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which this check does not recognise: "
        "EventBridge cannot send to a queue under the AWS-managed aws/sqs KMS key",
    ),
}

# Checks that must have run and passed on these resources (security.md §5 and §8).
REQUIRED_CHECKOV_PASSES: dict[str, tuple[str, ...]] = {
    "CKV_AWS_28": ("AWS::DynamoDB::Table.SessionsTable", "AWS::DynamoDB::Table.GrantsTable"),  # PITR
    "CKV_AWS_119": ("AWS::DynamoDB::Table.SessionsTable", "AWS::DynamoDB::Table.GrantsTable"),  # CMK
}


def _requirements_digest() -> str:
    return hashlib.sha256(TOOLS_REQUIREMENTS.read_bytes()).hexdigest()


def ensure_tools_venv() -> Path:
    """`.venv-tools/bin/checkov`, installing the pinned tool set first when missing or outdated."""
    checkov = TOOLS_VENV / "bin" / "checkov"
    digest = _requirements_digest()
    if checkov.exists() and _TOOLS_STAMP.exists() and _TOOLS_STAMP.read_text().strip() == digest:
        return checkov
    print(f"static gates: installing checkov into {TOOLS_VENV.name}/ (first run, ~20 s)", flush=True)
    uv = Path(sys.executable).parent / "uv"
    if TOOLS_VENV.exists():
        shutil.rmtree(TOOLS_VENV)
    if uv.exists():
        commands = [
            [str(uv), "venv", "--quiet", "--python", sys.executable, str(TOOLS_VENV)],
            [
                str(uv),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(TOOLS_VENV / "bin" / "python"),
                "--compile-bytecode",
                "-r",
                str(TOOLS_REQUIREMENTS),
            ],
        ]
    else:
        base = getattr(sys, "_base_executable", sys.executable)
        commands = [
            [base, "-m", "venv", str(TOOLS_VENV)],
            [
                str(TOOLS_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-r",
                str(TOOLS_REQUIREMENTS),
            ],
        ]
    for command in commands:
        subprocess.run(command, check=True)  # noqa: S603 - our venv's uv/python with fixed arguments
    _TOOLS_STAMP.write_text(digest + "\n")
    return checkov


def checkov_command(checkov: Path, template_json: Path) -> list[str]:
    return [
        str(checkov),
        "--file",
        str(template_json),
        "--framework",
        "cloudformation",
        "--output",
        "json",
        "--skip-download",
    ]


def judge_checkov(report: dict[str, Any]) -> list[str]:
    """checkov's JSON report minus CHECKOV_SKIPS; stale skips and missing required passes are findings."""
    results = report.get("results") or {}
    findings: list[str] = []
    used: set[tuple[str, str]] = set()
    for failed in results.get("failed_checks") or []:
        check_id, resource = str(failed["check_id"]), str(failed["resource"])
        skip = CHECKOV_SKIPS.get(check_id)
        if skip and any(fnmatch(resource, pattern) for pattern in skip.resources):
            used.add((check_id, resource))
            continue
        findings.append(f"checkov {check_id} {resource}: {failed.get('check_name', '')}")
    for check_id, skip in CHECKOV_SKIPS.items():
        if not any(u[0] == check_id for u in used):
            findings.append(
                f"checkov skip {check_id} matches no failure any more: remove it ({skip.resources})"
            )
    passed = {(str(p["check_id"]), str(p["resource"])) for p in results.get("passed_checks") or []}
    for check_id, resources in REQUIRED_CHECKOV_PASSES.items():
        for resource in resources:
            if (check_id, resource) not in passed:
                findings.append(f"checkov {check_id} must pass on {resource} (it did not run or failed)")
    for error in results.get("parsing_errors") or []:
        findings.append(f"checkov could not parse {error}")
    return findings


# --------------------------------------------------------------------------- template policy

Resources = dict[str, Any]
API_GATEWAY_TIMEOUT = 29
BROWSER_ROUTE_PREFIX = "/connect/"
_SECRET_ARN_PATTERN = re.compile(r"secretsmanager")
_SECRET_VALUE_NAME = re.compile(r"(secret|password|token|apikey|api_key|credential)", re.IGNORECASE)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == kind
    }


def _branches(node: Any) -> Iterator[Any]:
    """Every concrete alternative of a value, expanding Fn::If (both branches) and dropping NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        yield from _branches(when_true)
        yield from _branches(when_false)
    elif node == {"Ref": "AWS::NoValue"}:
        return
    else:
        yield node


def _as_list(node: Any) -> list[Any]:
    items = node if isinstance(node, list) else [node]
    return [branch for item in items for branch in _branches(item)]


def _ref_names(node: Any) -> set[str]:
    """Every `Ref` name inside a value (through Fn::If, Fn::Sub variables and so on)."""
    if isinstance(node, dict):
        names = {node["Ref"]} if isinstance(node.get("Ref"), str) else set()
        for value in node.values():
            names |= _ref_names(value)
        return names
    if isinstance(node, list):
        return set().union(*(_ref_names(item) for item in node)) if node else set()
    return set()


def _table_key_arn_targets(template: dict[str, Any], node: Any) -> bool:
    """True when a KMSMasterKeyId is `Fn::GetAtt <a KMS key of this template>.Arn` or a Ref of one."""
    keys = set(_resources(template, "AWS::KMS::Key"))
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        name = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
        return name in keys
    return isinstance(node, dict) and node.get("Ref") in keys


def _sessions_and_grants(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tables = _resources(template, "AWS::DynamoDB::Table")
    # TenantsTable (admin consent) holds data of customers too: the same PITR and SSE rules.
    return {name: tables[name] for name in ("SessionsTable", "GrantsTable", "TenantsTable") if name in tables}


def policy_tables(template: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    tables = _sessions_and_grants(template)
    for name in ("SessionsTable", "GrantsTable"):
        if name not in tables:
            findings.append(f"{name}: missing (expected an AWS::DynamoDB::Table)")
    for name, table in tables.items():
        props = table.get("Properties") or {}
        pitr = props.get("PointInTimeRecoverySpecification") or {}
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            findings.append(f"{name}: point-in-time recovery must be enabled")
        sse = props.get("SSESpecification") or {}
        if sse.get("SSEEnabled") is not True or sse.get("SSEType") != "KMS":
            findings.append(f"{name}: SSE with KMS must be enabled (SSEEnabled: true, SSEType: KMS)")
        elif not _table_key_arn_targets(template, sse.get("KMSMasterKeyId")):
            findings.append(f"{name}: SSE must use the template's customer-managed KMS key (KMSMasterKeyId)")
    sessions = tables.get("SessionsTable")
    if sessions is not None:
        ttl = (sessions.get("Properties") or {}).get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") is not True or not ttl.get("AttributeName"):
            findings.append("SessionsTable: TTL must be enabled (TimeToLiveSpecification)")
    return findings


_SERVICES = ("dynamodb", "secretsmanager")


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every identity-policy statement of the template (roles, policies, managed policies)."""
    for kind in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, resource in _resources(template, kind).items():
            props = resource.get("Properties") or {}
            documents: list[tuple[str, Any]] = []
            if kind == "AWS::IAM::Role":
                for policy in _as_list(props.get("Policies") or []):
                    documents.append(
                        (f"{logical_id}/{policy.get('PolicyName')}", policy.get("PolicyDocument"))
                    )
            else:
                documents.append((logical_id, props.get("PolicyDocument")))
            for where, document in documents:
                for statement in _as_list((document or {}).get("Statement") or []):
                    if isinstance(statement, dict):
                        yield where, statement


def policy_iam(template: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    for where, statement in _statements(template):
        if statement.get("Effect") != "Allow":
            continue
        label = f"{where} statement {statement.get('Sid', '?')}"
        if "NotAction" in statement or "NotResource" in statement:
            findings.append(f"{label}: NotAction/NotResource grants by exclusion; list what is allowed")
            continue
        actions = [str(a) for a in _as_list(statement.get("Action") or [])]
        resources = _as_list(statement.get("Resource") or [])
        for action in actions:
            if action == "*" or action.lower() in {f"{s}:*" for s in _SERVICES}:
                findings.append(f"{label}: Action {action!r} is a wildcard")
        touches = [a for a in actions if a.split(":", 1)[0].lower() in _SERVICES]
        if touches and any(r == "*" for r in resources):
            findings.append(f"{label}: Resource '*' for {sorted(set(touches))}")
    broad = ("AmazonDynamoDBFullAccess", "SecretsManagerReadWrite", "AdministratorAccess", "PowerUserAccess")
    for logical_id, role in _resources(template, "AWS::IAM::Role").items():
        for arn in _as_list((role.get("Properties") or {}).get("ManagedPolicyArns") or []):
            text = json.dumps(arn)
            for name in broad:
                if name in text:
                    findings.append(f"{logical_id}: managed policy {name} is not least privilege")
    return findings


def policy_secrets(template: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    parameters: dict[str, Any] = template.get("Parameters") or {}
    arn_parameters = {
        name
        for name, spec in parameters.items()
        if name.endswith("Arn") and _SECRET_ARN_PATTERN.search(str(spec.get("AllowedPattern", "")))
    }
    for name, spec in parameters.items():
        if spec.get("NoEcho") in (True, "true", "True"):
            findings.append(f"parameter {name}: NoEcho means a secret value is passed as a parameter")
        elif _SECRET_VALUE_NAME.search(name) and not name.endswith("Arn"):
            findings.append(f"parameter {name}: looks like a secret value; pass the secret's ARN instead")
        elif "SecretArn" in name and name not in arn_parameters:
            findings.append(f"parameter {name}: needs an AllowedPattern that only admits secretsmanager ARNs")
    # A secret the stack creates itself (the Nylas webhook secret, filled by the setup) is allowed when
    # the template holds no value for it: no SecretString other than "{}"; or a value Secrets Manager
    # generates (GenerateSecretString into an empty template: the app webhook signing secret, the
    # listing's cursor key), which never appears in the template either.
    stack_secrets = set()
    for name, secret in _resources(template, "AWS::SecretsManager::Secret").items():
        props = secret.get("Properties") or {}
        generated = props.get("GenerateSecretString")
        if "SecretString" not in props and isinstance(generated, dict):
            if generated.get("SecretStringTemplate", "{}") == "{}" and generated.get("GenerateStringKey"):
                stack_secrets.add(name)
            else:
                findings.append(f"{name}: a generated secret's template must be empty ({{}})")
        elif props.get("SecretString", "{}") == "{}" and "GenerateSecretString" not in props:
            stack_secrets.add(name)
        else:
            findings.append(f"{name}: a stack-created secret must not carry a value in the template")
    arn_parameters = arn_parameters | stack_secrets
    for where, statement in _statements(template):
        actions = [str(a) for a in _as_list(statement.get("Action") or [])]
        if not any(a.lower().startswith("secretsmanager:") for a in actions):
            continue
        for resource in _as_list(statement.get("Resource") or []):
            refs = _ref_names(resource)
            if not (isinstance(resource, dict) and set(resource) == {"Ref"} and refs <= arn_parameters):
                findings.append(
                    f"{where} statement {statement.get('Sid', '?')}: Secrets Manager resources must be "
                    f"secret ARN parameters, got {json.dumps(resource)}"
                )
    for logical_id, function in _resources(template, "AWS::Lambda::Function").items():
        variables = ((function.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        for name, value in variables.items():
            if name.endswith("_SECRET_ARN"):
                if not (isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in arn_parameters):
                    findings.append(
                        f"{logical_id}: {name} must be a Ref of a secret ARN parameter or a stack secret"
                    )
            elif _SECRET_VALUE_NAME.search(name) and not name.endswith(("_ARN", "_MAX_AGE", "_EXPIRES_IN")):
                findings.append(f"{logical_id}: environment variable {name} looks like a secret value")
    return findings


def _api_function_ids(template: dict[str, Any]) -> set[str]:
    """The functions API Gateway invokes (their AWS::Lambda::Permission for apigateway.amazonaws.com,
    granted on the function or, with AutoPublishAlias, on its alias)."""
    aliases = {
        logical_id: _ref_names((alias.get("Properties") or {}).get("FunctionName"))
        for logical_id, alias in _resources(template, "AWS::Lambda::Alias").items()
    }
    ids: set[str] = set()
    for permission in _resources(template, "AWS::Lambda::Permission").values():
        props = permission.get("Properties") or {}
        if props.get("Principal") == "apigateway.amazonaws.com":
            for name in _ref_names(props.get("FunctionName")):
                ids |= aliases.get(name, {name})
    return ids


def policy_functions(template: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    functions = _resources(template, "AWS::Lambda::Function")
    api_ids = _api_function_ids(template)
    if not api_ids:
        findings.append("no function is invoked by API Gateway (no AWS::Lambda::Permission found)")
    parameters = template.get("Parameters") or {}
    for logical_id in sorted(api_ids):
        props = (functions.get(logical_id) or {}).get("Properties") or {}
        timeout = props.get("Timeout", 3)
        if not isinstance(timeout, int) or timeout >= API_GATEWAY_TIMEOUT:
            findings.append(f"{logical_id}: Timeout {timeout!r} must be a number < {API_GATEWAY_TIMEOUT} s")
        reserved = props.get("ReservedConcurrentExecutions")
        refs = {name for name in _ref_names(reserved) if parameters.get(name, {}).get("Type") == "Number"}
        if reserved is None or not refs:
            findings.append(
                f"{logical_id}: ReservedConcurrentExecutions must be set from a Number parameter"
                " (configurable)"
            )
    return findings


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def policy_throttling(template: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    stages = _resources(template, "AWS::ApiGatewayV2::Stage")
    if not stages:
        return ["no AWS::ApiGatewayV2::Stage: the HTTP API has no stage to throttle"]
    browser_routes = set()
    for api in _resources(template, "AWS::ApiGatewayV2::Api").values():
        body = (api.get("Properties") or {}).get("Body") or {}
        for path, item in (body.get("paths") or {}).items():
            if str(path).startswith(BROWSER_ROUTE_PREFIX):
                browser_routes |= {
                    f"{method.upper()} {path}" for method in item if not method.startswith("x-")
                }
    if not browser_routes:
        findings.append("no browser route (/connect/...) found in the HTTP API")
    for logical_id, stage in stages.items():
        props = stage.get("Properties") or {}
        default = props.get("DefaultRouteSettings") or {}
        for key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
            if not _positive(default.get(key)):
                findings.append(f"{logical_id}: DefaultRouteSettings.{key} must be set (> 0)")
        routes = props.get("RouteSettings") or {}
        for route in sorted(browser_routes):
            settings = routes.get(route) or {}
            for key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
                if not _positive(settings.get(key)):
                    findings.append(f"{logical_id}: RouteSettings[{route!r}].{key} must be set (> 0)")
    return findings


#: What each function's code does with DynamoDB and Secrets Manager: (action, resource) where the resource
#: is a table's logical id (with `/index/<name>` for a query on an index) or a secret ARN parameter. The
#: template must grant exactly this: an action the code does not perform fails `make test` (least
#: privilege, issue 9), and so does a missing one. tests/unit/test_least_privilege.py checks the DynamoDB
#: part against what the use cases really call. A new function declares its needs here.
LEAST_PRIVILEGE: dict[str, frozenset[tuple[str, str]]] = {
    "CreateSessionFunction": frozenset(
        {
            ("dynamodb:PutItem", "SessionsTable"),
            ("dynamodb:GetItem", "GrantsTable"),  # "reconnect": the mailbox the user holds
            ("secretsmanager:GetSecretValue", "ApiKeysSecretArn"),
        }
    ),
    # Popup embedding: the status route reads one session; connect.js's route touches no AWS service.
    "SessionStatusFunction": frozenset({("dynamodb:GetItem", "SessionsTable")}),
    "ConnectStartFunction": frozenset(
        {("dynamodb:UpdateItem", "SessionsTable"), ("secretsmanager:GetSecretValue", "NylasSecretArn")}
    ),
    "ConnectCallbackFunction": frozenset(
        {
            ("dynamodb:GetItem", "SessionsTable"),
            ("dynamodb:UpdateItem", "SessionsTable"),
            ("dynamodb:GetItem", "GrantsTable"),
            ("dynamodb:PutItem", "GrantsTable"),
            ("dynamodb:UpdateItem", "GrantsTable"),
            ("dynamodb:DeleteItem", "GrantsTable"),
            ("dynamodb:ConditionCheckItem", "GrantsTable"),
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
        }
    ),
    "GetGrantFunction": frozenset(
        {("dynamodb:GetItem", "GrantsTable"), ("secretsmanager:GetSecretValue", "ApiKeysSecretArn")}
    ),
    "DeleteGrantFunction": frozenset(
        {
            ("dynamodb:GetItem", "GrantsTable"),
            ("dynamodb:DeleteItem", "GrantsTable"),
            ("secretsmanager:GetSecretValue", "ApiKeysSecretArn"),
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
        }
    ),
    "RevokeSweeperFunction": frozenset(
        {
            ("dynamodb:Query", "GrantsTable/index/revoke-due"),
            ("dynamodb:GetItem", "GrantsTable"),
            ("dynamodb:DeleteItem", "GrantsTable"),
            ("dynamodb:UpdateItem", "GrantsTable"),
            # a lost code exchange: the unheld grants of its window become REVOKE# entries
            ("dynamodb:PutItem", "GrantsTable"),
            # the revoke claim's transaction (security review 3, G7): no GRANT# guard + REVOKE# lease
            ("dynamodb:ConditionCheckItem", "GrantsTable"),
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
        }
    ),
    # Admin consent (docs/admin-consent.md): links in the sessions table, tenants in their own table.
    "CreateAdminConsentFunction": frozenset(
        {("dynamodb:PutItem", "SessionsTable"), ("secretsmanager:GetSecretValue", "ApiKeysSecretArn")}
    ),
    "AdminConsentStartFunction": frozenset(
        {("dynamodb:UpdateItem", "SessionsTable"), ("secretsmanager:GetSecretValue", "AzureSecretArn")}
    ),
    "AdminConsentCallbackFunction": frozenset(
        {
            ("dynamodb:UpdateItem", "SessionsTable"),
            ("dynamodb:PutItem", "TenantsTable"),
            ("secretsmanager:GetSecretValue", "AzureSecretArn"),
        }
    ),
    "GetTenantFunction": frozenset(
        {("dynamodb:GetItem", "TenantsTable"), ("secretsmanager:GetSecretValue", "ApiKeysSecretArn")}
    ),
    "NylasSetupFunction": frozenset(
        {
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
            ("secretsmanager:GetSecretValue", "AzureSecretArn"),
            # the webhook destination's secret: read to compare, written when created or rotated
            ("secretsmanager:GetSecretValue", "WebhookSecret"),
            ("secretsmanager:PutSecretValue", "WebhookSecret"),
        }
    ),
    # The grant record: read; `teams`, `status = expired` and the ambiguous-create tags updated.
    **{
        name: frozenset(
            {
                ("dynamodb:GetItem", "GrantsTable"),
                ("dynamodb:UpdateItem", "GrantsTable"),
                ("secretsmanager:GetSecretValue", "ApiKeysSecretArn"),
                ("secretsmanager:GetSecretValue", "NylasSecretArn"),
            }
        )
        for name in ("GetMeetingFunction", "UpdateMeetingFunction", "DeleteMeetingFunction")
    },
    "CreateMeetingFunction": frozenset(
        {
            ("dynamodb:GetItem", "GrantsTable"),
            ("dynamodb:UpdateItem", "GrantsTable"),
            # Powertools Idempotency: get, put (in progress), update (completed), delete (failed)
            ("dynamodb:GetItem", "IdempotencyTable"),
            ("dynamodb:PutItem", "IdempotencyTable"),
            ("dynamodb:UpdateItem", "IdempotencyTable"),
            ("dynamodb:DeleteItem", "IdempotencyTable"),
            ("secretsmanager:GetSecretValue", "ApiKeysSecretArn"),
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
        }
    ),
    # App webhooks: only the signing secret (its SQS actions are outside this model).
    "AppWebhookFunction": frozenset({("secretsmanager:GetSecretValue", "AppWebhookSecret")}),
    # GET /v1/grants: Queries on the three listing indexes, never the table; the cursor's key.
    "ListGrantsFunction": frozenset(
        {
            ("dynamodb:Query", "GrantsTable/index/grants-all"),
            ("dynamodb:Query", "GrantsTable/index/grants-by-status"),
            ("dynamodb:Query", "GrantsTable/index/grants-by-email"),
            ("secretsmanager:GetSecretValue", "ApiKeysSecretArn"),
            ("secretsmanager:GetSecretValue", "ListingCursorSecret"),
        }
    ),
    # The stream records come in the event (its event source mapping reads the stream; SAM's managed
    # stream policy): no table item or secret of its own. Its only KMS use is decrypting the records.
    "GrantEventsFunction": frozenset(),
    # The same for the sessions table's publisher (Connect Failed, Tenant Admin Consented).
    "SessionEventsFunction": frozenset(),
    # GRANT# owner lookup; one transaction: Put the NOTIFICATION# dedupe marker + Update USER#.
    "NylasWebhooksFunction": frozenset(
        {
            ("dynamodb:GetItem", "GrantsTable"),
            ("dynamodb:PutItem", "GrantsTable"),
            ("dynamodb:UpdateItem", "GrantsTable"),
            ("secretsmanager:GetSecretValue", "WebhookSecret"),
            # a notification in the same second as the record's last change asks Nylas (issue 19)
            ("secretsmanager:GetSecretValue", "NylasSecretArn"),
        }
    ),
}


def _resource_name(node: Any) -> str:
    """`Fn::GetAtt [T, Arn]` → T; `Ref X` → X; `Fn::Sub "${T.Arn}/index/i"` → T/index/i; else JSON."""
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        parts = target if isinstance(target, list) else str(target).split(".", 1)
        if len(parts) == 2 and parts[1] == "Arn":
            return str(parts[0])
    if isinstance(node, dict) and isinstance(node.get("Ref"), str):
        return str(node["Ref"])
    if isinstance(node, dict) and isinstance(node.get("Fn::Sub"), str):
        match = re.fullmatch(r"\$\{(\w+)\.Arn\}(/index/[\w.-]+)", node["Fn::Sub"])
        if match:
            return match.group(1) + match.group(2)
    return json.dumps(node, sort_keys=True)


def _function_roles(template: dict[str, Any]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for logical_id, function in _resources(template, "AWS::Lambda::Function").items():
        role = (function.get("Properties") or {}).get("Role")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            target = role["Fn::GetAtt"]
            roles[logical_id] = str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return roles


def _via_services(statement: dict[str, Any]) -> frozenset[str]:
    """The services a statement is restricted to by `kms:ViaService` (`dynamodb`, `secretsmanager`…)."""
    services: set[str] = set()
    for operator, conditions in (statement.get("Condition") or {}).items():
        if not str(operator).startswith("StringEquals") or not isinstance(conditions, dict):
            continue
        for key, value in conditions.items():
            if str(key).lower() != "kms:viaservice":
                continue
            for item in _as_list(value):
                text = item.get("Fn::Sub", "") if isinstance(item, dict) else str(item)
                services.add(str(text).split(".", 1)[0])
    return frozenset(services)


def _role_statements(template: dict[str, Any], role: str) -> Iterator[dict[str, Any]]:
    props = (template.get("Resources", {}).get(role) or {}).get("Properties") or {}
    for policy in _as_list(props.get("Policies") or []):
        for statement in _as_list((policy.get("PolicyDocument") or {}).get("Statement") or []):
            if isinstance(statement, dict) and statement.get("Effect") == "Allow":
                yield statement


def granted_actions(template: dict[str, Any], role: str) -> set[tuple[str, str]]:
    """(action, resource) pairs for DynamoDB, Secrets Manager and KMS that a role's inline policies allow
    (KMS resources: the key's logical id or its ARN parameter)."""
    granted: set[tuple[str, str]] = set()
    for statement in _role_statements(template, role):
        for action in (str(a) for a in _as_list(statement.get("Action") or [])):
            if action.split(":", 1)[0].lower() not in _MODELLED:
                continue
            for resource in _as_list(statement.get("Resource") or []):
                granted.add((action, _resource_name(resource)))
    return granted


def _kms_grants_without_via(template: dict[str, Any], role: str, service: str, keys: set[str]) -> set[str]:
    """The `kms:` grants on `keys` that are not restricted to `service` by `kms:ViaService`."""
    loose: set[str] = set()
    for statement in _role_statements(template, role):
        actions = [str(a) for a in _as_list(statement.get("Action") or []) if str(a).startswith("kms:")]
        resources = {_resource_name(r) for r in _as_list(statement.get("Resource") or [])}
        if actions and resources & keys and _via_services(statement) != {service}:
            loose |= {f"{a} on {k}" for a in actions for k in sorted(resources & keys)}
    return loose


# --------------------------------------------------------------------------- KMS, derived from the above
#
# No KMS permission is declared by hand: it follows from what a function does with the secrets and
# tables (LEAST_PRIVILEGE) and from which key encrypts them in a given parameter set.
#
# - The three parameter secrets are encrypted with `SecretsKmsKeyArn` when it is set (else with the
#   AWS-managed aws/secretsmanager key, which needs no permission); a stack-created secret with the key
#   its `KmsKeyId` names. That key's policy is the customer's and normally delegates to IAM, so the
#   role itself must allow: GetSecretValue -> kms:Decrypt, PutSecretValue -> kms:GenerateDataKey (Secrets
#   Manager's envelope encryption asks KMS for a data key; it never calls kms:Encrypt), restricted by
#   `kms:ViaService` to Secrets Manager.
# - The tables are encrypted with the stack's own key (SSESpecification.KMSMasterKeyId). Its key policy
#   lets the account's principals use it through DynamoDB (statement ThroughDynamoDB), so an IAM grant
#   is optional, but one that is given must be needed: reads (and stream records) -> kms:Decrypt;
#   writes -> kms:Decrypt, kms:Encrypt, kms:GenerateDataKey.
SECRETS_KEY_PARAMETER = "SecretsKmsKeyArn"
SECRET_KMS_ACTIONS: dict[str, frozenset[str]] = {
    "secretsmanager:GetSecretValue": frozenset({"kms:Decrypt"}),
    "secretsmanager:PutSecretValue": frozenset({"kms:GenerateDataKey"}),
}
TABLE_READS = frozenset(
    {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:BatchGetItem",
        "dynamodb:ConditionCheckItem",
    }
)
TABLE_WRITES = frozenset(
    {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
)
_MODELLED = (*_SERVICES, "kms")


def secret_keys(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, str]:
    """secret (ARN parameter or stack secret) -> the customer-managed key (parameter or logical id)
    that encrypts it, in a template whose conditions are resolved, for these parameter values."""
    keys: dict[str, str] = {}
    declared: dict[str, Any] = template.get("Parameters") or {}
    customer_key = str(parameters.get(SECRETS_KEY_PARAMETER) or "")
    if customer_key:
        for name, spec in declared.items():
            if name.endswith("Arn") and _SECRET_ARN_PATTERN.search(str(spec.get("AllowedPattern", ""))):
                keys[name] = SECRETS_KEY_PARAMETER
    for name, secret in _resources(template, "AWS::SecretsManager::Secret").items():
        key = (secret.get("Properties") or {}).get("KmsKeyId")
        if key is not None and not (isinstance(key, str) and key.startswith("alias/aws/")):
            keys[name] = _resource_name(key)
    return keys


def table_keys(template: dict[str, Any]) -> dict[str, str]:
    """table logical id -> the template's KMS key (logical id) that encrypts it."""
    keys: dict[str, str] = {}
    for name, table in _resources(template, "AWS::DynamoDB::Table").items():
        sse = (table.get("Properties") or {}).get("SSESpecification") or {}
        key = sse.get("KMSMasterKeyId")
        if sse.get("SSEEnabled") is True and key is not None:
            keys[name] = _resource_name(key)
    return keys


def _stream_tables(template: dict[str, Any], function: str) -> set[str]:
    """Tables whose stream invokes `function` (its event source mappings)."""
    tables: set[str] = set()
    names = {function} | {
        logical_id
        for logical_id, alias in _resources(template, "AWS::Lambda::Alias").items()
        if function in _ref_names((alias.get("Properties") or {}).get("FunctionName"))
    }
    for mapping in _resources(template, "AWS::Lambda::EventSourceMapping").values():
        props = mapping.get("Properties") or {}
        if not names & _ref_names(props.get("FunctionName")):
            continue
        source = props.get("EventSourceArn")
        if isinstance(source, dict) and "Fn::GetAtt" in source:
            target = source["Fn::GetAtt"]
            parts = target if isinstance(target, list) else str(target).split(".", 1)
            if len(parts) == 2 and parts[1] == "StreamArn":
                tables.add(str(parts[0]))
    return tables


def kms_needs(
    template: dict[str, Any], function: str, declared: frozenset[tuple[str, str]], parameters: dict[str, Any]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(what the role must allow, what it may allow) on KMS keys, from `declared` (LEAST_PRIVILEGE)."""
    required: set[tuple[str, str]] = set()
    allowed: set[tuple[str, str]] = set()
    by_secret = secret_keys(template, parameters)
    for action, resource in declared:
        key = by_secret.get(resource)
        if key is not None:
            required |= {(kms, key) for kms in SECRET_KMS_ACTIONS.get(action, frozenset())}
    by_table = table_keys(template)
    for action, resource in declared:
        key = by_table.get(resource.split("/index/", 1)[0])
        if key is None:
            continue
        if action in TABLE_READS or action in TABLE_WRITES:
            allowed.add(("kms:Decrypt", key))
        if action in TABLE_WRITES:
            allowed |= {("kms:Encrypt", key), ("kms:GenerateDataKey", key)}
    for table in _stream_tables(template, function):
        if table in by_table:
            allowed.add(("kms:Decrypt", by_table[table]))
    return required, allowed | required


def least_privilege_findings(template: dict[str, Any], parameters: dict[str, Any]) -> list[str]:
    """The least-privilege findings of a translated template whose conditions are resolved for one
    parameter set (`parameters`: its values, defaults applied)."""
    findings: list[str] = []
    secrets_keys = set(secret_keys(template, parameters).values())
    for function, role in sorted(_function_roles(template).items()):
        granted = granted_actions(template, role)
        needed = LEAST_PRIVILEGE.get(function)
        if needed is None:
            if granted:
                findings.append(
                    f"{function}: its DynamoDB/Secrets Manager permissions are not declared in "
                    "tools/static_gates.LEAST_PRIVILEGE"
                )
            continue
        kms_required, kms_allowed = kms_needs(template, function, needed, parameters)
        granted_kms = {g for g in granted if g[0].startswith("kms:")}
        granted_rest = granted - granted_kms
        for action, resource in sorted(granted_rest - needed):
            findings.append(f"{function}: grants {action} on {resource}, which its code does not use")
        for action, resource in sorted(needed - granted_rest):
            findings.append(f"{function}: lacks {action} on {resource}, which its code uses")
        for action, resource in sorted(granted_kms - kms_allowed):
            findings.append(
                f"{function}: grants {action} on {resource}, which no secret or table it uses needs"
            )
        for action, resource in sorted(kms_required - granted_kms):
            readers = sorted(r for a, r in needed if a.startswith("secretsmanager:"))
            findings.append(
                f"{function}: lacks {action} on {resource}, which it needs to use the secret(s) "
                f"{', '.join(readers)} encrypted with it (add the SecretsKey statement: "
                f"`!If [HasSecretsKmsKey, {{Sid: SecretsKey, Action: [{action}], Resource: !Ref {resource}, "
                "Condition kms:ViaService secretsmanager}, !Ref AWS::NoValue]`)"
            )
        for grant in sorted(_kms_grants_without_via(template, role, "secretsmanager", secrets_keys)):
            findings.append(
                f"{function}: {grant} must be restricted to Secrets Manager (Condition StringEquals "
                "kms:ViaService secretsmanager.${AWS::Region}.amazonaws.com)"
            )
    return findings


def policy_least_privilege(template: dict[str, Any]) -> list[str]:
    """Least privilege, KMS included, for every parameter set of deploy/parameters (conditions resolved
    per set). A finding of only some sets names them."""
    from tools.cfn import Evaluation, parameter_sets

    by_finding: dict[str, list[str]] = {}
    sets = parameter_sets()
    if not sets:
        return ["no parameter set in deploy/parameters/: least privilege cannot be resolved"]
    for parameters in sets:
        evaluation = Evaluation(template, parameters)
        for finding in least_privilege_findings(evaluation.resolved(), evaluation.values):
            by_finding.setdefault(finding, []).append(parameters.name)
    return [
        finding if len(names) == len(sets) else f"{finding} (parameter set(s): {', '.join(names)})"
        for finding, names in by_finding.items()
    ]


POLICY_CHECKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "tables (TTL, PITR, SSE with the CMK)": policy_tables,
    "IAM (no wildcards for DynamoDB / Secrets Manager)": policy_iam,
    "secrets (by ARN parameter only)": policy_secrets,
    "API functions (timeout, reserved concurrency)": policy_functions,
    "API Gateway throttling": policy_throttling,
    "least privilege (exactly the actions each function uses)": policy_least_privilege,
}


def check_policy(translated: dict[str, Any]) -> list[str]:
    return [f"policy: {finding}" for check in POLICY_CHECKS.values() for finding in check(translated)]


# --------------------------------------------------------------------------- running the gates


def translated_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    from local.lint_template import translate  # the translator import is slow: only here

    return translate(load_template(path))


def run(template_path: Path = TEMPLATE_PATH) -> tuple[list[str], list[str]]:
    """(report lines, findings) of every gate."""
    report: list[str] = []
    findings: list[str] = []
    started = time.monotonic()
    bandit = subprocess.Popen(  # noqa: S603 - the venv's bandit on our own directories
        bandit_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        translated = translated_template(template_path)
    except Exception as exc:
        bandit.kill()
        bandit.wait()
        return report, [f"template: aws-sam-translator failed: {exc}"]
    checkov_bin = ensure_tools_venv()
    with tempfile.TemporaryDirectory() as tmp:
        template_json = Path(tmp) / "translated.json"
        template_json.write_text(json.dumps(translated, indent=1), encoding="utf-8")
        env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "ERROR"}
        checkov = subprocess.Popen(  # noqa: S603 - the pinned checkov on our own translated template
            checkov_command(checkov_bin, template_json),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp,
        )
        policy = check_policy(translated)
        report.append(f"template policy: {'clean' if not policy else f'{len(policy)} finding(s)'}")
        findings += policy

        bandit_out, bandit_err = bandit.communicate()
        try:
            bandit_results = json.loads(bandit_out)["results"]
        except (ValueError, KeyError):
            bandit_results = None
        if bandit_results is None:
            findings.append(
                f"bandit did not produce a report (exit {bandit.returncode}): {bandit_err[-500:]}"
            )
        else:
            found = judge_bandit(bandit_results)
            for path, relative in python_files():
                found += unexplained_nosec(path, relative)
            report.append(f"bandit: {'clean' if not found else f'{len(found)} finding(s)'}")
            findings += [f"bandit: {f}" for f in found]

        checkov_out, checkov_err = checkov.communicate()
    try:
        checkov_report = json.loads(checkov_out)
    except ValueError:
        findings.append(f"checkov did not produce a report (exit {checkov.returncode}): {checkov_err[-500:]}")
    else:
        if isinstance(checkov_report, list):  # one report per framework; we ask for one
            checkov_report = next((r for r in checkov_report if r.get("check_type") == "cloudformation"), {})
        found = judge_checkov(checkov_report)
        summary = checkov_report.get("summary", {})
        verdict = "clean" if not found else f"{len(found)} finding(s)"
        report.append(
            f"checkov {summary.get('checkov_version', '?')}: "
            f"{summary.get('passed', 0)} passed, {summary.get('failed', 0) - len(found)} failed on resources "
            f"accepted by the {len(CHECKOV_SKIPS)} documented skips (CHECKOV_SKIPS), {verdict}"
        )
        findings += found
    report.append(f"static gates took {time.monotonic() - started:.1f} s")
    return report, findings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report, findings = run(Path(args[0]) if args else TEMPLATE_PATH)
    print("\n".join(report))
    if findings:
        print(f"\nstatic gates FAILED ({len(findings)} finding(s)):")
        print("\n".join(f"  - {finding}" for finding in findings))
        return 1
    print("static gates: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
