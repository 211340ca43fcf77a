"""connect.js in a real browser (Debian's Chromium driven by Playwright): the demo's /popup page opens
the flow in a popup and shows the outcome in `#popup-result` as `connected` or `error:<code>`.

The browser here runs with Chromium's popup blocker ON (Playwright turns it off by default), so a
window opened without a click is really blocked. Covered: the happy path (both flavours, with the
docs' pictures), Deny, the user closing the popup, a blocked popup and its full-page fallback, an
opener served with `Cross-Origin-Opener-Policy: same-origin` (the result arrives through the server),
forged messages (another origin, another window, another session), two tabs that never resolve each
other's promise, and reconnect (the same mailbox; another mailbox → email_mismatch, the held grant
untouched and the other grant revoked; a user with no grant).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests.e2e.test_browser_flow import (
    CHROMIUM_FLAGS,
    DOCS_VIEWPORT,
    SCREENSHOTS,
    chromium_path,
    docs_picture,
)
from tests.support.stack_process import StackUrls, running_stack

pytestmark = pytest.mark.browser
RESULT = "#popup-result"


@pytest.fixture(scope="module")
def blocking_chromium() -> Iterator[Browser]:
    """Chromium with its popup blocker on: `window.open` outside a user gesture returns null."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(),
            args=CHROMIUM_FLAGS,
            ignore_default_args=["--disable-popup-blocking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stacks() -> Iterator[dict[str, StackUrls]]:
    """One local stack per flavour, started on first use and stopped at the end of the module."""
    started: dict[str, StackUrls] = {}
    closers: list[Any] = []

    class Lazy(dict[str, StackUrls]):
        def __missing__(self, flavour: str) -> StackUrls:
            manager = running_stack(flavour)
            urls = manager.__enter__()
            closers.append(manager)
            started[flavour] = urls
            self[flavour] = urls
            return urls

    lazy = Lazy()
    yield lazy
    for manager in reversed(closers):
        manager.__exit__(None, None, None)


@pytest.fixture
def context(blocking_chromium: Browser) -> Iterator[BrowserContext]:
    ctx = blocking_chromium.new_context(viewport=DOCS_VIEWPORT)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def new_user() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"e2e-popup-{tag}", f"popup-{tag}@contoso.example"


def open_demo(
    page: Page, stack: StackUrls, user_id: str, *, coop: bool = False, reconnect: bool = False
) -> None:
    query = f"?user_id={user_id}" + ("&coop=same-origin" if coop else "")
    page.goto(f"{stack.demo}/popup{query}")
    if reconnect:
        page.check("#reconnect")


def click_connect(page: Page, stack: StackUrls) -> Page:
    """Click the page's button (a real user gesture); the popup shows the emulator's consent page."""
    with page.expect_popup() as opened:
        page.click("#connect-popup")
    popup = opened.value
    popup.wait_for_url(f"{stack.emulator}/**")
    popup.wait_for_selector("input[name=email]")
    return popup


def wait_closed(popup: Page, opener: Page, timeout: float = 10.0) -> None:
    """The popup closes (it may already have: no event to wait for then). The opener's timer lets
    Playwright process the close event meanwhile."""
    deadline = time.monotonic() + timeout
    while not popup.is_closed():
        assert time.monotonic() < deadline, f"the popup stayed open at {popup.url}"
        opener.wait_for_timeout(100)


def decide(popup: Page, email: str, decision: str) -> None:
    popup.fill("input[name=email]", email)
    popup.click(f"button[name=decision][value={decision}]")


def grant_of(stack: StackUrls, user_id: str) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {stack.api_key}"}
    answer = httpx.get(f"{stack.gateway}/v1/grants/{user_id}", headers=auth, timeout=10)
    return {"status_code": answer.status_code, **(answer.json() if answer.content else {})}


def emulator_emails(stack: StackUrls) -> set[str]:
    state = httpx.get(f"{stack.emulator}/_emulator/state", timeout=10).json()["state"]
    return {str(g.get("email", "")).lower() for g in state["grants"]}


def connect_in_popup(page: Page, stack: StackUrls, user_id: str, email: str) -> None:
    open_demo(page, stack, user_id)
    popup = click_connect(page, stack)
    decide(popup, email, "allow")
    expect(page.locator(RESULT)).to_have_text("connected")


@pytest.mark.parametrize("flavour", ["v3", "beta"])
def test_popup_connects_and_the_page_gets_connected(
    page: Page, stacks: dict[str, StackUrls], flavour: str
) -> None:
    stack = stacks[flavour]
    pictures = flavour == "v3"
    # Fixed names in the pictures' run (so a picture changes only when the pages do).
    user_id, email = ("user-42", "ada@contoso.example") if pictures else new_user()
    open_demo(page, stack, user_id)
    popup = click_connect(page, stack)
    popup.fill("input[name=email]", email)
    if pictures:
        docs_picture(popup, stack, "popup-consent")
    popup.click("button[name=decision][value=allow]")
    expect(page.locator(RESULT)).to_have_text("connected")
    wait_closed(popup, page)  # the result page closes itself after posting
    grant = grant_of(stack, user_id)
    assert (grant["status_code"], grant["email"], grant["status"]) == (200, email, "valid")
    if pictures:
        docs_picture(page, stack, "popup-connected")


def test_deny_resolves_access_denied(page: Page, stacks: dict[str, StackUrls]) -> None:
    stack = stacks["v3"]
    user_id, email = new_user()
    open_demo(page, stack, user_id)
    popup = click_connect(page, stack)
    decide(popup, email, "deny")
    expect(page.locator(RESULT)).to_have_text("error:access_denied")
    assert grant_of(stack, user_id)["status_code"] == 404


def test_closing_the_popup_resolves_closed_after_the_server_confirms(
    page: Page, stacks: dict[str, StackUrls]
) -> None:
    stack = stacks["v3"]
    user_id, _ = new_user()
    open_demo(page, stack, user_id)
    popup = click_connect(page, stack)
    time.sleep(3.2)  # a person reads the consent page first (connect.js reads a window gone within
    # 3 s of opening as cut off by COOP, and then waits for the server's end of the flow)
    status_reads: list[str] = []
    page.on("request", lambda r: status_reads.append(r.url) if "/status" in r.url else None)
    popup.close()
    expect(page.locator(RESULT)).to_have_text("error:closed", timeout=10_000)
    assert any(re.search(r"/connect/v1/sessions/[A-Za-z0-9_-]{43}/status$", url) for url in status_reads)


def test_blocked_popup_answers_within_200_ms_and_the_redirect_fallback_connects(
    page: Page, stacks: dict[str, StackUrls]
) -> None:
    stack = stacks["v3"]
    user_id, email = new_user()
    open_demo(page, stack, user_id)
    # Without user activation Chromium's popup blocker refuses the window; connect.js must not hang.
    # (Playwright's evaluate() itself grants activation: wait in the page until it has expired.)
    elapsed = page.evaluate(
        """async () => {
            while (navigator.userActivation.isActive) await new Promise((r) => setTimeout(r, 100));
            const started = performance.now();
            const outcome = await TeamsConnect.open(new Promise(() => {}));
            const took = performance.now() - started;
            document.getElementById("connect-popup").click();  // the demo's button, no activation
            return [took, outcome];
        }"""
    )
    assert elapsed[1] == {"status": "error", "error": "popup_blocked"}
    assert elapsed[0] < 200
    expect(page.locator(RESULT)).to_have_text("error:popup_blocked")
    expect(page.locator("#connect-redirect")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "popup-blocked.png"))
    page.click("#connect-redirect")  # TeamsConnect.redirect: the same session, full page
    page.wait_for_url(f"{stack.emulator}/**")
    decide(page, email, "allow")
    page.wait_for_url(f"{stack.demo}/return/popup**")
    expect(page.locator("#landing-result")).to_have_text("connected")
    assert grant_of(stack, user_id)["email"] == email


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_opener_with_coop_gets_the_result_through_the_server(
    page: Page, stacks: dict[str, StackUrls], decision: str
) -> None:
    stack = stacks["v3"]
    user_id, email = new_user()
    open_demo(page, stack, user_id, coop=True)
    status_reads: list[str] = []
    page.on("request", lambda r: status_reads.append(r.url) if "/status" in r.url else None)
    popup = click_connect(page, stack)
    assert page.evaluate("() => window.opener === null")  # the demo's tab itself has no opener
    decide(popup, email, decision)
    expected = "connected" if decision == "allow" else "error:access_denied"
    expect(page.locator(RESULT)).to_have_text(expected)
    assert status_reads, "the result must have come from the status route"
    if decision == "allow":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "popup-coop-connected.png"))


