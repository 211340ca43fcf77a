"""The layer's folders are its layers, and imports point downward only:
http → domain → adapters → rules. The top-level modules (config, errors, observability, snapstart)
are the foundation every layer may use; `setup/` is the operators' use case and may use adapters and
rules, never the browser/API edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "core" / "teams_connect"
RANK = {"rules": 0, "adapters": 1, "domain": 2, "setup": 2, "http": 3}
FOUNDATION = {"config", "errors", "observability", "snapstart"}


def _layer_of(module: str) -> str | None:
    """`teams_connect.domain.flow` → `domain`; None for the foundation modules."""
    parts = module.split(".")
    if parts[0] != "teams_connect" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "teams_connect":
                found.extend((node.lineno, f"teams_connect.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_layer_or_the_foundation() -> None:
    loose = [
        p.relative_to(PACKAGE).as_posix()
        for p in MODULES
        if p.parent == PACKAGE and p.stem not in FOUNDATION | {"__init__"}
    ]
    assert loose == [], (
        f"modules outside the layer folders: {loose} (move them into http/ domain/ adapters/ rules/)"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_downward_only(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.parts[0] if len(relative.parts) > 1 else None
    if own is None:  # a foundation module uses no layer at all
        bad = [(line, m) for line, m in _imports(path) if _layer_of(m) is not None]
        assert bad == [], f"{relative}: the foundation imports a layer: {bad}"
        return
    bad = [
        (line, m)
        for line, m in _imports(path)
        if (layer := _layer_of(m)) is not None and layer != own and RANK[layer] >= RANK[own]
    ]
    assert bad == [], f"{relative} ({own}) imports upward or sideways: {bad}"
