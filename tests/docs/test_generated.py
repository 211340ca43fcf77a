"""The generated blocks have their markers, and the generators write where the blocks live."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.publish import publish
from bench.publish import summary as bench_summary
from tools import figures
from tools.docs_blocks import BLOCKS, MissingMarkers, check_markers, markers, replace_block

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.mark.parametrize(("file", "name"), BLOCKS, ids=[f"{f}:{n}" for f, n in BLOCKS])
def test_every_generated_block_has_its_markers(file: str, name: str) -> None:
    text = (ROOT / file).read_text(encoding="utf-8")
    assert check_markers(text, name) is None
    start, end = markers(name)
    assert text.split(start, 1)[1].split(end, 1)[0].strip(), f"{file}: the {name} block is empty"


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all",
        "<!-- x:start -->\nonly the start",
        "<!-- x:end -->\n<!-- x:start -->",
        "<!-- x:start -->\n<!-- x:end -->\n<!-- x:start -->\n<!-- x:end -->",
    ],
)
def test_missing_or_broken_markers_are_refused_and_nothing_is_written(tmp_path: Path, text: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    assert check_markers(text, "x") is not None
    with pytest.raises(MissingMarkers):
        replace_block(page, "x", "new")
    assert page.read_text(encoding="utf-8") == text


def test_replace_block_keeps_everything_around_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("head\n<!-- x:start -->\nold\n<!-- x:end -->\ntail\n", encoding="utf-8")
    assert replace_block(page, "x", "new\n") is True
    assert page.read_text(encoding="utf-8") == "head\n<!-- x:start -->\nnew\n<!-- x:end -->\ntail\n"
    assert replace_block(page, "x", "new") is False


def _copy_pages(tmp_path: Path) -> Path:
    for file in {f for f, _ in BLOCKS}:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / file, tmp_path / file)
    return tmp_path


SECURITY: dict[str, Any] = {
    "hostile_inputs_total": 2191,
    "hostile_inputs_by_category": {"api_key": 108, "state": 12},
    "flavours": ["v3", "beta"],
    "threats_covered": 15,
    "threats_total": 16,
    "threats_not_covered_ids": ["TM15"],
    "location_headers_checked": 347,
}


def _faults(duplicates: int = 0) -> dict[str, Any]:
    flow = {
        "flows_run": 200,
        "flows_connected": 200,
        "grant_records_found": 200,
        "duplicates": duplicates,
        "nylas_calls_for_identical_callbacks": 1,
        "nylas_call_counted": "POST /v3/connect/token",
        "identical_callbacks_5xx": 0,
    }
    return {
        "fault_scenarios_run": 2,
        "faults_injected": ["nylas: POST /v3/connect/token: 503", "nylas: POST /connect/auth: drop"],
        "concurrency": {"v3": flow, "beta": dict(flow)},
        "generated_at": "2026-12-01T00:00:00Z",
    }


def test_figures_write_the_tables_into_security_md_and_one_line_into_the_readme(tmp_path: Path) -> None:
    root = _copy_pages(tmp_path)
    assert sorted(figures.write(SECURITY, _faults(), root=root)) == ["README.md", "docs/security.md"]
    security_page = (root / "docs" / "security.md").read_text(encoding="utf-8")
    assert "| api key | 108 |" in security_page
    assert "- nylas: POST /connect/auth: drop" in security_page
    readme = (root / "README.md").read_text(encoding="utf-8")
    line = readme.split(markers("figures-summary")[0], 1)[1].split(markers("figures-summary")[1], 1)[0]
    assert line.strip() == (
        "**Security and faults:** 2,191 hostile inputs (15 of 16 threats over HTTP), 2 injected faults, "
        "200 + 200 parallel flows (beta, v3): every flow connected once, no duplicate grant. "
        "[Tables](docs/security.md#figures-of-the-last-run)"
    )
    assert "| api key |" not in readme  # the tables stay out of the README
    assert figures.write(SECURITY, _faults(), root=root) == []  # a second run changes nothing


CAMPAIGN: dict[str, Any] = {
    "sequences": 12,
    "steps": 150,
    "steps_by_rule": {"connect": 40, "sweep": 9},
    "faults_injected": 31,
    "faults_by_kind": {"AWS dynamodb *: throttling": 4, "notifications: duplicated": 0},
    "invariants_checked": 1234,
    "checks_by_invariant": {"a": 100, "b": 200, "c": 34, "d": 800, "e": 100},
    "sequences_violating": 0,
    "runs": [{"seed": 42, "passed": True, "seconds": 99.0}],
    "generated_at": "2026-12-07T06:00:00Z",
}


def test_the_fault_campaign_figures_go_into_their_own_block_of_security_md(tmp_path: Path) -> None:
    root = _copy_pages(tmp_path)

    def block(page: str) -> str:
        return page.split(markers("campaign")[0], 1)[1].split(markers("campaign")[1], 1)[0]

    before = block((root / "docs" / "security.md").read_text(encoding="utf-8"))
    figures.write(SECURITY, _faults(), root=root)
    without = (root / "docs" / "security.md").read_text(encoding="utf-8")
    assert block(without) == before  # no campaign figures: its block is left alone
    assert figures.write(SECURITY, _faults(), root=root, campaign=CAMPAIGN) == ["docs/security.md"]
    page = (root / "docs" / "security.md").read_text(encoding="utf-8")
    written = block(page)
    assert written.strip().startswith(
        "**Fault campaign:** 12 random sequences (the shrinker's replays included), 150 steps in all "
        "(seed 42), 31 faults injected, "
        "1,234 invariant checks once quiet; every sequence held every invariant."
    )
    assert "| (d) every record change published once per event id, nothing for no change | 800 |" in written
    assert "| connect | 40 |" in written
    assert "| AWS dynamodb *: throttling | 4 |" in written
    assert "notifications: duplicated" not in written  # a fault never injected is not listed
    assert "| api key | 108 |" in page  # the other block is untouched by the campaign's
    assert "violated one" in figures.render_campaign({**CAMPAIGN, "sequences_violating": 2})


def test_figures_summary_says_so_when_parallel_flows_did_not_hold() -> None:
    assert "did not converge" in figures.summary(SECURITY, _faults(duplicates=1))
    assert "every flow connected once" not in figures.summary(SECURITY, _faults(duplicates=1))


def _bench_results() -> dict[str, Any]:
    """The figures of the bench run shown in docs/performance.md (2026-11-27)."""
    inits = {
        "create_session": 666,
        "connect_start": 711,
        "connect_callback": 949,
        "get_grant": 742,
        "delete_grant": 845,
    }
    warm = {
        "create_session": 10,
        "connect_start": 27,
        "connect_callback": 73,
        "get_grant": 13,
        "delete_grant": 40,
    }
    cold: dict[str, Any] = {f"{f}/pyc": {"init_ms": {"p50": ms}} for f, ms in inits.items()}
    cold |= {"floor/aws": {"init_ms": {"p50": 410}}, "floor/httpx": {"init_ms": {"p50": 530}}}
    cold["naive"] = {"init_ms": {"p50": 823}}
    return {
        "cold": cold,
        "warm": {f: {"p50": ms} for f, ms in warm.items()},
        "sizes": {"artifacts": [{"kind": "layer", "name": "core", "zipped_bytes": 3_800_000}]},
        "targets": [{"met": i < 18} for i in range(36)],
        "machine": {"date": "2026-11-27 23:32 UTC", "cpus": 2},
    }


def test_bench_summary_line() -> None:
    assert bench_summary(_bench_results()) == (
        "**Performance** (`make bench` of 2026-11-27, 2 shared CPUs): cold init 666-949 ms, 1.59-1.81x "
        "its floor and 0.81-1.15x a naive stack; warm p50 10-73 ms; layer 3.80 MB zipped; "
        "18 of 36 targets met. [Tables](docs/performance.md#last-make-bench)"
    )


def test_bench_writes_its_tables_into_performance_md_and_its_summary_into_the_readme(tmp_path: Path) -> None:
    root = _copy_pages(tmp_path)
    publish("| function | cold init |\n|---|---|\n| get_grant | 1 ms |\n", _bench_results(), root=root)
    performance = (root / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "| get_grant | 1 ms |" in performance
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "| get_grant | 1 ms |" not in readme
    start, end = markers("bench-summary")
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == bench_summary(_bench_results())


def test_api_page_lists_every_route_of_the_openapi_document() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    routes = {f"{m.upper()} {path}" for path, item in spec["paths"].items() for m in item if m in METHODS}
    assert routes, "no routes in docs/openapi.yaml"
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`((?:GET|PUT|POST|DELETE|PATCH|HEAD|OPTIONS) /[^`\s]*)`", page))
    assert routes - listed == set(), "routes of docs/openapi.yaml missing from docs/api.md"
    assert listed - routes == set(), "docs/api.md lists routes that docs/openapi.yaml does not have"


def test_figures_refuses_a_page_without_markers(tmp_path: Path) -> None:
    root = _copy_pages(tmp_path)
    (root / "docs" / "security.md").write_text("# Security model\n\nno markers\n", encoding="utf-8")
    readme_before = (root / "README.md").read_text(encoding="utf-8")
    with pytest.raises(MissingMarkers):
        figures.write(SECURITY, _faults(), root=root)
    assert (root / "README.md").read_text(encoding="utf-8") == readme_before