def _forge_page(route: Route, script: str) -> None:
    route.fulfill(
        status=200,
        content_type="text/html",
        body=f"<!doctype html><title>forged</title><script>{script}</script>",
    )


def test_forged_messages_are_ignored(
    page: Page, context: BrowserContext, stacks: dict[str, StackUrls]
) -> None:
    """Right session from another origin (the consent page), from another window of the API's origin,
    and the API's origin + the opened window but another session: none resolves the promise; the
    real flow still ends as the server says (Deny → access_denied, not the forged `connected`)."""
    stack = stacks["v3"]
    user_id, email = new_user()
    open_demo(page, stack, user_id)
    other_session = "A" * 43
    # The first load of /connect/start in the popup is replaced by a page of the API's origin that
    # posts a result for ANOTHER session (right origin, right window), then the real flow goes on.
    forged_once: list[str] = []

    def start(route: Route) -> None:
        if forged_once:
            route.continue_()
            return
        forged_once.append(route.request.url)
        message = {"type": "teams-connect:result", "session": other_session, "status": "connected"}
        _forge_page(route, f"window.opener.postMessage({json.dumps(message)}, '*');")

    context.route(re.compile(re.escape(stack.gateway) + r"/connect/start\?session="), start)
    with page.expect_popup() as opened:
        page.click("#connect-popup")
    popup = opened.value
    deadline = time.monotonic() + 10
    while not forged_once:  # the window opens blank and is navigated when the session arrives
        assert time.monotonic() < deadline, "the popup never loaded the connect_url"
        page.wait_for_timeout(100)
    popup.wait_for_load_state()
    sid = parse_qs(urlsplit(forged_once[0]).query)["session"][0]
    page.wait_for_timeout(500)
    expect(page.locator(RESULT)).to_have_text("pending")

    # Another window of the API's origin, right session: wrong source.
    def other_window(route: Route) -> None:
        message = {"type": "teams-connect:result", "session": sid, "status": "connected"}
        _forge_page(route, f"window.opener.postMessage({json.dumps(message)}, '*');")

    context.route(f"{stack.gateway}/forged-window", other_window)
    page.evaluate(
        """(url) => {
            const button = document.createElement('button');
            button.id = 'forge-open';
            button.textContent = 'another window';
            button.addEventListener('click', () => window.open(url, 'other'));
            document.body.append(button);
        }""",
        f"{stack.gateway}/forged-window",
    )
    with page.expect_popup() as second:
        page.click("#forge-open")  # a real gesture: the popup blocker lets this window open
    second.value.wait_for_load_state()
    page.wait_for_timeout(500)
    expect(page.locator(RESULT)).to_have_text("pending")

    # The real flow, then from the consent page (emulator origin) a forged success for the right session.
    popup.goto(forged_once[0])
    popup.wait_for_selector("input[name=email]")
    message = {"type": "teams-connect:result", "session": sid, "status": "connected"}
    popup.evaluate("(m) => window.opener.postMessage(m, '*')", message)
    page.evaluate("(m) => window.postMessage(m, '*')", message)  # and the page's own origin
    page.wait_for_timeout(500)
    expect(page.locator(RESULT)).to_have_text("pending")
    decide(popup, email, "deny")
    expect(page.locator(RESULT)).to_have_text("error:access_denied")


