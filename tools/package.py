"""`make build`: the function and layer packages exactly as `sam build` + `sam deploy` would ship them.

SAM's Python builder (aws-lambda-builders `python_pip`) is mirrored here because `sam` cannot run on
these machines:

- each function's package = its own directory's files (no `__pycache__`/`*.pyc`, which SAM excludes)
  plus its `requirements.txt` dependencies (all empty today);
- the layer's package = the tree `layers/core/build_layer.py` builds, the very script `sam build` runs
  for the layer (`BuildMethod: makefile`): `python/teams_connect` + the requirements' wheels for the
  runtime's platform, WITHOUT the packages the Lambda runtime provides (boto3, botocore, …);

and, unlike `sam build`, every package's `.py` is compiled with `compileall --invalidation-mode
checked-hash` by Python 3.12 (the runtime's minor version): the zips carry 1980-01-01 timestamps, so
timestamp-based `.pyc` never validate in Lambda, and the read-only `/var/task` / `/opt` means every
cold start would compile again (aws/aws-lambda-builders#924). Checked-hash `.pyc` validate against the
source's hash instead.

Outputs (`.build/`, gitignored):
  .build/<function>.zip, .build/core-layer.zip     what is deployed (arm64)
  .build/stage/<name>/                             the unzipped trees (for inspection and the tests)
  .build/local/core-layer-x86_64/python/           the same layer with x86_64 wheels, importable on this
                                                   machine: `python -m bench` measures it
  .build/manifest.json                             sizes and file counts

The pip downloads are cached per (requirements, platform) in `.build/cache/`, so a rebuild with
unchanged requirements takes a few seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build"
FUNCTIONS_DIR = ROOT / "functions"
LAYER_DIR = ROOT / "layers" / "core"
LAYER_PACKAGE = "teams_connect"
LAYER_NAME = "core-layer"
RUNTIME_PYTHON = (3, 12)
_LAYER_DIR = Path(__file__).resolve().parents[1] / "layers" / "core"
if str(_LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(_LAYER_DIR))
import build_layer  # noqa: E402 - layers/core/build_layer.py, the layer's one packaging script

ARM64 = build_layer.ARM64
X86_64 = build_layer.X86_64
RUNTIME_PROVIDED = build_layer.RUNTIME_PROVIDED
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_CACHE_VERSION = "3"  # bump when the way dependencies are installed or stripped changes


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str  # "function" | "layer"
    zip_path: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    pyc_files: int


# --------------------------------------------------------------------------- helpers


def _requirements(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _dependencies(requirements: Path, platform: str) -> Path:
    """The requirements installed for `platform`, runtime-provided packages removed; cached by content."""
    key = hashlib.sha256(
        "|".join(
            (_CACHE_VERSION, requirements.read_text(encoding="utf-8"), platform, *sorted(RUNTIME_PROVIDED))
        ).encode()
    ).hexdigest()[:16]
    cached = BUILD / "cache" / f"deps-{platform}-{key}"
    if (cached / ".complete").is_file():
        return cached
    shutil.rmtree(cached, ignore_errors=True)
    partial = cached.with_name(cached.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    removed = build_layer.install_dependencies(requirements, platform, partial)
    (partial / ".complete").write_text(json.dumps({"removed": removed}), encoding="utf-8")
    partial.rename(cached)
    return cached


def _files(tree: Path) -> Iterator[Path]:
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            yield path


def _zip(tree: Path, zip_path: Path) -> None:
    """Deterministic zip: sorted entries, 1980-01-01 timestamps (as SAM writes them), fixed modes."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in _files(tree):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 if os.access(path, os.X_OK) else 0o100644) << 16
            info.create_system = 3
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(zip_path)


def _artifact(name: str, kind: str, tree: Path, zip_path: Path) -> Artifact:
    files = list(_files(tree))
    return Artifact(
        name=name,
        kind=kind,
        zip_path=str(zip_path.relative_to(ROOT) if zip_path.is_relative_to(ROOT) else zip_path),
        zipped_bytes=zip_path.stat().st_size,
        unzipped_bytes=sum(f.stat().st_size for f in files),
        files=len(files),
        pyc_files=sum(1 for f in files if f.suffix == ".pyc"),
    )


# --------------------------------------------------------------------------- the packages


def function_names() -> list[str]:
    return sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/app.py"))


def build_function(name: str, build: Path = BUILD) -> Artifact:
    source = FUNCTIONS_DIR / name
    stage = build / "stage" / name
    shutil.rmtree(stage, ignore_errors=True)
    build_layer.copy_tree(source, stage)
    requirements = source / "requirements.txt"
    if _requirements(requirements):
        shutil.copytree(_dependencies(requirements, ARM64), stage, dirs_exist_ok=True)
        (stage / ".complete").unlink(missing_ok=True)
    build_layer.compile_tree(stage)
    zip_path = build / f"{name}.zip"
    _zip(stage, zip_path)
    return _artifact(name, "function", stage, zip_path)


def stage_layer(target: Path, platform: str) -> Path:
    """`target/python/` = teams_connect + the requirements for `platform`, compiled; returns `target`."""
    shutil.rmtree(target, ignore_errors=True)
    return build_layer.build(
        target, platform=platform, dependencies=_dependencies(LAYER_DIR / "requirements.txt", platform)
    )


def package_layer(build: Path = BUILD) -> Artifact:
    stage = stage_layer(build / "stage" / LAYER_NAME, ARM64)
    zip_path = build / f"{LAYER_NAME}.zip"
    _zip(stage, zip_path)
    return _artifact(LAYER_NAME, "layer", stage, zip_path)


def build_local_layer(build: Path = BUILD) -> Path:
    """The layer with x86_64 wheels (same code, same bytecode mode): importable on this machine."""
    return stage_layer(build / "local" / f"{LAYER_NAME}-x86_64", X86_64) / "python"


def native_extensions(tree: Path) -> list[str]:
    return [str(p.relative_to(tree)) for p in _files(tree) if p.suffix == ".so" or ".so." in p.name]


def build_all(build: Path = BUILD) -> list[Artifact]:
    build_layer.check_python()
    build.mkdir(exist_ok=True)
    artifacts = [package_layer(build), *(build_function(name, build) for name in function_names())]
    build_local_layer(build)
    layer_python = build / "stage" / LAYER_NAME / "python"
    manifest = {
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": ARM64,
        "runtime_provided_excluded": sorted(RUNTIME_PROVIDED),
        "layer_native_extensions": native_extensions(layer_python),
        "artifacts": [asdict(a) for a in artifacts],
    }
    (build / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return artifacts


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.2f} MiB"


def print_table(artifacts: Iterable[Artifact]) -> None:
    print(f"{'package':<20} {'zipped':>12} {'unzipped':>12} {'files':>6} {'.pyc':>5}  zip")
    for a in artifacts:
        print(
            f"{a.name:<20} {_kib(a.zipped_bytes):>12} {_kib(a.unzipped_bytes):>12} "
            f"{a.files:>6} {a.pyc_files:>5}  {a.zip_path}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--build-dir", type=Path, default=BUILD)
    args = parser.parse_args(argv)
    started = time.monotonic()
    artifacts = build_all(args.build_dir)
    print_table(artifacts)
    manifest = json.loads((args.build_dir / "manifest.json").read_text(encoding="utf-8"))
    if manifest["layer_native_extensions"]:
        print("layer native extensions (aarch64):", ", ".join(manifest["layer_native_extensions"]))
    print(f"built in {time.monotonic() - started:.1f} s → {args.build_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
