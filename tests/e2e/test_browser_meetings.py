"""A person connects Teams and schedules a meeting from the demo page in a real browser (Debian's
Chromium driven by Playwright), then sees the Teams join link; a personal Microsoft account sees
`teams_unavailable` instead."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser_flow import SCREENSHOTS, chromium, connect, page
from tests.support.stack_process import StackUrls, running_stack

pytestmark = pytest.mark.browser
__all__ = ["chromium", "page"]  # the Chromium and page fixtures of the connect flow's suite


@pytest.fixture(scope="module")
def stack() -> Iterator[StackUrls]:
    with running_stack("v3") as urls:
        yield urls


def _connect_as(page: Page, stack: StackUrls, email: str) -> None:
    connect(page, stack, f"e2e-{uuid.uuid4().hex[:8]}")
    page.fill("input[name=email]", email)
    page.click("button[name=decision][value=allow]")
    page.wait_for_url(f"{stack.demo}/return**")
    expect(page.locator("#mailbox")).to_have_text(email)


def test_connect_schedule_and_see_the_join_link(page: Page, stack: StackUrls) -> None:
    _connect_as(page, stack, f"e2e-{uuid.uuid4().hex[:8]}@contoso.example")
    page.fill("#meeting-title", "Quarterly review")
    page.click("#schedule")
    expect(page.locator("#result")).to_contain_text("Meeting scheduled")
    expect(page.locator("#meeting-title-result")).to_have_text("Quarterly review")
    link = page.locator("#join-url")
    expect(link).to_have_attribute("href", re.compile(r"^https://teams\.microsoft\.com/l/meetup-join/"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "meeting-scheduled-v3.png"))


def test_a_personal_account_is_told_teams_is_unavailable(page: Page, stack: StackUrls) -> None:
    _connect_as(page, stack, f"e2e-{uuid.uuid4().hex[:8]}@outlook.com")
    page.click("#schedule")
    expect(page.locator("#error-code")).to_have_text("teams_unavailable")
    expect(page.locator("#join-url")).to_have_count(0)