def test_two_tabs_never_resolve_each_others_popup(
    context: BrowserContext, stacks: dict[str, StackUrls]
) -> None:
    stack = stacks["v3"]
    tab_a, tab_b = context.new_page(), context.new_page()
    (user_a, email_a), (user_b, email_b) = new_user(), new_user()
    open_demo(tab_a, stack, user_a)
    open_demo(tab_b, stack, user_b)
    popup_a = click_connect(tab_a, stack)
    popup_b = click_connect(tab_b, stack)
    decide(popup_b, email_b, "allow")
    expect(tab_b.locator(RESULT)).to_have_text("connected")
    time.sleep(1.0)
    expect(tab_a.locator(RESULT)).to_have_text("pending")
    decide(popup_a, email_a, "deny")
    expect(tab_a.locator(RESULT)).to_have_text("error:access_denied")
    expect(tab_b.locator(RESULT)).to_have_text("connected")
    assert grant_of(stack, user_a)["status_code"] == 404
    assert grant_of(stack, user_b)["email"] == email_b


@pytest.mark.parametrize("flavour", ["v3", "beta"])
def test_reconnect_is_pinned_to_the_held_mailbox(
    page: Page, stacks: dict[str, StackUrls], flavour: str
) -> None:
    stack = stacks[flavour]
    user_id, email = new_user()
    connect_in_popup(page, stack, user_id, email)
    held = grant_of(stack, user_id)

    # Another mailbox: email_mismatch; the held grant untouched, the other grant revoked at Nylas.
    other = f"other-{uuid.uuid4().hex[:8]}@contoso.example"
    open_demo(page, stack, user_id, reconnect=True)
    popup = click_connect(page, stack)
    decide(popup, other, "allow")
    expect(page.locator(RESULT)).to_have_text("error:email_mismatch")
    after = grant_of(stack, user_id)
    assert (after["grant_id"], after["email"], after["status"]) == (held["grant_id"], email, "valid")
    deadline = time.monotonic() + 10
    while other.lower() in emulator_emails(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert other.lower() not in emulator_emails(stack)
    assert email.lower() in emulator_emails(stack)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"popup-reconnect-mismatch-{flavour}.png"))

    # The same mailbox: connected, the same grant.
    open_demo(page, stack, user_id, reconnect=True)
    popup = click_connect(page, stack)
    decide(popup, email, "allow")
    expect(page.locator(RESULT)).to_have_text("connected")
    assert grant_of(stack, user_id)["grant_id"] == held["grant_id"]


def test_reconnect_without_a_grant_is_not_connected(page: Page, stacks: dict[str, StackUrls]) -> None:
    stack = stacks["v3"]
    user_id, _ = new_user()
    open_demo(page, stack, user_id, reconnect=True)
    with page.expect_popup() as opened:
        page.click("#connect-popup")
    # The page's backend gets 404 not_connected: connect.js closes the window it opened and rejects.
    wait_closed(opened.value, page)
    expect(page.locator(RESULT)).to_have_text("failed:not_connected")
