from __future__ import annotations

import pytest

from tests.adversarial import harness
from tests.adversarial.fixtures import browser, emulator, guard, http, other_browser, stack

__all__ = ["browser", "emulator", "guard", "http", "other_browser", "stack"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    harness.session_finish()
