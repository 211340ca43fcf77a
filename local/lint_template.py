"""Lint template.yaml offline: `python -m local.lint_template` (the `make lint-template` target).

cfn-lint alone does not expand the SAM transform and misses bad `!Ref`s in environment variables and
policies and invalid runtimes (docs: shared/reference/tooling.md §2). So this:

1. runs cfn-lint on template.yaml as written;
2. translates the template with aws-sam-translator (offline; CodeUri/ContentUri replaced by an
   `s3://placeholder/...` location in the copy, since the translator refuses local paths) and runs
   cfn-lint on the plain CloudFormation output;
3. checks the project's own invariants: the routes in the HttpApi DefinitionBody are exactly the
   functions' HttpApi events, each integration URI names the function of that route, and every
   function shares one environment (Globals only).

Exit status 0 when everything is clean; the problems are printed otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from local.template import TEMPLATE_PATH, Template, http_routes, load_template

CFN_LINT = Path(sys.executable).parent / "cfn-lint"


class _NoManagedPolicies:
    """The translator asks IAM for managed policy names only for policies given by name; we use none."""

    def load(self) -> dict[str, str]:
        return {}


def _placeholder_code_locations(template: Template) -> Template:
    copied = copy.deepcopy(template)
    for logical_id, resource in (copied.get("Resources") or {}).items():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://placeholder/{logical_id}.zip"
    return copied


def translate(template: Template) -> dict[str, Any]:
    """The SAM template as plain CloudFormation (offline, no credentials)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform  # slow import, only when used

    translated: dict[str, Any] = transform(
        _placeholder_code_locations(template),
        {},
        _NoManagedPolicies(),  # type: ignore[arg-type]
    )
    return translated


def run_cfn_lint(*paths: Path) -> tuple[int, str]:
    completed = subprocess.run(  # noqa: S603 - the venv's own cfn-lint on our own files
        [str(CFN_LINT), "--format", "parseable", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.returncode, (completed.stdout + completed.stderr).strip()


_INTEGRATION_FUNCTION = re.compile(
    r":function:\$\{AWS::StackName\}-([a-z0-9-]+)(?::([A-Za-z0-9_-]+))?/invocations$"
)


def check_invariants(template: Template) -> list[str]:
    problems: list[str] = []
    resources = template.get("Resources") or {}
    routes = {route.route_key: route for route in http_routes(template)}

    api = resources.get("HttpApi", {}).get("Properties", {})
    body_routes: dict[str, str] = {}
    # With AutoPublishAlias, SAM grants API Gateway the invoke permission on the alias only: the
    # integrations must name it (and SnapStart runs only behind a published version).
    alias = ((template.get("Globals") or {}).get("Function") or {}).get("AutoPublishAlias")
    for path, methods in ((api.get("DefinitionBody") or {}).get("paths") or {}).items():
        for method, operation in methods.items():
            uri = (operation.get("x-amazon-apigateway-integration") or {}).get("uri", {})
            text = uri.get("Fn::Sub", "") if isinstance(uri, dict) else str(uri)
            match = _INTEGRATION_FUNCTION.search(text)
            body_routes[f"{method.upper()} {path}"] = match.group(1) if match else ""
            if match and match.group(2) != alias:
                problems.append(
                    f"{method.upper()} {path}: the integration must invoke the alias {alias!r}, "
                    f"not {match.group(2)!r}"
                )
    if set(body_routes) != set(routes):
        problems.append(
            f"HttpApi DefinitionBody routes {sorted(body_routes)} != function events {sorted(routes)}"
        )
    for key, suffix in body_routes.items():
        route = routes.get(key)
        if route is None:
            continue
        name = resources[route.function_logical_id]["Properties"].get("FunctionName")
        if not suffix:
            problems.append(f"{key}: the integration uri must name the function ${{AWS::StackName}}-<name>")
            continue
        expected = {"Fn::Sub": "${AWS::StackName}-" + suffix}
        if name != expected:
            problems.append(f"{key}: integration calls '<stack>-{suffix}' but the function's name is {name}")

    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Serverless::Function" and "Environment" in resource.get(
            "Properties", {}
        ):
            problems.append(f"{logical_id}: environment must come from Globals only (one env for all)")
    return problems


def lint(path: Path = TEMPLATE_PATH) -> tuple[bool, list[str]]:
    """(clean?, report lines) for one SAM template."""
    report = [f"template: {path}"]
    template = load_template(path)
    try:
        translated = translate(template)
    except Exception as exc:  # the translator's errors carry the useful message
        return False, [*report, f"aws-sam-translator: FAILED: {exc}"]
    report.append("aws-sam-translator: translated")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "translated.json"
        out.write_text(json.dumps(translated, indent=1), encoding="utf-8")
        # One cfn-lint process for both files (its start-up dominates the run time).
        code, output = run_cfn_lint(path, out)
        output = output.replace(str(out), "<translated>")
    report.append(
        f"cfn-lint (template.yaml as written + the translated template): {'clean' if code == 0 else 'FAILED'}"
    )
    report.extend(f"  {line}" for line in output.splitlines())
    problems = check_invariants(template)
    report.append(f"project invariants: {'clean' if not problems else 'FAILED'}")
    report.extend(f"  {problem}" for problem in problems)
    return code == 0 and not problems, report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ok, report = lint(Path(args[0]) if args else TEMPLATE_PATH)
    print("\n".join(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
