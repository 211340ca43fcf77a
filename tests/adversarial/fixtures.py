"""Fixtures shared by tests/adversarial, tests/properties and tests/logs (imported by their conftests)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.harness import Emulator, Guard, Started
from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls


class CheckedBrowser(Browser):
    """The integration suite's browser, with a client that checks every Location it receives."""

    def __init__(self, stack: StackUrls) -> None:
        super().__init__(stack)
        self.http.close()
        self.http = harness.client(stack)

    def begin(self, *, user_id: str | None = None, email: str | None = None, **extra: object) -> Started:
        """Create a session, start it here (cookie set), consent at the emulator; no callback yet."""
        user_id = user_id or harness.unique("u")
        email = email or harness.mailbox()
        session = self.create_session(user_id, **extra)
        started = self.start(session["connect_url"])
        assert started.status_code == 302, started.text
        cookies = list(harness.iter_set_cookies(started))
        assert len(cookies) == 1, cookies
        callback_url = self.consent(started.headers["location"], email=email, decision="allow")
        return Started(user_id, email, session["session_id"], callback_url, *cookies[0])


@pytest.fixture(scope="session", params=harness.FLAVOURS)
def stack(request: pytest.FixtureRequest) -> StackUrls:
    """The local stack of one flavour (shared by the hostile-input suites for the whole session)."""
    return harness.STACKS.get(str(request.param))


@pytest.fixture(scope="session")
def emulator(stack: StackUrls) -> Iterator[Emulator]:
    emu = Emulator(stack.emulator)
    yield emu
    emu.close()


@pytest.fixture
def guard(stack: StackUrls, emulator: Emulator) -> Guard:
    """Armed before the test's hostile request; call `guard.assert_untouched()` after it."""
    return Guard(stack, emulator)


@pytest.fixture(scope="session")
def http(stack: StackUrls) -> Iterator[httpx.Client]:
    with harness.client(stack, base_url=stack.gateway) as c:
        yield c


@pytest.fixture
def browser(stack: StackUrls) -> Iterator[CheckedBrowser]:
    b = CheckedBrowser(stack)
    yield b
    b.close()


@pytest.fixture
def other_browser(stack: StackUrls) -> Iterator[CheckedBrowser]:
    b = CheckedBrowser(stack)
    yield b
    b.close()
