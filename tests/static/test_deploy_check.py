"""tools/deploy_check.py (`make deploy-check`): each part passes on the project and fails, naming the
resource, the parameter set and the fix, on a deliberately broken copy. The whole rehearsal runs in
`make test` itself (make deploy-check), so it is not repeated here."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from local.template import TEMPLATE_PATH, load_template
from tools import deploy_check, static_gates
from tools.cfn import Evaluation, ParameterSet, parameter_sets, validate_parameters
from tools.deploy_check import (
    Finding,
    ImportCase,
    check_artefacts,
    check_parameter_sets,
    check_permissions,
    claimed_regions,
    deploys_through_s3,
    packaged_size,
    run_import,
    translate,
)

Template = dict[str, Any]
KMS_SET = "v3-eu-everything-on"


@pytest.fixture(scope="module")
def sam() -> Template:
    return load_template()


@pytest.fixture(scope="module")
def sets() -> list[ParameterSet]:
    return parameter_sets()


def _texts(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings]


# --------------------------------------------------------------------------- regions and parameter sets


def test_the_docs_claim_regions_and_every_set_is_checked_in_each(
    sam: Template, sets: list[ParameterSet]
) -> None:
    regions = claimed_regions()
    assert {"us-east-1", "eu-west-1"} <= set(regions)
    evaluations, findings = check_parameter_sets(sam, sets, regions)
    assert findings == []
    assert len(evaluations) == len(sets) * len(regions)


def test_every_condition_is_switched_both_ways_by_the_sets(sam: Template, sets: list[ParameterSet]) -> None:
    for name in sam["Conditions"]:
        seen = {Evaluation(sam, s).condition(name) for s in sets}
        assert seen == {True, False}, name


def test_a_new_condition_that_no_set_switches_fails(sam: Template, sets: list[ParameterSet]) -> None:
    # What a new optional parameter looks like (e.g. a second webhook URL): until a set gives it a
    # value, its condition is only ever false, and nothing behind it is linted or checked.
    template = copy.deepcopy(sam)
    template["Parameters"]["AuditWebhookUrl"] = {"Type": "String", "Default": ""}
    unset = {"Fn::Equals": [{"Ref": "AuditWebhookUrl"}, ""]}
    template["Conditions"]["HasAuditWebhookUrl"] = {"Fn::Not": [unset]}
    _, findings = check_parameter_sets(template, sets, ["us-east-1"])
    assert [str(f) for f in findings] == [
        "Condition HasAuditWebhookUrl: is never true in any parameter set of deploy/parameters/ in any "
        "claimed region, so that side of it is never translated, linted, or checked for permissions or "
        "imports. Fix: add or change a parameter set so that HasAuditWebhookUrl is true"
    ]


def test_an_allowed_value_in_no_set_fails(sam: Template, sets: list[ParameterSet]) -> None:
    template = copy.deepcopy(sam)
    template["Parameters"]["NylasRegion"]["AllowedValues"].append("ap")
    _, findings = check_parameter_sets(template, sets, ["us-east-1"])
    assert any(
        "parameter NylasRegion: the allowed value 'ap' is in no parameter set" in t for t in _texts(findings)
    )


def test_a_set_cloudformation_would_refuse_fails(sam: Template) -> None:
    bad = ParameterSet(
        "bad",
        {
            "NylasSecretArn": "not-an-arn",
            "AzureSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf",
            "ApiKeysSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:b-AbCdEf",
            "AllowedReturnUrls": "https://app.example.com/done",
            "NylasApi": "v4",
            "SessionTtlSeconds": "5",
            "Unknown": "x",
        },
    )
    problems = validate_parameters(sam, bad)
    assert any(p.startswith("parameter NylasSecretArn='not-an-arn' does not match") for p in problems)
    assert any(p.startswith("parameter NylasApi='v4' is not one of") for p in problems)
    assert "parameter SessionTtlSeconds=5 is below MinValue 60" in problems
    assert "parameter Unknown is not a parameter of template.yaml (remove it from the set)" in problems
    _, findings = check_parameter_sets(sam, [bad], ["us-east-1"])
    assert any(f.where == "deploy/parameters/bad.json" for f in findings)


def test_conditions_evaluate_as_cloudformation_does(sam: Template, sets: list[ParameterSet]) -> None:
    by_name = {s.name: s for s in sets}
    on = Evaluation(sam, by_name[KMS_SET])
    assert on.conditions["HasSecretsKmsKey"]
    assert on.conditions["TracingActive"]
    assert on.conditions["SnapStartOn"]
    off = Evaluation(sam, by_name["v3-us-defaults"])
    assert not any(off.conditions[name] for name in ("HasSecretsKmsKey", "TracingActive", "HasPublicBaseUrl"))
    assert off.conditions["HasReservedConcurrency"]  # Number 25 vs the literal 0: compared as strings
    reserved0 = Evaluation(sam, by_name["beta-us-kms-reserved0"])
    assert not reserved0.conditions["HasReservedConcurrency"]
    sweeper = reserved0.resolved()["Resources"]["RevokeSweeperFunction"]["Properties"]
    assert "ReservedConcurrentExecutions" not in sweeper  # the !If's AWS::NoValue branch is gone


# --------------------------------------------------------------------------- permissions, KMS included


def _without_sweeper_secrets_key(sam: Template) -> Template:
    template = copy.deepcopy(sam)
    statements = template["Resources"]["RevokeSweeperFunction"]["Properties"]["Policies"][0]["Statement"]
    statements[:] = [s for s in statements if not (isinstance(s, dict) and "Fn::If" in s)]
    return template


def test_the_revoke_sweeper_must_decrypt_the_nylas_secret_with_the_customer_key(
    sam: Template, sets: list[ParameterSet]
) -> None:
    # Security review 3, G1: the sweeper reads the Nylas secret; with SecretsKmsKeyArn set it cannot
    # without kms:Decrypt, and the revocations it exists for never happen.
    broken = _without_sweeper_secrets_key(sam)
    evaluations, _ = check_parameter_sets(broken, sets, ["us-east-1"])
    translations = {s.name: translate(broken, s) for s in sets}
    findings = check_permissions(evaluations, translations)
    assert len(findings) == 1, _texts(findings)
    (finding,) = findings
    assert finding.where == "RevokeSweeperFunction"
    assert finding.problem.startswith(
        "lacks kms:Decrypt on SecretsKmsKeyArn, which it needs to use the secret(s)"
    )
    assert "NylasSecretArn" in finding.problem
    assert KMS_SET in finding.parameter_set
    assert "v3-us-defaults" not in finding.parameter_set
    assert "SecretsKey" in finding.fix or "SecretsKey" in finding.problem
    # make static's gate: the same model, the same finding, naming the sets
    gate = static_gates.policy_least_privilege(translations[KMS_SET])
    assert any(
        f.startswith("RevokeSweeperFunction: lacks kms:Decrypt on SecretsKmsKeyArn") and KMS_SET in f
        for f in gate
    )


def test_the_real_roles_hold_in_every_set_and_region(sam: Template, sets: list[ParameterSet]) -> None:
    evaluations, _ = check_parameter_sets(sam, sets, claimed_regions())
    translations = {s.name: translate(sam, s) for s in sets}
    assert check_permissions(evaluations, translations) == []


def _translated_with(sam: Template, function: str, statement: dict[str, Any]) -> Template:
    template = copy.deepcopy(sam)
    template["Resources"][function]["Properties"]["Policies"][0]["Statement"].append(statement)
    return translate(template, ParameterSet("x", {}))


def _gate(translated: Template, set_name: str = KMS_SET) -> list[str]:
    by_name = {s.name: s for s in parameter_sets()}
    evaluation = Evaluation(translated, by_name[set_name])
    return static_gates.least_privilege_findings(evaluation.resolved(), evaluation.values)


def test_a_kms_grant_no_secret_or_table_needs_fails(sam: Template) -> None:
    statement = {
        "Effect": "Allow",
        "Action": ["kms:Encrypt"],
        "Resource": {"Ref": "SecretsKmsKeyArn"},
        "Condition": {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
        },
    }
    findings = _gate(_translated_with(sam, "GetGrantFunction", statement))
    assert findings == [
        "GetGrantFunction: grants kms:Encrypt on SecretsKmsKeyArn, which no secret or table it uses needs"
    ]


def test_a_secrets_key_grant_without_via_service_fails(sam: Template) -> None:
    template = copy.deepcopy(sam)
    for statement in template["Resources"]["GetGrantFunction"]["Properties"]["Policies"][0]["Statement"]:
        if isinstance(statement, dict) and "Fn::If" in statement:
            statement["Fn::If"][1].pop("Condition")
    findings = _gate(translate(template, ParameterSet("x", {})))
    assert findings == [
        "GetGrantFunction: kms:Decrypt on SecretsKmsKeyArn must be restricted to Secrets Manager (Condition "
        "StringEquals kms:ViaService secretsmanager.${AWS::Region}.amazonaws.com)"
    ]


def test_a_table_key_write_grant_for_a_reader_fails(sam: Template) -> None:
    statement = {
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey"],
        "Resource": {"Fn::GetAtt": "DataKey.Arn"},
    }
    findings = _gate(_translated_with(sam, "GetGrantFunction", statement), "v3-us-defaults")
    assert findings == [
        "GetGrantFunction: grants kms:GenerateDataKey on DataKey, which no secret or table it uses needs"
    ]


# --------------------------------------------------------------------------- size and S3


def test_the_template_is_deployed_through_s3() -> None:
    assert deploys_through_s3() == []
    assert packaged_size() > TEMPLATE_PATH.stat().st_size


def test_an_inline_deploy_fails(tmp_path: Path) -> None:
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text('version = 0.1\n[default.deploy.parameters]\ncapabilities = "CAPABILITY_IAM"\n')
    doc = deploy_check.ROOT / "README.md"
    findings = deploys_through_s3(samconfig, [doc])
    assert [f.where for f in findings] == ["samconfig.toml [default.deploy.parameters]"]
    assert "resolve_s3" in findings[0].fix
    inline = deploy_check.ROOT / "docs" / "_deploy_check_probe.md"
    inline.write_text("aws cloudformation deploy --template-file packaged.yaml --stack-name x\n")
    try:
        findings = deploys_through_s3(deploy_check.SAMCONFIG, [inline])
    finally:
        inline.unlink()
    assert [f.where for f in findings] == ["docs/_deploy_check_probe.md:1"]


# --------------------------------------------------------------------------- artefacts


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_a_stale_function_package_fails(tmp_path: Path) -> None:
    template = {
        "Resources": {
            "GetGrantFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "functions/get_grant/", "Handler": "app.lambda_handler"},
            }
        }
    }
    (tmp_path / "manifest.json").write_text("{}")
    source = (deploy_check.ROOT / "functions" / "get_grant" / "app.py").read_bytes()
    requirements = (deploy_check.ROOT / "functions" / "get_grant" / "requirements.txt").read_bytes()
    pyc = {"__pycache__/app.cpython-312.pyc": b"\0"}
    _zip(tmp_path / "get_grant.zip", {"app.py": source, "requirements.txt": requirements, **pyc})
    assert check_artefacts(template, tmp_path) == []
    _zip(
        tmp_path / "get_grant.zip",
        {"app.py": source + b"\n# changed\n", "requirements.txt": requirements, **pyc},
    )
    (finding,) = check_artefacts(template, tmp_path)
    assert finding.where == "GetGrantFunction"
    assert "app.py" in finding.problem
    assert "make build" in finding.fix


# --------------------------------------------------------------------------- importing as Lambda does


def _case(tmp_path: Path, source: str) -> ImportCase:
    task = tmp_path / "task"
    task.mkdir()
    (task / "app.py").write_text(source)
    (tmp_path / "opt").mkdir()
    (tmp_path / "runtime").mkdir()
    return ImportCase(
        "ProbeFunction",
        "probe (us-east-1)",
        "PassThrough",
        False,
        "app.lambda_handler",
        (str(task), str(tmp_path / "opt"), str(tmp_path / "runtime")),
        {"PATH": "/usr/bin:/bin"},
    )


def test_a_function_that_imports_cleanly_passes(tmp_path: Path) -> None:
    assert (
        run_import(_case(tmp_path, "import json\n\ndef lambda_handler(event, context):\n    return {}\n"))
        == []
    )


def test_a_function_that_calls_out_at_init_fails(tmp_path: Path) -> None:
    source = (
        "import socket\ntry:\n    socket.create_connection(('example.com', 443), timeout=1)\n"
        "except OSError:\n    pass\n\ndef lambda_handler(event, context):\n    return {}\n"
    )
    (finding,) = run_import(_case(tmp_path, source))
    assert finding.where == "ProbeFunction (Tracing PassThrough)"
    assert finding.parameter_set == "probe (us-east-1)"
    assert "opened network connections at init" in finding.problem


def test_a_function_that_needs_what_lambda_does_not_have_fails(tmp_path: Path) -> None:
    # The dev venv has moto; Lambda's sys.path does not: the import must not find it.
    assert importlib.util.find_spec("moto") is not None
    (finding,) = run_import(
        _case(tmp_path, "import moto\n\ndef lambda_handler(event, context):\n    return {}\n")
    )
    assert "ModuleNotFoundError: No module named 'moto'" in finding.problem


def test_the_runtime_pins_are_the_python312_runtimes() -> None:
    pins = dict(
        line.split("==")
        for line in deploy_check.RUNTIME_REQUIREMENTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["boto3"] == pins["botocore"]
    assert {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3"} <= set(pins)
    dev = (deploy_check.ROOT / "requirements-dev.txt").read_text()
    assert f"boto3=={pins['boto3']}" not in dev  # a separate target dir, never the dev venv's


# --------------------------------------------------------------------------- cfn-lint with the sets


def test_cfn_lint_findings_name_the_resource_and_the_set(
    sam: Template, sets: list[ParameterSet], tmp_path: Path
) -> None:
    template = copy.deepcopy(sam)
    template["Resources"]["GetGrantFunction"]["Properties"]["Timeout"] = 1000  # Lambda's maximum is 900
    one = [s for s in sets if s.name == "v3-us-defaults"]
    translated = translate(template, one[0])
    processes = deploy_check.start_cfn_lint({"k": (translated, one)}, template, ["us-east-1"], tmp_path)
    findings = deploy_check.finish_cfn_lint(processes)
    assert findings, "cfn-lint must refuse a 1000 s timeout"
    assert any(f.where.startswith("GetGrantFunction (") and "1000" in f.problem for f in findings), _texts(
        findings
    )


def test_main_exits_1_and_lists_the_findings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finding = Finding("RevokeSweeperFunction", "lacks kms:Decrypt", "add SecretsKey", "v3-eu (us-east-1)")
    monkeypatch.setattr(deploy_check, "run", lambda workers: (["report"], [finding]))
    assert deploy_check.main([]) == 1
    out = capsys.readouterr().out
    assert (
        "RevokeSweeperFunction [parameter set v3-eu (us-east-1)]: lacks kms:Decrypt. Fix: add SecretsKey"
        in out
    )
    monkeypatch.setattr(deploy_check, "run", lambda workers: (["report"], []))
    assert deploy_check.main([]) == 0


def test_the_parameter_sets_are_cloudformation_cli_files() -> None:
    for path in sorted((deploy_check.ROOT / "deploy" / "parameters").glob("*.json")):
        data = json.loads(path.read_text())
        assert all(set(item) == {"ParameterKey", "ParameterValue"} for item in data), path.name
        assert all(isinstance(item["ParameterValue"], str) for item in data), path.name


def test_make_test_runs_the_rehearsal() -> None:
    makefile = (deploy_check.ROOT / "Makefile").read_text()
    test_line = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "deploy-check" in test_line.split()
    completed = subprocess.run(  # noqa: S603 - make's dry run of our own Makefile
        [shutil.which("make") or "/usr/bin/make", "-n", "deploy-check"],
        cwd=deploy_check.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "tools.package" in completed.stdout
    assert "tools.deploy_check" in completed.stdout
