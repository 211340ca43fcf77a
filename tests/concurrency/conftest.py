"""Concurrency suite: the local stack of both flavours (one subprocess each, alive together so the
two flavours' loads can run side by side on two cores)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.faults.support import FIGURES
from tests.support.stack_process import StackUrls, pause_webhooks, running_stack


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    FIGURES.write()


@pytest.fixture(scope="package")
def stacks() -> Iterator[dict[str, StackUrls]]:
    with ExitStack() as stack:
        stacks = {flavour: stack.enter_context(running_stack(flavour)) for flavour in ("v3", "beta")}
        # The load is the connect flow's: grant notifications (one per consent) would double the work
        # of the one-event-at-a-time local gateway; the webhook route has its own suites.
        pause_webhooks(stacks["v3"].emulator)
        yield stacks
