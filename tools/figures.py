"""Write the security, fault and concurrency figures of the last test run into the docs.

`make test` runs it after pytest: the adversarial/property/log suites write
`test-results/figures-security.json`, the fault and concurrency suites `test-results/figures-faults.json`
(see their conftest.py). This renders both between `<!-- figures:start -->` and `<!-- figures:end -->`
in docs/security.md, and their one-line summary between `<!-- figures-summary:start -->` and
`<!-- figures-summary:end -->` in README.md (tools/docs_blocks.py), so the figures shown are always
the ones a run produced. The fault campaign (tests/chaos) writes `test-results/figures-chaos.json`,
rendered between `<!-- campaign:start -->` and `<!-- campaign:end -->` in docs/security.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tools.docs_blocks import MissingMarkers, replace_block

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results"


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


def summary(security: dict[str, Any], faults: dict[str, Any]) -> str:
    """The README's one line: the same run's totals, and whether every parallel flow held."""
    flows = faults["concurrency"]
    held = all(
        c["flows_connected"] == c["flows_run"] == c["grant_records_found"]
        and c["duplicates"] == 0
        and c["identical_callbacks_5xx"] == 0
        for c in flows.values()
    )
    parallel = " + ".join(str(c["flows_run"]) for _, c in sorted(flows.items()))
    outcome = (
        "every flow connected once, no duplicate grant"
        if held
        else "**some parallel flows did not converge (see the tables)**"
    )
    return (
        f"**Security and faults:** {security['hostile_inputs_total']:,} hostile inputs "
        f"({security['threats_covered']} of {security['threats_total']} threats over HTTP), "
        f"{len(faults['faults_injected'])} injected faults, {parallel} parallel flows "
        f"({', '.join(sorted(flows))}): {outcome}. [Tables](docs/security.md#figures-of-the-last-run)"
    )


_INVARIANTS = {
    "a": "every grant alive at Nylas is held by exactly one record, or revoked by one sweep",
    "b": "no two records share a grant or a mailbox; every guard agrees with its record",
    "c": "each record's status is what Nylas says of its grant",
    "d": "every record change published once per event id, nothing for no change",
    "e": "no 5xx for bad input, nor any 5xx no injected fault explains",
}


def render_campaign(campaign: dict[str, Any]) -> str:
    """The fault campaign's figures (tests/chaos): sequences, steps, faults, invariants checked."""
    runs = campaign.get("runs") or []
    seeds = ", ".join(str(r["seed"]) for r in runs) or "n/a"
    violating = campaign["sequences_violating"]
    lines = [
        f"**Fault campaign:** {campaign['sequences']:,} random sequences (the shrinker's replays included), "
        f"{campaign['steps']:,} steps in all "
        f"(seed {seeds}), {campaign['faults_injected']:,} faults injected, "
        f"{campaign['invariants_checked']:,} invariant checks once quiet; "
        + (
            "every sequence held every invariant."
            if violating == 0
            else f"**{violating} sequences violated one** (what it found is listed above)."
        ),
        "",
        "| invariant | checks |",
        "|---|---|",
    ]
    for key, text in _INVARIANTS.items():
        lines.append(f"| ({key}) {text} | {campaign['checks_by_invariant'].get(key, 0):,} |")
    lines += ["", "| step | times |", "|---|---|"]
    for name, count in sorted(campaign["steps_by_rule"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {name} | {count:,} |")
    lines += ["", "| fault injected | times |", "|---|---|"]
    for name, count in sorted(campaign["faults_by_kind"].items(), key=lambda kv: (-kv[1], kv[0])):
        if count:
            lines.append(f"| {name} | {count:,} |")
    lines += ["", f"_From the test run of {campaign.get('generated_at', 'the last run')}._"]
    return "\n".join(lines)


def write(
    security: dict[str, Any],
    faults: dict[str, Any],
    root: Path = ROOT,
    campaign: dict[str, Any] | None = None,
) -> list[str]:
    """Rewrite the blocks (the campaign's only when its figures are given); the files that changed."""
    changed = []
    page = root / "docs" / "security.md"
    wrote = replace_block(page, "figures", render(security, faults))
    if campaign is not None:
        wrote = replace_block(page, "campaign", render_campaign(campaign)) or wrote
    if wrote:
        changed.append("docs/security.md")
    if replace_block(root / "README.md", "figures-summary", summary(security, faults)):
        changed.append("README.md")
    return changed


def main() -> int:
    security, faults = _load("figures-security.json"), _load("figures-faults.json")
    if security is None or faults is None:
        print("figures: no complete set of figures in test-results/ (run `make test`)", file=sys.stderr)
        return 0
    campaign = _load("figures-chaos.json")
    if campaign is None:
        print("figures: no fault campaign figures (tests/chaos did not run): its block is left as is")
    try:
        changed = write(security, faults, campaign=campaign)
    except MissingMarkers as exc:
        print(f"figures: {exc}; restore the markers (tools/docs_blocks.py lists them)", file=sys.stderr)
        return 1
    print(f"figures: {', '.join(changed) + ' updated' if changed else 'docs already current'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
