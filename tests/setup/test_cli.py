"""`python -m tools.nylas_setup`: human output, exit codes, no secrets on stdout/stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tools.nylas_setup import main

from .fakes import (
    AZURE_CLIENT_SECRET,
    CALLBACK,
    NYLAS_API_KEY,
    TENANT_GUID,
    FakeBeta,
    FakeV3,
    assert_no_secret,
)

ROOT = Path(__file__).resolve().parents[2]


def argv(secrets: dict[str, Any], *extra: str, flavour: str = "v3", tenant: str = "common") -> list[str]:
    return [
        "--flavour",
        flavour,
        "--region",
        "us",
        "--tenant",
        tenant,
        "--callback-url",
        CALLBACK,
        "--nylas-secret-arn",
        secrets["nylas"],
        "--azure-secret-arn",
        secrets["azure"],
        *extra,
    ]


def outputs(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    out, err = capsys.readouterr()
    assert_no_secret(out + err)
    return out, err


def test_dry_run_then_create_then_unchanged(
    secrets: dict[str, Any], v3: FakeV3, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(secrets, "--dry-run")) == 0
    out, err = outputs(capsys)
    assert out.splitlines() == [
        "(dry run) Nylas v3 at https://api.us.nylas.com",
        "(dry run) would create connector microsoft (tenant common)",
        f"(dry run) would register callback URI {CALLBACK}",
        "(dry run) nothing was changed",
    ]
    assert err == ""
    assert v3.writes() == 0

    assert main(argv(secrets)) == 0
    out, _ = outputs(capsys)
    assert out.splitlines()[1:] == [
        "connector microsoft: created (tenant common)",
        f"callback URI {CALLBACK}: registered",
    ]

    assert main(argv(secrets)) == 0
    out, _ = outputs(capsys)
    assert out.splitlines()[1:] == [
        "connector microsoft: unchanged",
        f"callback URI {CALLBACK}: already registered",
    ]
    assert v3.writes() == 2

    assert main(argv(secrets, "--dry-run")) == 0
    assert outputs(capsys)[0].splitlines()[-1] == "(dry run) nothing to change"


def test_beta_update_with_push_secret(
    secrets: dict[str, Any], beta: FakeBeta, capsys: pytest.CaptureFixture[str]
) -> None:
    beta.seed(tenant="common")
    assert (
        main(
            argv(secrets, "--push-secret", "--scopes", "User.Read,openid", flavour="beta", tenant=TENANT_GUID)
        )
        == 0
    )
    out, _ = outputs(capsys)
    assert (
        out.splitlines()[1]
        == "integration microsoft: updated (changed: tenant, client_secret (re-sent), scope)"
    )
    assert beta.secret_sent == AZURE_CLIENT_SECRET


def test_teardown(secrets: dict[str, Any], v3: FakeV3, capsys: pytest.CaptureFixture[str]) -> None:
    v3.seed(uris=(CALLBACK,))
    args = argv(secrets, "--teardown")
    args.remove("--azure-secret-arn")
    args.remove(secrets["azure"])  # not needed to tear down
    assert main(args) == 0
    out, _ = outputs(capsys)
    assert out.splitlines()[1:] == [
        f"callback URI {CALLBACK}: removed",
        "connector microsoft: kept (OnDelete Retain: deleting it would stop every grant of the application)",
    ]
    assert main([*args, "--on-delete", "Remove"]) == 0
    assert outputs(capsys)[0].splitlines()[-1] == "connector microsoft: deleted"


def test_nylas_error_exit_1_on_stderr(
    secrets: dict[str, Any], router: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    router.get("https://api.us.nylas.com/v3/connectors/microsoft").respond(
        401,
        json={"request_id": "req-7", "error": {"type": "api.authentication_error", "message": NYLAS_API_KEY}},
    )
    assert main(argv(secrets)) == 1
    out, err = outputs(capsys)
    assert out == ""
    assert err.startswith(
        "error: Nylas GET /v3/connectors/microsoft failed: HTTP 401 api.authentication_error"
    )
    assert "request id req-7" in err


def test_bad_tenant_exit_1_before_any_call(
    secrets: dict[str, Any], router: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = router.route().mock(return_value=httpx.Response(500))
    assert main(argv(secrets, tenant="consumers")) == 1
    _, err = outputs(capsys)
    assert "tenant 'consumers' is not accepted" in err
    assert route.call_count == 0


def test_missing_secret_exit_1(
    secrets: dict[str, Any], router: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argv(secrets)
    args[args.index(secrets["nylas"])] = secrets["nylas"] + "-gone"
    assert main(args) == 1
    assert "ResourceNotFoundException" in outputs(capsys)[1]
    assert not router.calls


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--flavour", "v3"])
    assert info.value.code == 2
    assert (
        "missing --tenant, --callback-url, --nylas-secret-arn, --azure-secret-arn" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as info:
        main(["--flavour", "v4"])
    assert info.value.code == 2


def test_defaults_from_function_environment(
    secrets: dict[str, Any], v3: FakeV3, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NYLAS_API", "v3")
    monkeypatch.setenv("AZURE_TENANT", TENANT_GUID)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://abc123.execute-api.us-east-1.amazonaws.com/")
    monkeypatch.setenv("NYLAS_SECRET_ARN", secrets["nylas"])
    monkeypatch.setenv("AZURE_SECRET_ARN", secrets["azure"])
    assert main([]) == 0
    assert outputs(capsys)[0].splitlines()[1] == f"connector microsoft: created (tenant {TENANT_GUID})"
    assert v3.urls() == [CALLBACK]


def test_runs_as_a_module_without_pythonpath() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "tools.nylas_setup", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--teardown" in proc.stdout
