"""A person's click-through in a real browser: Debian's Chromium driven by Playwright.

Demo page (plays the SaaS app) → teams-connect → Nylas emulator consent page → back to the demo, for
both decisions and both Nylas flavours.

The v3 "allow" run also takes the README's pictures of the flow (docs/img/connect.png, consent.png,
connected.png), so they always show what the code does. The test stacks listen on free ports; the
pictures show the API at `make run`'s fixed address instead, as a reader will see it.
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
DOCS_IMAGES = ROOT / "docs" / "img"
MAKE_RUN_API = "http://127.0.0.1:3000"
DOCS_FLAVOUR = "v3"
DOCS_VIEWPORT = {"width": 720, "height": 480}


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
    context = chromium.new_context(viewport=DOCS_VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def docs_picture(page: Page, stack: StackUrls, name: str) -> None:
    """Write docs/img/<name>.png (only when the picture changed), with the test stack's API address
    shown as `make run`'s."""
    page.evaluate(
        """([actual, shown]) => {
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                node.nodeValue = node.nodeValue.split(actual).join(shown);
            }
            for (const input of document.querySelectorAll("input")) {
                input.value = input.value.split(actual).join(shown);
            }
        }""",
        [stack.gateway, MAKE_RUN_API],
    )
    png = page.screenshot(full_page=True, animations="disabled", caret="hide")
    target = DOCS_IMAGES / f"{name}.png"
    if not target.is_file() or target.read_bytes() != png:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)


def connect(page: Page, stack: StackUrls, user_id: str, *, pictures: bool = False) -> None:
    page.goto(stack.demo + "/")
    page.fill("#user-id", user_id)
    if pictures:
        docs_picture(page, stack, "connect")
    page.click("#connect")
    page.wait_for_url(f"{stack.emulator}/**")


def test_allow_connects_the_mailbox(page: Page, stack: StackUrls) -> None:
    pictures = stack.flavour == DOCS_FLAVOUR
    # Fixed names in the pictures' run (each flavour has its own fresh stack), unique ones otherwise.
    user_id, email = (
        ("user-42", "ada@contoso.example")
        if pictures
        else (f"e2e-{uuid.uuid4().hex[:8]}", f"e2e-{uuid.uuid4().hex[:8]}@contoso.example")
    )
    connect(page, stack, user_id, pictures=pictures)
    page.fill("input[name=email]", email)
    if pictures:
        docs_picture(page, stack, "consent")
    page.click("button[name=decision][value=allow]")
    page.wait_for_url(f"{stack.demo}/return**")
    assert "status=connected" in page.url
    for secret in ("code=", "state=", "grant_id="):
        assert secret not in page.url
    expect(page.locator("#mailbox")).to_have_text(email)
    if pictures:
        docs_picture(page, stack, "connected")
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
