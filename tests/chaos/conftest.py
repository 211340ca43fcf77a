"""The fault campaign's stack (v3, the flavour with Nylas notifications; the sweeper on demand only, so
that every sweep is a step of the sequence) and its figures (`test-results/figures-chaos.json`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack_process import StackUrls, running_stack

ROOT = Path(__file__).resolve().parents[2]
FIGURES_PATH = ROOT / "test-results" / "figures-chaos.json"


class CampaignFigures:
    """What the campaign did, written once at session end (tools/figures.py renders it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sequences = 0
        self.steps = 0
        self.steps_by_rule: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.checks: dict[str, int] = {}
        self.failed_sequences = 0
        self.runs: list[dict[str, Any]] = []

    def sequence(
        self, steps: dict[str, int], faults: dict[str, int], checks: dict[str, int], ok: bool
    ) -> None:
        with self._lock:
            self.sequences += 1
            self.steps += sum(steps.values())
            for table, add in ((self.steps_by_rule, steps), (self.faults, faults), (self.checks, checks)):
                for key, value in add.items():
                    table[key] = table.get(key, 0) + value
            self.failed_sequences += 0 if ok else 1

    def run(self, **fields: Any) -> None:
        with self._lock:
            self.runs.append(fields)

    def write(self) -> None:
        with self._lock:
            if not self.sequences:
                return
            data = {
                "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sequences": self.sequences,
                "steps": self.steps,
                "steps_by_rule": dict(sorted(self.steps_by_rule.items())),
                "faults_injected": sum(self.faults.values()),
                "faults_by_kind": dict(sorted(self.faults.items())),
                "invariants_checked": sum(self.checks.values()),
                "checks_by_invariant": dict(sorted(self.checks.items())),
                "sequences_violating": self.failed_sequences,
                "runs": self.runs,
            }
            FIGURES_PATH.parent.mkdir(exist_ok=True)
            FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


FIGURES = CampaignFigures()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    FIGURES.write()


@pytest.fixture(scope="package")
def chaos_stack() -> Iterator[StackUrls]:
    env = {"TC_SCHEDULE_MAX_SECONDS": "0", "NYLAS_READ_TIMEOUT_MS": "500"}
    with running_stack("v3", env=env) as urls:
        yield urls
