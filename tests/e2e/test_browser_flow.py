"""A person's click-through in a real browser: Debian's Chromium driven by Playwright.

Demo page (plays the SaaS app) → teams-connect → Nylas emulator consent page → back to the demo, for
both decisions and both Nylas flavours.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.stack_process import ROOT, StackUrls, running_stack

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-results" / "screenshots"


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is required for the browser tests: apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module", params=["v3", "beta"])
def stack(request: pytest.FixtureRequest) -> Iterator[StackUrls]:
    with running_stack(request.param) as urls:
        yield urls


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def connect(page: Page, stack: StackUrls, user_id: str) -> None:
    page.goto(stack.demo + "/")
    page.fill("#user-id", user_id)
    page.click("#connect")
    page.wait_for_url(f"{stack.emulator}/**")


def test_allow_connects_the_mailbox(page: Page, stack: StackUrls) -> None:
    user_id, email = f"e2e-{uuid.uuid4().hex[:8]}", f"e2e-{uuid.uuid4().hex[:8]}@contoso.example"
    connect(page, stack, user_id)
    page.fill("input[name=email]", email)
    page.click("button[name=decision][value=allow]")
    page.wait_for_url(f"{stack.demo}/return**")
    assert "status=connected" in page.url
    for secret in ("code=", "state=", "grant_id="):
        assert secret not in page.url
    expect(page.locator("#mailbox")).to_have_text(email)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"connected-{stack.flavour}.png"))

    page.click("#disconnect")
    expect(page.locator("#result")).to_contain_text("Disconnected")


def test_deny_shows_access_denied(page: Page, stack: StackUrls) -> None:
    connect(page, stack, f"e2e-{uuid.uuid4().hex[:8]}")
    page.click("button[name=decision][value=deny]")
    page.wait_for_url(f"{stack.demo}/return**")
    assert "status=error" in page.url
    expect(page.locator("#error-code")).to_have_text("access_denied")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"denied-{stack.flavour}.png"))


def _allow(page: Page, stack: StackUrls, user_id: str, email: str) -> None:
    connect(page, stack, user_id)
    page.fill("input[name=email]", email)
    page.click("button[name=decision][value=allow]")
    page.wait_for_url(f"{stack.demo}/return**")
    expect(page.locator("#status")).to_have_text("valid")


def test_expiry_and_reconnection_show_on_the_demo_page(page: Page, stack: StackUrls) -> None:
    """Connect; expire the grant through the emulator's control API (Nylas then sends grant.expired);
    see `expired` from the API and `Grant Expired` live on the demo page; reconnect; see `valid` and
    `Grant Reconnected`. Beta has no webhooks: its users see Connected and Disconnected."""
    user_id, email = f"e2e-{uuid.uuid4().hex[:8]}", f"e2e-{uuid.uuid4().hex[:8]}@contoso.example"
    _allow(page, stack, user_id, email)
    auth = {"authorization": f"Bearer {stack.api_key}"}
    grant = httpx.get(f"{stack.gateway}/v1/grants/{user_id}", headers=auth, timeout=10).json()
    events = page.context.new_page()
    events.goto(stack.demo + "/events/live")
    mine = events.locator("#events li", has_text=user_id)
    expect(mine.first).to_contain_text("Grant Connected: valid")
    if stack.flavour == "beta":
        page.click("#disconnect")
        expect(page.locator("#result")).to_contain_text("Disconnected")
        expect(mine.nth(1)).to_contain_text("Grant Disconnected: disconnected")
        return

    time.sleep(1.1)  # Nylas's notification times are whole seconds
    control = f"{stack.emulator}/_emulator/grants/{grant['grant_id']}/status"
    assert httpx.post(control, json={"status": "invalid"}, timeout=10).status_code == 200
    expect(mine.nth(1)).to_contain_text("Grant Expired: expired")  # live: the page polls /events
    expired = httpx.get(f"{stack.gateway}/v1/grants/{user_id}", headers=auth, timeout=10).json()
    assert expired["status"] == "expired"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    events.screenshot(path=str(SCREENSHOTS / "grant-expired-events.png"))

    _allow(page, stack, user_id, email)  # reconnect: same mailbox, same grant
    expect(mine.nth(2)).to_contain_text("Grant Reconnected: valid")
    again = httpx.get(f"{stack.gateway}/v1/grants/{user_id}", headers=auth, timeout=10).json()
    assert (again["status"], again["grant_id"]) == ("valid", grant["grant_id"])
    events.screenshot(path=str(SCREENSHOTS / "grant-reconnected-events.png"))
