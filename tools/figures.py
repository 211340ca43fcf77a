"""Write the security, fault and concurrency figures of the last test run into the README.

`make test` runs it after pytest: the adversarial/property/log suites write
`test-results/figures-security.json`, the fault and concurrency suites `test-results/figures-faults.json`
(see their conftest.py). This renders both between `<!-- figures:start -->` and `<!-- figures:end -->`
in README.md, so the README's figures are always the ones a run produced.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"
README = ROOT / "README.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def render(security: dict[str, Any], faults: dict[str, Any]) -> str:
    lines: list[str] = []
    categories = security["hostile_inputs_by_category"]
    lines.append(
        f"**Hostile inputs:** {security['hostile_inputs_total']:,} tried against both flavours "
        f"({', '.join(security['flavours'])}), covering {security['threats_covered']} of the "
        f"{security['threats_total']} threats of the threat model "
        f"(not over HTTP: {', '.join(security['threats_not_covered_ids']) or 'none'}, the IAM, encryption "
        f"and backup threat, checked by the static gates); {security['location_headers_checked']} "
        "`Location` headers checked against the allow-list. Each asserts the status, no redirect off "
        "the allow-list, no upstream call where none is due, and nothing written."
    )
    lines.append("")
    lines.append("| category | inputs |")
    lines.append("|---|---|")
    for name, count in sorted(categories.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {name.replace('_', ' ')} | {count} |")
    lines.append("")
    injected = faults["faults_injected"]
    lines.append(
        f"**Faults:** {faults['fault_scenarios_run']} scenarios, {len(injected)} distinct faults injected; "
        "each ends in the contract's error, nothing half-written, and a rerun converges to exactly one "
        "grant record:"
    )
    lines.append("")
    for fault in injected:
        lines.append(f"- {fault}")
    lines.append("")
    lines.append("**Concurrency** (both flavours loaded at once):")
    lines.append("")
    lines.append(
        "| flavour | parallel flows | connected | grant records | duplicates | 20 identical callbacks: "
        "Nylas calls | their 5xx |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for flavour, c in sorted(faults["concurrency"].items()):
        lines.append(
            f"| {flavour} | {c['flows_run']} | {c['flows_connected']} | {c['grant_records_found']} | "
            f"{c['duplicates']} | {c['nylas_calls_for_identical_callbacks']} "
            f"(`{c['nylas_call_counted']}`) | {c['identical_callbacks_5xx']} |"
        )
    lines.append("")
    lines.append(f"_From the test run of {faults.get('generated_at', 'the last run')}._")
    return "\n".join(lines)


def update_readme(block: str, readme: Path = README) -> bool:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} … {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{block}\n{END}{tail}"
    if new == text:
        return False
    readme.write_text(new, encoding="utf-8")
    return True


def main() -> int:
    security, faults = _load("figures-security.json"), _load("figures-faults.json")
    if security is None or faults is None:
        print("figures: no complete set of figures in test-results/ (run `make test`)", file=sys.stderr)
        return 0
    changed = update_readme(render(security, faults))
    print(f"figures: README.md {'updated' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
