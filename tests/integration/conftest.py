from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.flow_client import Browser
from tests.support.stack_process import StackUrls, running_stack

FLAVOURS = ("v3", "beta")


@pytest.fixture(scope="session", params=FLAVOURS)
def stack(request: pytest.FixtureRequest) -> Iterator[StackUrls]:
    """The whole local system (`make run`) for one Nylas flavour; every test runs once per flavour."""
    with running_stack(request.param) as urls:
        yield urls


@pytest.fixture
def browser(stack: StackUrls) -> Iterator[Browser]:
    with Browser(stack) as b:
        yield b


@pytest.fixture
def other_browser(stack: StackUrls) -> Iterator[Browser]:
    with Browser(stack) as b:
        yield b


@pytest.fixture
def api(stack: StackUrls) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.gateway, headers={"authorization": f"Bearer {stack.api_key}"}, timeout=15.0
    ) as client:
        yield client


class Emulator:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def calls(self) -> dict[str, int]:
        return dict(self.http.get("/_emulator/calls").json()["calls"])

    def total_calls(self) -> int:
        return sum(self.calls().values())

    def fault(self, method: str, path: str, *, status: int = 503, count: int = 1, **extra: object) -> None:
        body = {"method": method, "path": path, "status": status, "count": count, **extra}
        response = self.http.post("/_emulator/faults", json=body)
        assert response.status_code < 300, response.text

    def clear_faults(self) -> None:
        self.http.delete("/_emulator/faults")

    def state(self) -> dict[str, object]:
        return dict(self.http.get("/_emulator/state").json())


@pytest.fixture
def emulator(stack: StackUrls) -> Iterator[Emulator]:
    emu = Emulator(stack.emulator)
    yield emu
    emu.clear_faults()
    emu.http.close()
