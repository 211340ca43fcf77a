"""tools/package.py: what `make build` ships. One build per session; pip downloads are cached in .build/."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest
from tools import bytecode_modules, package

import build_layer


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("build")
    package.build_all(build)  # wheels come from the repository's cache (.build/cache) after the first run
    return build


def _names(zip_path: Path) -> list[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


def test_layer_has_no_runtime_provided_package(built: Path) -> None:
    tops = {name.split("/")[1] for name in _names(built / "core-layer.zip") if name.count("/") >= 1}
    for forbidden in ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py"):
        assert forbidden not in tops
    assert not any(t.startswith(("boto3-", "botocore-")) for t in tops)
    assert {"teams_connect", "aws_lambda_powertools", "aws_xray_sdk", "httpx", "tenacity"} <= tops


def test_layer_native_code_is_aarch64_only(built: Path) -> None:
    shared = [n for n in _names(built / "core-layer.zip") if n.endswith(".so")]
    assert all("aarch64" in n for n in shared), shared


def test_functions_hold_only_their_own_files(built: Path) -> None:
    """Each function's own files (app.py, requirements.txt, an asset such as connect.js) and app.py's
    bytecode: no shared code, no dependency."""
    for name in package.function_names():
        names = _names(built / f"{name}.zip")
        own = {p.name for p in (package.FUNCTIONS_DIR / name).iterdir() if p.is_file()}
        assert "app.py" in names
        assert [n for n in names if n not in own and not n.startswith("__pycache__/app.")] == [], name


def test_exactly_the_imported_modules_have_a_checked_hash_pyc(built: Path) -> None:
    """All of teams_connect and the listed dependency modules: checked-hash .pyc; nothing else."""
    listed = bytecode_modules.listed()
    with zipfile.ZipFile(built / "core-layer.zip") as archive:
        names = set(archive.namelist())
        sources = [n for n in names if n.startswith("python/") and n.endswith(".py")]
        tag = importlib.util.MAGIC_NUMBER
        compiled: set[str] = set()
        for source in sources:
            module = build_layer.module_name(Path(source).relative_to("python"))
            folder, _, file = source.rpartition("/")
            pyc = f"{folder}/__pycache__/{file[:-3]}.cpython-312.pyc"
            if module.split(".")[0] == "teams_connect" or module in listed:
                assert pyc in names, source
                header = archive.read(pyc)[:16]
                assert header[:4] == tag  # compiled by Python 3.12
                assert int.from_bytes(header[4:8], "little") == 0b11  # hash-based, check_source
                compiled.add(module)
            else:
                assert pyc not in names, f"{module} ships bytecode but no function imports it"
        assert {m for m in compiled if not m.startswith("teams_connect")} == listed  # every listed one ships
        assert len([n for n in names if n.endswith(".pyc")]) == len(compiled)


# One traced interpreter per function and configuration (15 functions): beyond the default 120 s on a
# loaded 2-core machine.
@pytest.mark.timeout(900)
def test_the_bytecode_list_is_what_the_functions_import(built: Path) -> None:
    # Stale list → a handler would compile a module at every cold start (or ship unused bytecode):
    # `python -m tools.bytecode_modules --write` after `make build` regenerates it.
    layer = built / "local" / "core-layer-x86_64" / "python"
    assert bytecode_modules.traced_modules(layer) == bytecode_modules.listed()


def test_the_layer_carries_certifis_bundle_as_a_hashed_directory(built: Path) -> None:
    """teams_connect.adapters.tls reads python/certifi-capath: the layer's own certifi bundle, one
    certificate a file, under the names OpenSSL looks up (tests/unit/test_ca_directory.py)."""
    with zipfile.ZipFile(built / "core-layer.zip") as archive:
        bundle = archive.read("python/certifi/cacert.pem")
        prefix = f"python/{build_layer.CA_DIRECTORY}/"
        files = {n.removeprefix(prefix): archive.read(n) for n in archive.namelist() if n.startswith(prefix)}
    ders = build_layer.pem_certificates(bundle)
    assert len(files) == len(ders) > 100
    assert sorted(c for pem in files.values() for c in build_layer.pem_certificates(pem)) == sorted(ders)
    for name, pem in files.items():
        (der,) = build_layer.pem_certificates(pem)
        assert name.rsplit(".", 1)[0] == build_layer.subject_hash(der), name


def test_the_layer_stays_under_3_mb_zipped(built: Path) -> None:
    assert (built / "core-layer.zip").stat().st_size <= 3_000_000


def test_zips_are_deterministic_with_1980_timestamps(built: Path) -> None:
    for zip_path in built.glob("*.zip"):
        with zipfile.ZipFile(zip_path) as archive:
            infos = archive.infolist()
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_rezip_is_byte_identical(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    package._zip(built / "stage" / "get_grant", again)
    assert again.read_bytes() == (built / "get_grant.zip").read_bytes()
