"""`python -m tools.deploy_check` (the `make deploy-check` target): `sam build` + `sam deploy`, rehearsed
offline on every `make test`.

teams-connect cannot reach AWS from here, so this checks everything about a deployment that can be
known without it (docs/deployment.md, "The deploy rehearsal"):

1. artefacts: the packages of `make build` (.build/) are those of the sources: every function of the
   template has its zip with exactly its directory's files and checked-hash bytecode, the layer zip has
   `python/teams_connect` and none of the runtime's packages, all within Lambda's size limits;
2. parameter sets (deploy/parameters/*.json, CloudFormation CLI parameter files): each valid against
   the template's parameters, and together they switch every `Condition` both ways and take every
   `AllowedValues` value, in every region docs/deployment.md claims ("Regions");
3. the SAM template translated to CloudFormation offline by aws-sam-translator, for each parameter set;
4. cfn-lint over each translation with its parameter sets, in every claimed region;
5. every role's permissions, resolved per parameter set and region, against what the code calls, both
   ways, KMS included (tools/static_gates.least_privilege_findings: one model for `make static` too);
6. every built function imported the way Lambda imports it: a fresh `python3.12 -I -S`, `sys.path` =
   the unzipped function, the unzipped layer's `python/` and the runtime's own packages
   (requirements-runtime.txt: boto3/botocore at the python3.12 runtime's version, in .build/runtime/),
   the environment the translated template gives that function for the parameter set plus Lambda's
   own variables, every socket call refused, in each tracing mode (and SnapStart's init where a set
   turns it on);
7. the template against CloudFormation's limits, and deploys that go through S3 (samconfig.toml's
   `resolve_s3`, every `sam deploy` in the docs), since template.yaml is near the 51,200-byte limit of an
   inline template body.

Each failure names the resource, the parameter set and what to fix; exit status 1 when there is one.
"""

from __future__ import annotations

import argparse
import compileall
import concurrent.futures
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.template import TEMPLATE_PATH, load_template

