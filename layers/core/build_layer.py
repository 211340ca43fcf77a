"""Build the core layer's tree: `python3.12 build_layer.py ARTIFACTS_DIR`.

The one packaging of the layer, used by both deploy paths:

- `sam build` (template.yaml: `Metadata: BuildMethod: makefile`) runs `layers/core/Makefile`'s
  `build-CoreLayer` target, which calls this script with SAM's `ARTIFACTS_DIR`;
- `make build` (`tools/package.py`) calls the same functions, adds a download cache and zips the tree.

What it does, and why SAM's own Python builder is not used:

1. `pip install -r requirements.txt` for the runtime's platform (manylinux2014_aarch64, CPython 3.12,
   wheels only) into `ARTIFACTS_DIR/python`;
2. removes what the Lambda Python runtime already provides (boto3, botocore, s3transfer, jmespath,
   urllib3, python-dateutil, six): aws-xray-sdk depends on botocore, so SAM's builder would vendor
   ~30 MB of it; the project never ships boto3/botocore;
3. prunes files no function loads (Powertools' Swagger UI assets, type stubs);
4. copies the `teams_connect` package;
5. compiles, with `compileall --invalidation-mode checked-hash` by Python 3.12 (the runtime's minor
   version), exactly the modules the functions import: all of `teams_connect` and the dependency
   modules listed in `bytecode_modules.txt` (what the handlers load at init and in their decorators,
   in every configuration; `python -m tools.bytecode_modules --write` regenerates it, and a test fails
   when it is stale). Deployment zips carry 1980-01-01 timestamps, so timestamp-based `.pyc` never
   validate in Lambda and every cold start would compile again (aws/aws-lambda-builders#924); a module
   that no handler imports gets no `.pyc` (half of the zipped layer is bytecode).

Standard library only: it runs in SAM's scratch copy of this directory.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "teams_connect"
BYTECODE_MODULES = HERE / "bytecode_modules.txt"
RUNTIME_PYTHON = (3, 12)
ARM64 = "manylinux2014_aarch64"
X86_64 = "manylinux2014_x86_64"

# Provided by the Lambda Python runtime: never shipped (top-level import names, normalised dist names).
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "python_dateutil", "six"}
)
# Never loaded by a Lambda function: Powertools' Swagger UI assets (served only by `enable_swagger()`,
# which we never call) and type stubs. Removing them is the only pruning done: no module is removed.
PRUNED = (
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.js",
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.css",
    "*-stubs",
    "**/*.pyi",
)
# What is never copied from a source directory (a subset of aws-lambda-builders' excludes).
EXCLUDED_NAMES = frozenset({"__pycache__", ".git", ".gitignore", ".aws-sam", ".mypy_cache", ".pytest_cache"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")


def check_python() -> None:
    if sys.version_info[:2] != RUNTIME_PYTHON:
        raise SystemExit(
            f"compile with Python {RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]} (the Lambda runtime's version), "
            f"not {sys.version.split()[0]}: .pyc files of another minor version are ignored"
        )


def copy_tree(source: Path, target: Path) -> None:
    def ignore(_dir: str, names: list[str]) -> set[str]:
        return {n for n in names if n in EXCLUDED_NAMES or n.endswith(EXCLUDED_SUFFIXES)}

    shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_name(dist_info: Path) -> str:
    """`python_dateutil-2.9.0.dist-info` → `python_dateutil`."""
    return _normalise(dist_info.name.split("-", 1)[0])


def pip_install(requirements: Path, platform: str, target: Path) -> None:
    """pip install the requirements' wheels for `platform` (CPython 3.12) into `target`."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # compiled later, as checked-hash
        "--target",
        str(target),
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        f"{RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]}",
        "--only-binary=:all:",
        "-r",
        str(requirements),
    ]
    env = {**os.environ, "PIP_NO_WARN_SCRIPT_LOCATION": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise SystemExit(
            f"pip could not install {requirements} for {platform}:\n{result.stdout}\n{result.stderr}"
        )


def strip_runtime_provided(site: Path) -> list[str]:
    """Remove the runtime's own packages (and their metadata) and pruned files from a pip --target tree."""
    removed: list[str] = []
    for entry in sorted(site.iterdir()):
        if entry.name.endswith(".dist-info"):
            if _dist_name(entry) in RUNTIME_PROVIDED:
                shutil.rmtree(entry)
                removed.append(entry.name)
            continue
        stem = entry.name.removesuffix(".py")
        if stem in RUNTIME_PROVIDED:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts are useless in a layer
    for pattern in PRUNED:
        for path in sorted(site.glob(pattern)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.relative_to(site).as_posix())
    return removed


def install_dependencies(requirements: Path, platform: str, target: Path) -> list[str]:
    """The requirements for `platform` in `target`, runtime-provided packages removed; returns what was."""
    pip_install(requirements, platform, target)
    return strip_runtime_provided(target)


def compile_tree(tree: Path, modules: frozenset[str] | None = None) -> None:
    """checked-hash .pyc (in __pycache__), by this Python 3.12, next to every .py of `tree`, or only
    next to those of `PACKAGE` and of the dotted module names in `modules`."""
    if modules is None:
        ok = compileall.compile_dir(
            str(tree),
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    else:
        ok = True
        for source in sorted(tree.rglob("*.py")):
            name = module_name(source.relative_to(tree))
            if name.split(".")[0] == PACKAGE or name in modules:
                ok &= bool(
                    compileall.compile_file(
                        str(source), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
                    )
                )
    if not ok:
        raise SystemExit(f"compileall failed in {tree}")


def module_name(relative: Path) -> str:
    """`aws_lambda_powertools/logging/__init__.py` → `aws_lambda_powertools.logging`."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bytecode_modules(path: Path = BYTECODE_MODULES) -> frozenset[str]:
    """The dependency modules to compile (one dotted name a line; `#` comments)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(line for line in lines if line)


def build(artifacts_dir: Path, *, platform: str = ARM64, dependencies: Path | None = None) -> Path:
    """`artifacts_dir/python/` = dependencies + teams_connect, compiled. `dependencies` is an already
    installed (and stripped) tree to copy instead of running pip (the cache of `make build`)."""
    check_python()
    python = artifacts_dir / "python"
    shutil.rmtree(python, ignore_errors=True)
    python.mkdir(parents=True)
    if dependencies is None:
        install_dependencies(HERE / "requirements.txt", platform, python)
    else:
        shutil.copytree(dependencies, python, dirs_exist_ok=True)
        (python / ".complete").unlink(missing_ok=True)
    copy_tree(HERE / PACKAGE, python / PACKAGE)
    compile_tree(python, bytecode_modules())
    return artifacts_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the teams-connect core layer tree.")
    parser.add_argument("artifacts_dir", type=Path, help="the layer root (SAM's ARTIFACTS_DIR)")
    parser.add_argument("--platform", default=ARM64, choices=[ARM64, X86_64])
    args = parser.parse_args(argv)
    build(args.artifacts_dir, platform=args.platform)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
