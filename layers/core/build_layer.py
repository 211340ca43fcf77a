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
5. writes certifi's CA bundle again as an OpenSSL hashed directory (`certifi-capath/`, one PEM file a
   certificate, named by its subject hash as `openssl rehash` names it): `teams_connect.adapters.tls`
   hands that directory to OpenSSL, which reads a CA certificate only when a handshake needs it,
   instead of parsing all ~120 of them at every cold start (≈ 45 ms with OpenSSL 3);
6. compiles, with `compileall --invalidation-mode checked-hash` by Python 3.12 (the runtime's minor
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
import base64
import compileall
import hashlib
import os
import py_compile
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "teams_connect"
BYTECODE_MODULES = HERE / "bytecode_modules.txt"
CA_DIRECTORY = "certifi-capath"  # beside the packages in python/; teams_connect.adapters.tls reads it
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


# --- certifi's bundle as an OpenSSL hashed directory ------------------------------------------------
# OpenSSL looks a CA up in a `capath` directory by the hash of its subject name (X509_NAME_hash_ex):
# the first four bytes, little-endian, of the SHA-1 of the name's canonical DER encoding, in which
# every string value is UTF-8, trimmed, with inner runs of white space collapsed to one space and
# ASCII letters lower-cased (crypto/x509/x_name.c: x509_name_canon, asn1_string_canon). Computed here
# rather than by `openssl rehash` because SAM runs this script with Python alone; a test holds it
# against `openssl x509 -subject_hash` for every certificate of the bundle.
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n(.+?)-----END CERTIFICATE-----", re.S)
_SEQUENCE, _SET, _UTF8STRING = 0x30, 0x31, 0x0C
# The string types OpenSSL canonicalises (ASN1_MASK_CANON), with how their bytes decode.
_CANON_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString
    0x14: "latin-1",  # T61String (OpenSSL reads it as one byte a character)
    0x16: "latin-1",  # IA5String
    0x1A: "latin-1",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_SPACE = b" \t\n\v\f\r"
_SPACES = re.compile(b"[" + re.escape(_SPACE) + b"]+")


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The DER elements between `start` and `end`: (tag, element start, content start, element end)."""
    items = []
    while start < end:
        tag, length, content = data[start], data[start + 1], start + 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[content : content + size], "big")
            content += size
        items.append((tag, start, content, content + length))
        start = content + length
    return items


def _encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + content


def _canonical_value(tag: int, raw: bytes) -> bytes:
    if tag not in _CANON_STRINGS:
        return _encode(tag, raw)
    text = raw.decode(_CANON_STRINGS[tag]).encode("utf-8").strip(_SPACE)
    # Inner runs of white space become one space; bytes.lower() lowers ASCII letters only, as OpenSSL.
    return _encode(_UTF8STRING, _SPACES.sub(b" ", text).lower())


def subject_hash(der: bytes) -> str:
    """What `openssl x509 -subject_hash` prints for the DER certificate `der` (8 hex digits)."""
    ((_, _, cert, cert_end),) = _children(der, 0, len(der))
    _, _, tbs, tbs_end = _children(der, cert, cert_end)[0]
    fields = _children(der, tbs, tbs_end)
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    _, _, name, name_end = fields[4]  # serial, signature, issuer, validity, subject
    canonical = b""
    for _, _, rdn, rdn_end in _children(der, name, name_end):
        entries = []
        for _, _, ava, ava_end in _children(der, rdn, rdn_end):
            (_, oid, _, oid_end), (tag, _, value, value_end) = _children(der, ava, ava_end)
            entries.append(_encode(_SEQUENCE, der[oid:oid_end] + _canonical_value(tag, der[value:value_end])))
        canonical += _encode(_SET, b"".join(sorted(entries)))  # DER sorts the members of a SET OF
    digest = hashlib.sha1(canonical).digest()  # noqa: S324 - OpenSSL's name hash, not a security use
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def pem_certificates(bundle: bytes) -> list[bytes]:
    """The DER certificates of a PEM bundle, in order."""
    return [base64.b64decode(b"".join(body.split())) for body in _PEM.findall(bundle)]


def write_ca_directory(bundle: Path, directory: Path) -> list[str]:
    """`bundle`'s certificates as an OpenSSL hashed directory (`<hash>.<n>`, PEM); returns the names."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    names: list[str] = []
    for der in pem_certificates(bundle.read_bytes()):
        stem = subject_hash(der)
        n = 0
        while (directory / f"{stem}.{n}").exists():
            n += 1
        (directory / f"{stem}.{n}").write_text(ssl.DER_cert_to_PEM_cert(der), encoding="ascii")
        names.append(f"{stem}.{n}")
    if not names:
        raise SystemExit(f"no certificate in {bundle}")
    return names


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
    bundle = python / "certifi" / "cacert.pem"  # httpx's dependency: absent only without requirements
    if bundle.exists():
        write_ca_directory(bundle, python / CA_DIRECTORY)
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
