"""The bandit and checkov gates of tools/static_gates.py: what counts as a finding, what as an explained
suppression or skip. bandit itself runs on a small file here; checkov's reports are built by hand (the
real checkov run is the `make static` gate itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tools import static_gates
from tools.static_gates import (
    CHECKOV_SKIPS,
    REQUIRED_CHECKOV_PASSES,
    judge_bandit,
    judge_checkov,
    parse_suppression,
    unexplained_nosec,
)

# --------------------------------------------------------------------------- suppressions


@pytest.mark.parametrize(
    ("comment", "ids", "reason"),
    [
        ("# nosec B603 - argv of our own tool", {"B603"}, "argv of our own tool"),
        ("# nosec B105, B106: local fixtures only", {"B105", "B106"}, "local fixtures only"),
        ("# noqa: S506 - a SafeLoader subclass", {"B506"}, "a SafeLoader subclass"),
        ("# noqa: S603, S607 -- fixed argv", {"B603", "B607"}, "fixed argv"),
        ("# nosec", set(), ""),
        ("# nosec B603", {"B603"}, ""),
        ("# noqa: S603", {"B603"}, ""),
        ("# nosec B603 -", {"B603"}, ""),
    ],
)
def test_parse_suppression(comment: str, ids: set[str], reason: str) -> None:
    suppression = parse_suppression(comment)
    assert suppression is not None
    assert set(suppression.test_ids) == ids
    assert suppression.reason == reason


def test_non_bandit_noqa_is_no_suppression() -> None:
    assert parse_suppression("# noqa: E501 - long URL") is None
    assert parse_suppression("# a comment") is None


def test_unexplained_nosec_comments_are_findings(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        '"""Docs may say # nosec freely."""\n'
        "import subprocess  # nosec\n"
        "x = 1  # nosec B101\n"
        "y = 2  # nosec B101 - an invariant the type checker cannot see\n",
        encoding="utf-8",
    )
    assert unexplained_nosec(source, "mod.py") == [
        "mod.py:2: `# nosec` must name its test ids and give a reason",
        "mod.py:3: `# nosec` must name its test ids and give a reason",
    ]


def _result(filename: str, test_id: str, line: int) -> dict[str, Any]:
    return {
        "filename": filename,
        "test_id": test_id,
        "line_number": line,
        "line_range": [line],
        "issue_severity": "MEDIUM",
        "issue_text": "something risky",
    }


def test_judge_bandit(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "a = 1  # nosec B506 - a SafeLoader subclass\n"
        "b = 2  # nosec B506\n"
        "c = 3  # noqa: S506 - a SafeLoader subclass\n"
        "d = 4  # nosec B999 - another test\n"
        "e = 5\n",
        encoding="utf-8",
    )
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "b.py").write_text("pw = 'x'\n", encoding="utf-8")
    results = [_result(str(tmp_path / "pkg" / "a.py"), "B506", n) for n in range(1, 6)]
    results += [
        _result(str(tmp_path / "pkg" / "a.py"), "B101", 5),  # skipped everywhere (BANDIT_SKIPS)
        _result(str(tmp_path / "local" / "b.py"), "B105", 1),  # allowed under local/
        _result(str(tmp_path / "pkg" / "a.py"), "B105", 5),  # not allowed outside local/
    ]
    findings = judge_bandit(results, root=tmp_path)
    assert findings == [
        "pkg/a.py:2: B506 (MEDIUM) something risky",
        "pkg/a.py:4: B506 (MEDIUM) something risky",
        "pkg/a.py:5: B506 (MEDIUM) something risky",
        "pkg/a.py:5: B105 (MEDIUM) something risky",
    ]


def test_every_skip_and_allowance_has_a_reason() -> None:
    assert all(len(reason) > 20 for reason in static_gates.BANDIT_SKIPS.values())
    assert all(len(reason) > 20 for _, _, reason in static_gates.BANDIT_PATH_ALLOWANCES)
    assert all(len(skip.reason) > 20 and skip.resources for skip in CHECKOV_SKIPS.values())