from tools.cfn import (
    Evaluation,
    ParameterSet,
    TemplateError,
    condition_coverage,
    parameter_sets,
    validate_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
RUNTIME_REQUIREMENTS = ROOT / "requirements-runtime.txt"
SAMCONFIG = ROOT / "samconfig.toml"
DEPLOY_DOCS = (ROOT / "README.md", DEPLOYMENT_DOC)
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
UV = Path(sys.executable).parent / "uv"

# CloudFormation quotas (CloudFormation User Guide, "Understand CloudFormation quotas").
INLINE_TEMPLATE_BYTES = 51_200  # TemplateBody in the CreateStack/UpdateStack request
S3_TEMPLATE_BYTES = 1_048_576  # TemplateURL (what `sam deploy` uses with a bucket)
MAX_RESOURCES = 500
MAX_PARAMETERS = 200
MAX_OUTPUTS = 200
# Lambda quotas: a function's code and its layers, unzipped; a zip uploaded directly.
UNZIPPED_CODE_BYTES = 262_144_000
ZIPPED_UPLOAD_BYTES = 52_428_800
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")
TRACING_PARAMETER = "Tracing"
SNAPSTART_INIT = "snap-start"


@dataclass(frozen=True)
class Finding:
    where: str  # the resource, parameter, file or function
    problem: str
    fix: str
    parameter_set: str = ""  # "name (region)" or "name", empty when it holds for every set

    def __str__(self) -> str:
        scope = f" [parameter set {self.parameter_set}]" if self.parameter_set else ""
        return f"{self.where}{scope}: {self.problem}. Fix: {self.fix}"


# --------------------------------------------------------------------------- regions


def claimed_regions(doc: Path = DEPLOYMENT_DOC) -> list[str]:
    """The AWS regions docs/deployment.md's "Regions" section claims (backticked region codes)."""
    text = doc.read_text(encoding="utf-8")
    match = re.search(r"^## Regions\n(?P<body>.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    if not match:
        return []
    return list(dict.fromkeys(re.findall(r"`([a-z]{2}(?:-gov)?-[a-z]+-\d)`", match.group("body"))))


# --------------------------------------------------------------------------- 1. artefacts


def _sam_functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def _code_dir(props: dict[str, Any], key: str = "CodeUri") -> str:
    return str(props.get(key, "")).rstrip("/")


def _source_files(directory: Path) -> dict[str, bytes]:
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    }


def _zip_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


def _unzipped_size(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


def check_artefacts(template: dict[str, Any], build: Path = BUILD) -> list[Finding]:
    findings: list[Finding] = []
    rebuild = "run `make build` (make deploy-check does it first)"
    if not (build / "manifest.json").is_file():
        return [Finding(str(build / "manifest.json"), "missing: nothing was built", rebuild)]
    layers = {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion"
    }
    layer_bytes = 0
    for logical_id, props in layers.items():
        source = ROOT / _code_dir(props, "ContentUri")
        package = source.name
        zip_path = build / f"{package}-layer.zip"
        if not zip_path.is_file():
            findings.append(Finding(logical_id, f"no built layer {zip_path.relative_to(ROOT)}", rebuild))
            continue
        built = _zip_files(zip_path)
        layer_bytes += _unzipped_size(zip_path)
        names = {name.split("/")[1] for name in built if name.startswith("python/") and name.count("/") > 1}
        for provided in RUNTIME_PROVIDED:
            if provided in names:
                findings.append(
                    Finding(
                        logical_id,
                        f"the layer ships {provided}, which the Lambda runtime provides",
                        "remove it from the layer (build_layer.RUNTIME_PROVIDED)",
                    )
                )
        for package_dir in (p for p in source.iterdir() if (p / "__init__.py").is_file()):
            for name, data in _source_files(package_dir).items():
                if built.get(f"python/{package_dir.name}/{name}") != data:
                    findings.append(
                        Finding(
                            logical_id,
                            f"python/{package_dir.name}/{name} in {zip_path.name} differs from the source",
                            rebuild,
                        )
                    )
        if zip_path.stat().st_size > ZIPPED_UPLOAD_BYTES:
            findings.append(Finding(logical_id, "layer zip above 50 MB", "make the layer smaller"))
    for logical_id, props in sorted(_sam_functions(template).items()):
        directory = ROOT / _code_dir(props)
        zip_path = build / f"{directory.name}.zip"
        if not zip_path.is_file():
            findings.append(Finding(logical_id, f"no built package {zip_path.relative_to(ROOT)}", rebuild))
            continue
        built = _zip_files(zip_path)
        sources = _source_files(directory)
        shipped = {name: data for name, data in built.items() if not name.endswith(".pyc")}
        if shipped != sources:
            stale = sorted(set(sources) ^ set(shipped) | {n for n in sources if shipped.get(n) != sources[n]})
            findings.append(
                Finding(
                    logical_id, f"{zip_path.name} does not hold {directory.name}/ as it is: {stale}", rebuild
                )
            )
        module = str(props.get("Handler", "app.lambda_handler")).rsplit(".", 1)[0].replace(".", "/")
        if f"{module}.py" not in built:
            findings.append(
                Finding(
                    logical_id,
                    f"Handler {props.get('Handler')} has no {module}.py in the package",
                    "fix Handler",
                )
            )
        if not any(name.startswith("__pycache__/") and name.endswith(".cpython-312.pyc") for name in built):
            findings.append(Finding(logical_id, "no Python 3.12 bytecode in the package", rebuild))
        total = _unzipped_size(zip_path) + layer_bytes
        if total > UNZIPPED_CODE_BYTES:
            findings.append(
                Finding(logical_id, f"function + layers unzipped = {total:,} bytes > 250 MB", "ship less")
            )
    return findings


# --------------------------------------------------------------------------- 2. parameter sets


def check_parameter_sets(
    template: dict[str, Any], sets: list[ParameterSet], regions: list[str]
) -> tuple[list[Evaluation], list[Finding]]:
    findings: list[Finding] = []
    if not sets:
        return [], [Finding("deploy/parameters/", "no parameter set", "add CloudFormation parameter files")]
    if not regions:
        findings.append(
            Finding(
                "docs/deployment.md",
                'no "## Regions" section naming the AWS regions the stack is claimed to deploy to',
                "list them there as backticked region codes",
            )
        )
        regions = ["us-east-1"]
    valid: list[ParameterSet] = []
    for parameters in sets:
        problems = validate_parameters(template, parameters)
        for problem in problems:
            findings.append(
                Finding(
                    f"deploy/parameters/{parameters.name}.json",
                    problem,
                    "correct the parameter set (CloudFormation would refuse it)",
                )
            )
        if not problems:
            valid.append(parameters)
    evaluations: list[Evaluation] = []
    for parameters in valid:
        for region in regions:
            try:
                evaluations.append(Evaluation(template, parameters.in_region(region)))
            except TemplateError as exc:
                findings.append(
                    Finding("template.yaml Conditions", str(exc), "fix the condition", parameters.name)
                )
    for name, values in sorted(condition_coverage(evaluations).items()):
        for missing in ({True, False} - values) if evaluations else ():
            findings.append(
                Finding(
                    f"Condition {name}",
                    f"is never {str(missing).lower()} in any parameter set of deploy/parameters/ in any "
                    "claimed region, so that side of it is never translated, linted, or checked for "
                    "permissions or imports",
                    f"add or change a parameter set so that {name} is {str(missing).lower()}",
                )
            )
    for name, spec in sorted((template.get("Parameters") or {}).items()):
        for value in spec.get("AllowedValues") or []:
            taken = [e for e in evaluations if str(e.values.get(name)) == str(value)]
            if evaluations and not taken:
                findings.append(
                    Finding(
                        f"parameter {name}",
                        f"the allowed value {value!r} is in no parameter set",
                        f"add or change a parameter set with {name}={value}",
                    )
                )
    return evaluations, findings


# --------------------------------------------------------------------------- 3. translation


def translate(template: dict[str, Any], parameters: ParameterSet) -> dict[str, Any]:
    from local.lint_template import _NoManagedPolicies, _placeholder_code_locations

    os.environ.setdefault("AWS_DEFAULT_REGION", parameters.region)
    from samtranslator.translator.transform import transform

    # Its Metrics object warns about "unpublished metrics" when collected: we publish none.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

    result: dict[str, Any] = transform(
        _placeholder_code_locations(template),
        dict(parameters.values),
        _NoManagedPolicies(),  # type: ignore[arg-type]
    )
    return result


# --------------------------------------------------------------------------- 4. cfn-lint


def cfn_lint_parameter_file(template: dict[str, Any], parameters: ParameterSet, target: Path) -> Path:
    """The set as cfn-lint reads it (it wants a CommaDelimitedList as a JSON list)."""
    declared = template.get("Parameters") or {}
    items = []
    for key, value in parameters.values.items():
        is_list = (declared.get(key) or {}).get("Type") == "CommaDelimitedList"
        items.append({"ParameterKey": key, "ParameterValue": value.split(",") if is_list else value})
    path = target / f"{parameters.name}.json"
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return path


def start_cfn_lint(
    translations: dict[str, tuple[dict[str, Any], list[ParameterSet]]],
    template: dict[str, Any],
    regions: list[str],
    workdir: Path,
) -> list[tuple[subprocess.Popen[str], dict[str, str]]]:
    """One cfn-lint process per distinct translation, with its parameter sets, in every region."""
    processes = []
    for index, (translated, sets) in enumerate(translations.values()):
        directory = workdir / f"lint-{index}"
        directory.mkdir()
        template_path = directory / "translated.json"
        template_path.write_text(json.dumps(translated, indent=1), encoding="utf-8")
        files = [cfn_lint_parameter_file(template, parameters, directory) for parameters in sets]
        command = [
            str(CFN_LINT),
            "--format",
            "parseable",
            str(template_path),
            "--parameter-files",
            *map(str, files),
            "--regions",
            *regions,
        ]
        process = subprocess.Popen(  # noqa: S603 - the venv's cfn-lint on our own translated template
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        names = {str(f): f"deploy/parameters/{f.name}" for f in files}
        names[str(template_path)] = "<translated template.yaml>"
        processes.append((process, names))
    return processes


def _resource_at(translated: dict[str, Any], line: int, text: str) -> str:
    """The logical id whose JSON block holds `line` of the indent=1 dump (for a readable finding)."""
    current = ""
    for number, content in enumerate(text.splitlines(), start=1):
        match = re.match(r'^  "([A-Za-z0-9]+)": \{$', content)
        if match and match.group(1) in (translated.get("Resources") or {}):
            current = match.group(1)
        if number >= line:
            break
    return current


def finish_cfn_lint(
    processes: list[tuple[subprocess.Popen[str], dict[str, str]]], timeout: float = 300
) -> list[Finding]:
    findings: list[Finding] = []
    for process, names in processes:
        out, err = process.communicate(timeout=timeout)
        if process.returncode == 0:
            continue
        template_path = next(path for path, label in names.items() if label.startswith("<"))
        text = Path(template_path).read_text(encoding="utf-8")
        translated = json.loads(text)
        for line in (out + err).strip().splitlines():
            parts = line.split(":", 6)
            if len(parts) == 7 and parts[0] in names:
                path, row, _col, _erow, _ecol, rule, message = parts
                where = names[path]
                if where.startswith("<"):
                    where = f"{_resource_at(translated, int(row), text) or 'template'} ({where} line {row})"
                findings.append(Finding(where, f"cfn-lint {rule}: {message}", "fix template.yaml or the set"))
            else:
                findings.append(Finding("cfn-lint", line, "see cfn-lint's message"))
        if not findings:
            findings.append(
                Finding("cfn-lint", f"exit {process.returncode} without a message", "run it by hand")
            )
    return findings


# --------------------------------------------------------------------------- 5. permissions


def check_permissions(
    evaluations: list[Evaluation], translations: dict[str, dict[str, Any]]
) -> list[Finding]:
    from tools.static_gates import least_privilege_findings

    by_finding: dict[str, list[str]] = {}
    for evaluation in evaluations:
        translated = translations[evaluation.parameters.name]
        resolved = Evaluation(translated, evaluation.parameters)
        for finding in least_privilege_findings(resolved.resolved(), resolved.values):
            by_finding.setdefault(finding, []).append(evaluation.parameters.label)
    findings = []
    for text, labels in by_finding.items():
        where, _, problem = text.partition(": ")
        fix = "change the role in template.yaml, or tools/static_gates.LEAST_PRIVILEGE if the code changed"
        findings.append(Finding(where, problem, fix, ", ".join(labels)))
    return findings


# --------------------------------------------------------------------------- 6. imports

CHILD = r"""
import json, socket, sys, traceback
config = json.loads(sys.argv[1])
sys.path[:0] = config["path"]
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:3] if len(args) > 1 else args)[:200])
    raise OSError("network is blocked during init (make deploy-check)")
for name in ("connect", "connect_ex", "sendto", "sendall", "send"):
    setattr(socket.socket, name, refuse)
socket.getaddrinfo = refuse
socket.create_connection = refuse
result = {"ok": False}
try:
    import importlib
    module_name, _, attribute = config["handler"].rpartition(".")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{config['handler']} is not callable")
    result["ok"] = True
except BaseException:
    result["error"] = traceback.format_exc()[-3000:]
origins = {}
for name in ("app", "teams_connect", "aws_lambda_powertools", "httpx", "boto3", "botocore", "aws_xray_sdk"):
    module = sys.modules.get(name)
    origins[name] = getattr(module, "__file__", None) if module else None
result["origins"] = origins
result["network"] = attempts
if "botocore" in sys.modules:
    result["botocore"] = sys.modules["botocore"].__version__
print("DEPLOY-CHECK " + json.dumps(result))
"""


def runtime_packages(build: Path = BUILD) -> Path:
    """The runtime's own packages (requirements-runtime.txt) in .build/runtime/<hash>/, installed once."""
    digest = hashlib.sha256(RUNTIME_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    target = build / "runtime" / digest
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    installer = (
        [str(UV), "pip", "install", "--quiet", "--python", sys.executable, "--target", str(partial)]
        if UV.exists()
        else [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(partial)]
    )
    subprocess.run(  # noqa: S603 - our venv's uv/pip with the pinned runtime requirements
        [*installer, "--no-deps", "--no-compile", "-r", str(RUNTIME_REQUIREMENTS)], check=True
    )
    shutil.rmtree(partial / "bin", ignore_errors=True)
    # The runtime's /var/runtime ships compiled: without bytecode every import here would compile
    # botocore again (-B writes nothing), and measure the compiler rather than the function.
    compileall.compile_dir(str(partial), quiet=1)
    (partial / ".complete").write_text("", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def unzip(zip_path: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


def lambda_environment(
    evaluation: Evaluation, translated: dict[str, Any], logical_id: str, *, snapstart: bool
) -> dict[str, str]:
    """What Lambda gives the function at init: the template's variables for this set, then its own."""
    props = (translated["Resources"][logical_id].get("Properties")) or {}
    variables = ((props.get("Environment") or {}).get("Variables")) or {}
    env = {name: Evaluation._scalar(evaluation.value(value)) for name, value in variables.items()}
    region = evaluation.parameters.region
    name = Evaluation._scalar(evaluation.value(props.get("FunctionName", logical_id)))
    env.update(
        {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_INITIALIZATION_TYPE": SNAPSTART_INIT if snapstart else "on-demand",
            "AWS_ACCESS_KEY_ID": "ASIADEPLOYCHECK0000",
            "AWS_SECRET_ACCESS_KEY": "deploy-check-fake-secret",  # nosec B105 - fake: the import calls nothing
            "AWS_SESSION_TOKEN": "deploy-check-fake-token",  # nosec B105 - fake: the import calls nothing
            "_HANDLER": str(props.get("Handler", "app.lambda_handler")),
        }
    )
    if not snapstart:
        env["AWS_LAMBDA_LOG_GROUP_NAME"] = f"/aws/lambda/{name}"
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = "2026/01/01/[1]0123456789abcdef"
    if (props.get("TracingConfig") or {}).get("Mode") == "Active":
        env.update(
            {
                "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
                "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
                "_AWS_XRAY_DAEMON_PORT": "2000",
                "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            }
        )
    return env


@dataclass(frozen=True)
class ImportCase:
    logical_id: str
    parameter_set: str
    tracing: str
    snapstart: bool
    handler: str
    path: tuple[str, ...]
    env: dict[str, str]


def import_cases(
    template: dict[str, Any],
    evaluations: list[Evaluation],
    translations: dict[str, dict[str, Any]],
    staged: Path,
    layer: Path,
    runtime: Path,
) -> list[ImportCase]:
    """For each function, one import per tracing mode (the first set, in its first region, with that
    mode), under SnapStart's init when that set turns SnapStart on for the function."""
    cases: list[ImportCase] = []
    resolutions: dict[int, tuple[Evaluation, dict[str, Any]]] = {}
    for index, evaluation in enumerate(evaluations):
        on_translated = Evaluation(translations[evaluation.parameters.name], evaluation.parameters)
        resolutions[index] = (on_translated, on_translated.resolved())
    for logical_id, props in sorted(_sam_functions(template).items()):
        directory = staged / Path(_code_dir(props)).name
        # Per tracing mode, the first set that deploys this function (a conditional function, such as
        # the app webhook's, exists only in the sets that turn its condition on).
        modes: dict[str, int] = {}
        for index, evaluation in enumerate(evaluations):
            if logical_id in resolutions[index][1]["Resources"]:
                modes.setdefault(str(evaluation.values.get(TRACING_PARAMETER, "PassThrough")), index)
        for tracing, index in sorted(modes.items()):
            evaluation = evaluations[index]
            on_translated, resolved = resolutions[index]
            function = resolved["Resources"][logical_id]["Properties"]
            snapstart = (function.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"
            cases.append(
                ImportCase(
                    logical_id,
                    evaluation.parameters.label,
                    tracing,
                    snapstart,
                    str(function.get("Handler", "app.lambda_handler")),
                    (str(directory), str(layer), str(runtime)),
                    lambda_environment(on_translated, resolved, logical_id, snapstart=snapstart),
                )
            )
    return cases


def run_import(case: ImportCase, python: str = sys.executable) -> list[Finding]:
    config = {"path": list(case.path), "handler": case.handler}
    where = f"{case.logical_id} (Tracing {case.tracing}{', SnapStart init' if case.snapstart else ''})"
    try:
        completed = subprocess.run(  # noqa: S603 - this Python 3.12, isolated, on our own build
            [python, "-I", "-S", "-B", "-c", CHILD, json.dumps(config)],
            capture_output=True,
            text=True,
            env=case.env,
            cwd=case.path[0],
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [
            Finding(where, "the import did not finish in 120 s", "look for work at init", case.parameter_set)
        ]
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("DEPLOY-CHECK ")), "")
    if not line:
        return [
            Finding(
                where,
                f"the import crashed (exit {completed.returncode}): {completed.stderr[-1500:]}",
                "run it by hand",
                case.parameter_set,
            )
        ]
    result = json.loads(line.removeprefix("DEPLOY-CHECK "))
    findings: list[Finding] = []
    if not result["ok"]:
        findings.append(
            Finding(
                where,
                f"importing {case.handler} the way Lambda does failed:\n{result.get('error', '')}",
                "import only what the function's package, the layer and the runtime provide",
                case.parameter_set,
            )
        )
    if result["network"]:
        findings.append(
            Finding(
                where,
                f"opened network connections at init: {result['network'][:3]}",
                "make no call at import time (clients are created, not used, at init)",
                case.parameter_set,
            )
        )
    roots = {"function": case.path[0], "layer": case.path[1], "runtime": case.path[2]}
    expected = {"app": "function", "teams_connect": "layer", "boto3": "runtime", "botocore": "runtime"}
    for module, root in expected.items():
        origin = (result.get("origins") or {}).get(module)
        if origin and not str(origin).startswith(roots[root]):
            findings.append(
                Finding(
                    where,
                    f"{module} was loaded from {origin}, not from the {root}",
                    "keep sys.path to what Lambda gives",
                    case.parameter_set,
                )
            )
    return findings


def check_imports(cases: list[ImportCase], workers: int) -> list[Finding]:
    findings: list[Finding] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(run_import, cases):
            findings += result
    return findings


# --------------------------------------------------------------------------- 7. size and S3


def packaged_size(template_path: Path = TEMPLATE_PATH) -> int:
    """template.yaml's size once `sam deploy` has replaced each local CodeUri/ContentUri by its S3 URI."""
    text = template_path.read_text(encoding="utf-8")
    uri = "s3://aws-sam-cli-managed-default-samclisourcebucket-abcdefghijkl/teams-connect/" + "0" * 32
    return len(re.sub(r"(?m)^(\s+(?:CodeUri|ContentUri):\s*)\S+$", lambda m: m.group(1) + uri, text).encode())


def deploys_through_s3(samconfig: Path = SAMCONFIG, docs: Iterable[Path] = DEPLOY_DOCS) -> list[Finding]:
    findings: list[Finding] = []
    try:
        config = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [Finding(samconfig.name, f"cannot be read: {exc}", "restore samconfig.toml")]
    deploy = (((config.get("default") or {}).get("deploy") or {}).get("parameters")) or {}
    if not (deploy.get("resolve_s3") is True or deploy.get("s3_bucket")):
        findings.append(
            Finding(
                f"{samconfig.name} [default.deploy.parameters]",
                "neither resolve_s3 = true nor s3_bucket: `sam deploy` would send the template inline, "
                f"which CloudFormation refuses above {INLINE_TEMPLATE_BYTES:,} bytes",
                "set resolve_s3 = true (SAM's managed bucket) or s3_bucket",
            )
        )
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"{doc.relative_to(ROOT)}:{number}"
            if re.search(r"\bsam deploy\b", line) and "--no-resolve-s3" in line:
                findings.append(Finding(where, "`sam deploy --no-resolve-s3`", "deploy through S3"))
            if re.search(
                r"\baws cloudformation (deploy|create-stack|update-stack)\b", line
            ) and not re.search(r"--s3-bucket|--template-url", line):
                findings.append(
                    Finding(
                        where,
                        "a CloudFormation deploy with the template inline",
                        "give --s3-bucket (deploy) or --template-url (create/update-stack)",
                    )
                )
    return findings


def check_sizes(
    translations: dict[str, dict[str, Any]], template_path: Path = TEMPLATE_PATH
) -> tuple[list[str], list[Finding]]:
    report: list[str] = []
    findings: list[Finding] = []
    raw = template_path.stat().st_size
    packaged = packaged_size(template_path)
    report.append(
        f"template.yaml {raw:,} bytes, about {packaged:,} once packaged "
        f"(inline limit {INLINE_TEMPLATE_BYTES:,}; deployed through S3: limit {S3_TEMPLATE_BYTES:,})"
    )
    if packaged > S3_TEMPLATE_BYTES:
        findings.append(
            Finding("template.yaml", f"{packaged:,} bytes packaged", "split the stack (nested stacks)")
        )
    for name, translated in translations.items():
        size = len(json.dumps(translated, separators=(",", ":")).encode())
        counts = {
            "resources": (len(translated.get("Resources") or {}), MAX_RESOURCES),
            "parameters": (len(translated.get("Parameters") or {}), MAX_PARAMETERS),
            "outputs": (len(translated.get("Outputs") or {}), MAX_OUTPUTS),
        }
        if size > S3_TEMPLATE_BYTES:
            findings.append(Finding("translated template", f"{size:,} bytes", "split the stack", name))
        for what, (count, limit) in counts.items():
            if count > limit:
                findings.append(
                    Finding(
                        "translated template",
                        f"{count} {what} > CloudFormation's {limit}",
                        "split the stack",
                        name,
                    )
                )
    largest = max(translations.items(), key=lambda item: len(item[1].get("Resources") or {}), default=None)
    if largest:
        name, translated = largest
        report.append(
            f"translated: up to {len(translated.get('Resources') or {})} resources (limit {MAX_RESOURCES}), "
            f"{len(json.dumps(translated, separators=(',', ':'))):,} bytes ({name})"
        )
    findings += deploys_through_s3()
    return report, findings


# --------------------------------------------------------------------------- running it


def run(workers: int = 2, build: Path = BUILD) -> tuple[list[str], list[Finding]]:
    started = time.monotonic()
    report: list[str] = []
    findings: list[Finding] = []
    template = load_template()
    regions = claimed_regions()
    sets = parameter_sets()

    artefacts = check_artefacts(template, build)
    report.append(f"artefacts of make build: {'ok' if not artefacts else f'{len(artefacts)} finding(s)'}")
    findings += artefacts

    evaluations, set_findings = check_parameter_sets(template, sets, regions)
    findings += set_findings
    report.append(
        f"parameter sets: {len(sets)} ({', '.join(s.name for s in sets)}) x regions {', '.join(regions)}; "
        f"conditions switched both ways: {'yes' if not set_findings else 'NO'}"
    )

    translations: dict[str, dict[str, Any]] = {}
    distinct: dict[str, tuple[dict[str, Any], list[ParameterSet]]] = {}
    for parameters in (s for s in sets if any(e.parameters.name == s.name for e in evaluations)):
        try:
            translated = translate(template, parameters)
        except Exception as exc:  # the translator's message is the useful part
            findings.append(
                Finding(
                    "template.yaml", f"aws-sam-translator failed: {exc}", "fix the template", parameters.name
                )
            )
            continue
        translations[parameters.name] = translated
        key = hashlib.sha256(json.dumps(translated, sort_keys=True).encode()).hexdigest()
        distinct.setdefault(key, (translated, []))[1].append(parameters)
    evaluations = [e for e in evaluations if e.parameters.name in translations]
    report.append(f"aws-sam-translator: {len(translations)} translation(s), {len(distinct)} distinct")

    with tempfile.TemporaryDirectory(prefix="deploy-check-") as tmp:
        lint = start_cfn_lint(distinct, template, regions, Path(tmp)) if distinct else []

        permissions = check_permissions(evaluations, translations)
        report.append(
            f"permissions per parameter set and region (KMS included): "
            f"{'ok' if not permissions else f'{len(permissions)} finding(s)'}"
        )
        findings += permissions

        size_report, size_findings = check_sizes(translations)
        report += size_report
        findings += size_findings

        if not artefacts and evaluations:
            staged = Path(tmp) / "task"
            for props in _sam_functions(template).values():
                name = Path(_code_dir(props)).name
                unzip(build / f"{name}.zip", staged / name)
            layer = unzip(build / "core-layer.zip", Path(tmp) / "opt") / "python"
            runtime = runtime_packages(build)
            cases = import_cases(template, evaluations, translations, staged, layer, runtime)
            imports = check_imports(cases, workers)
            report.append(
                f"imports as Lambda does ({len(cases)}: every function x tracing mode, network blocked): "
                f"{'ok' if not imports else f'{len(imports)} finding(s)'}"
            )
            findings += imports
        else:
            report.append("imports: skipped (no valid build or parameter set)")

        lint_findings = finish_cfn_lint(lint)
        report.append(
            f"cfn-lint ({len(lint)} run(s), {len(translations)} set(s) x {len(regions)} region(s)): "
            f"{'clean' if not lint_findings else f'{len(lint_findings)} finding(s)'}"
        )
        findings += lint_findings
    report.append(f"deploy-check took {time.monotonic() - started:.1f} s")
    return report, findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Offline rehearsal of sam build + sam deploy.")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = parser.parse_args(argv)
    report, findings = run(workers=args.workers)
    print("\n".join(report))
    if findings:
        print(f"\ndeploy-check FAILED ({len(findings)} finding(s)):")
        print("\n".join(f"  - {finding}" for finding in findings))
        return 1
    print("deploy-check: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
