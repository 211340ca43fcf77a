"""Fault-injection suite: Nylas faults through the local stack (one subprocess per flavour, started
on first use), AWS faults in-process (see test_aws_faults.py). Writes the run's figures."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.stack_process import StackUrls

from .support import FIGURES, fault_ready_stack


def pytest_configure(config: pytest.Config) -> None:
    # Powertools warns when an invocation emits no metric (the API routes emit none).
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    FIGURES.write()


@pytest.fixture(scope="package")
def v3_stack() -> Iterator[StackUrls]:
    with fault_ready_stack("v3") as urls:
        yield urls


@pytest.fixture(scope="package")
def beta_stack() -> Iterator[StackUrls]:
    with fault_ready_stack("beta") as urls:
        yield urls


def api_client(stack: StackUrls) -> httpx.Client:
    return httpx.Client(
        base_url=stack.gateway, headers={"authorization": f"Bearer {stack.api_key}"}, timeout=15.0
    )