def test_bandit_really_reports_through_the_gate(tmp_path: Path) -> None:
    """The real bandit with the gate's options finds an issue that a reasoned `# nosec` then accepts."""
    target = tmp_path / "tools"
    target.mkdir()
    risky = target / "risky.py"
    risky.write_text("import yaml\n\n\ndef load(s):\n    return yaml.load(s)\n", encoding="utf-8")
    command = static_gates.bandit_command(tmp_path)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our argv
    results = json.loads(completed.stdout)["results"]
    assert [r["test_id"] for r in results] == ["B506"]
    assert judge_bandit(results, root=tmp_path) == [
        "tools/risky.py:5: B506 (MEDIUM) Use of unsafe yaml load. Allows instantiation of arbitrary objects. "
        "Consider yaml.safe_load()."
    ]
    risky.write_text(
        "import yaml\n\n\ndef load(s):\n"
        "    return yaml.load(s)  # nosec B506 - test fixture, trusted input\n",
        encoding="utf-8",
    )
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - our argv
    results = json.loads(completed.stdout)["results"]
    assert [r["test_id"] for r in results] == ["B506"]  # --ignore-nosec: bandit still reports it...
    assert judge_bandit(results, root=tmp_path) == []  # ...and the gate accepts the reasoned suppression


# --------------------------------------------------------------------------- checkov


def _passes() -> list[dict[str, str]]:
    return [
        {"check_id": c, "resource": r} for c, resources in REQUIRED_CHECKOV_PASSES.items() for r in resources
    ]


def _skipped_failures() -> list[dict[str, str]]:
    failures = []
    for check_id, skip in CHECKOV_SKIPS.items():
        resource = skip.resources[0].replace("*", "SomeFunction")
        failures.append({"check_id": check_id, "resource": resource, "check_name": "x"})
    return failures


def report(failed: list[dict[str, str]], passed: list[dict[str, str]]) -> dict[str, Any]:
    return {"results": {"failed_checks": failed, "passed_checks": passed, "parsing_errors": []}}


def test_checkov_clean_when_only_skipped_checks_fail() -> None:
    assert judge_checkov(report(_skipped_failures(), _passes())) == []


def test_checkov_unskipped_failure_is_a_finding() -> None:
    failed = [
        *_skipped_failures(),
        {"check_id": "CKV_AWS_28", "resource": "AWS::DynamoDB::Table.X", "check_name": "PITR"},
    ]
    assert judge_checkov(report(failed, _passes())) == ["checkov CKV_AWS_28 AWS::DynamoDB::Table.X: PITR"]


def test_checkov_skip_is_scoped_to_its_resources() -> None:
    failed = [
        *_skipped_failures(),
        {"check_id": "CKV_AWS_33", "resource": "AWS::KMS::Key.OtherKey", "check_name": "*"},
    ]
    assert judge_checkov(report(failed, _passes())) == ["checkov CKV_AWS_33 AWS::KMS::Key.OtherKey: *"]


def test_checkov_stale_skip_is_a_finding() -> None:
    failed = [f for f in _skipped_failures() if f["check_id"] != "CKV_AWS_95"]
    findings = judge_checkov(report(failed, _passes()))
    assert len(findings) == 1
    assert findings[0].startswith("checkov skip CKV_AWS_95 matches no failure any more")


def test_checkov_required_check_must_have_passed() -> None:
    passed = [p for p in _passes() if p["resource"] != "AWS::DynamoDB::Table.GrantsTable"]
    assert judge_checkov(report(_skipped_failures(), passed)) == [
        "checkov CKV_AWS_28 must pass on AWS::DynamoDB::Table.GrantsTable (it did not run or failed)",
        "checkov CKV_AWS_119 must pass on AWS::DynamoDB::Table.GrantsTable (it did not run or failed)",
    ]


def test_gate_exits_non_zero_with_the_findings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        static_gates, "run", lambda path: (["template policy: 1 finding(s)"], ["policy: boom"])
    )
    assert static_gates.main([]) == 1
    out = capsys.readouterr().out
    assert "static gates FAILED (1 finding(s)):" in out
    assert "  - policy: boom" in out
    monkeypatch.setattr(static_gates, "run", lambda path: (["all clean"], []))
    assert static_gates.main([]) == 0


def test_tools_requirements_pin_checkov_exactly() -> None:
    lines = [
        line.strip()
        for line in static_gates.TOOLS_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "checkov==3.3.30" in lines
    assert all("==" in line for line in lines)
    assert sys.version_info[:2] == (3, 12)
