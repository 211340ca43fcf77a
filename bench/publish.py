"""Where `make bench` writes its report: the tables into docs/performance.md (`bench` block) and one
summary line into README.md (`bench-summary` block), both from the same run (tools/docs_blocks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.docs_blocks import ROOT, replace_block


def _range(values: list[float], fmt: str) -> str:
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def summary(results: dict[str, Any]) -> str:
    """One line: cold init, its ratios to the floor and to a naive stack, warm p50, layer size, targets."""
    from bench.run import FLOOR_OF, FUNCTIONS, _size

    cold, warm = results["cold"], results["warm"]
    functions = [f for f in FUNCTIONS if f"{f}/pyc" in cold]  # the functions this run measured
    inits = [cold[f"{f}/pyc"]["init_ms"]["p50"] for f in functions]
    floors = [cold[f"floor/{FLOOR_OF[f]}"]["init_ms"]["p50"] for f in functions]
    naive = cold["naive"]["init_ms"]["p50"]
    layer = next(a for a in results["sizes"]["artifacts"] if a["kind"] == "layer")
    targets = results["targets"]
    targets = [t for t in targets if not t.get("reported")]
    met = sum(1 for t in targets if t["met"])
    date = str(results["machine"]["date"]).split(" ")[0]
    xfloor = _range([i / f for i, f in zip(inits, floors, strict=True)], "{:.2f}")
    xnaive = _range([i / naive for i in inits], "{:.2f}")
    return (
        f"**Performance** (`make bench` of {date}, {results['machine']['cpus']} shared CPUs): cold init "
        f"{_range(inits, '{:.0f}')} ms, {xfloor}x its floor and {xnaive}x a naive stack; "
        f"warm p50 {_range([warm[f]['p50'] for f in functions], '{:.0f}')} ms; layer "
        f"{_size(layer['zipped_bytes'])} zipped; {met} of {len(targets)} targets met. "
        "[Tables](docs/performance.md#last-make-bench)"
    )


def publish(table: str, results: dict[str, Any], root: Path = ROOT) -> None:
    """Write the run's tables and summary line (MissingMarkers when a page lost its markers)."""
    for path, name, content in (
        (root / "docs" / "performance.md", "bench", table),
        (root / "README.md", "bench-summary", summary(results)),
    ):
        replace_block(path, name, content)
