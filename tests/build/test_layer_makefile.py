"""`sam build` without a container on a machine whose Python 3.12 comes from pyenv.

`sam build` runs layers/core/Makefile's `build-CoreLayer` in a scratch copy of the directory. The
Makefile must find Python 3.12 as the top-level Makefile does, not take the first `python3.12` on
PATH: under pyenv that is a shim that fails ("pyenv: python3.12: command not found") unless 3.12 is
the selected version. These tests give make a fake pyenv (a failing shim first on PATH, a 3.12 in
`$PYENV_ROOT/versions/`) and nothing else, as on a fresh machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "core"
REAL_PYTHON = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
MAKE = shutil.which("make") or "make"
SYSTEM_PYTHONS = ("/usr/bin/python3.12", "/usr/local/bin/python3.12")


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def fake_pyenv(root: Path, marker: Path) -> Path:
    """`root/shims/python3.12` fails as pyenv's shim does when 3.12 is not selected; the installed
    `root/versions/3.12.9/bin/python3.12` runs the real Python 3.12 and notes that it was used."""
    _script(
        root / "shims" / "python3.12",
        'echo "pyenv: python3.12: command not found" >&2\nexit 127',
    )
    return _script(
        root / "versions" / "3.12.9" / "bin" / "python3.12",
        f'echo "$0" >> "{marker}"\nexec "{REAL_PYTHON}" "$@"',
    )


def scratch_copy(tmp_path: Path) -> Path:
    """The layer directory as SAM copies it, with no requirements (so no download is needed)."""
    copy = tmp_path / "scratch"
    shutil.copytree(LAYER, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (copy / "requirements.txt").write_text("# none for this test\n", encoding="utf-8")
    return copy


def run_make(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - make on our own Makefile
        [MAKE, "-C", str(directory), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_sam_build_of_the_layer_uses_pyenvs_python312_behind_a_failing_shim(tmp_path: Path) -> None:
    marker = tmp_path / "used"
    pyenv = tmp_path / "pyenv"
    installed = fake_pyenv(pyenv, marker)
    env = {
        "PATH": f"{pyenv / 'shims'}:{tmp_path / 'nothing-else'}",
        "PYENV_ROOT": str(pyenv),
        "HOME": str(tmp_path),
    }
    artifacts = tmp_path / "artifacts"
    completed = run_make(scratch_copy(tmp_path), env, "build-CoreLayer", f"ARTIFACTS_DIR={artifacts}")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    used = set(marker.read_text(encoding="utf-8").split())
    assert used == {str(installed)}, used
    layer = artifacts / "python" / "teams_connect"
    assert (layer / "__init__.py").is_file()
    assert list((layer / "__pycache__").glob("__init__.cpython-312.pyc")), "compiled by 3.12"


def test_a_working_python312_on_path_is_taken_first(tmp_path: Path) -> None:
    marker = tmp_path / "used"
    fake_pyenv(tmp_path / "pyenv", marker)
    on_path = _script(tmp_path / "bin" / "python3.12", f'exec "{REAL_PYTHON}" "$@"')
    env = {"PATH": f"{tmp_path / 'bin'}", "PYENV_ROOT": str(tmp_path / "pyenv"), "HOME": str(tmp_path)}
    completed = run_make(LAYER, env, "-n", "build-CoreLayer", "ARTIFACTS_DIR=/nonexistent")
    assert completed.returncode == 0, completed.stderr
    assert f"{on_path} build_layer.py" in completed.stdout


def test_without_python312_the_build_says_what_is_missing(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "PYENV_ROOT": str(tmp_path / "no-pyenv"), "HOME": str(tmp_path)}
    out = tmp_path / "out"
    completed = run_make(scratch_copy(tmp_path), env, "build-CoreLayer", f"ARTIFACTS_DIR={out}")
    system = [p for p in SYSTEM_PYTHONS if Path(p).exists()]
    if system:  # the Makefile's last resort, as in the top-level Makefile
        assert completed.returncode == 0, completed.stderr
        assert f"{system[0]} build_layer.py" in completed.stdout
    else:
        assert completed.returncode != 0
        assert "Python 3.12 is required" in completed.stderr
        assert not out.exists()
