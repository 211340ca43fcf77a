"""Admin consent in a real browser (Debian's Chromium, Playwright): a user of an organisation that
allows no user consent is refused with `admin_consent_required`, the demo offers "Ask your
administrator" and shows the link, the administrator approves on the emulator's Microsoft page in
another browser, and the user then connects.

Takes the pictures of docs/admin-consent.md (docs/img/admin-*.png).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser_flow import DOCS_VIEWPORT, chromium, docs_picture
from tests.support.stack_process import StackUrls, running_stack

pytestmark = pytest.mark.browser
__all__ = ["chromium"]

DOMAIN = "northwind.example"


@pytest.fixture(scope="module")
def stack() -> Iterator[StackUrls]:
    with running_stack("v3") as urls:
        yield urls


def new_page(chromium: Browser) -> Page:
    context = chromium.new_context(viewport=DOCS_VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def test_from_need_admin_approval_to_a_connected_user(chromium: Browser, stack: StackUrls) -> None:
    policy = httpx.post(
        f"{stack.emulator}/_emulator/tenants",
        json={"domain": DOMAIN, "user_consent": "admin_only"},
        timeout=10,
    )
    assert policy.status_code == 200, policy.text
    tenant_id = policy.json()["tenant_id"]
    user = new_page(chromium)
    admin = new_page(chromium)
    try:
        # 1. The user connects and meets "Need admin approval".
        user.goto(stack.demo + "/")
        user.fill("#user-id", "user-7")
        user.click("#connect")
        user.wait_for_url(f"{stack.emulator}/**")
        user.fill("input[name=email]", f"lee@{DOMAIN}")
        user.click("button[name=decision][value=allow]")
        expect(user.locator("h1")).to_have_text("Need admin approval")
        docs_picture(user, stack, "admin-approval")
        user.click("button[name=decision][value=request_approval]")
        user.wait_for_url(f"{stack.demo}/return**")
        assert parse_qs(urlsplit(user.url).query)["error"] == ["admin_consent_required"]
        expect(user.locator("#error-code")).to_have_text("admin_consent_required")

        # 2. "Ask your administrator": the demo's backend creates the link and shows it.
        docs_picture(user, stack, "admin-consent-required")
        user.click("#admin-consent")
        link = user.locator("#admin-consent-url")
        expect(link).to_be_visible()
        consent_url = link.get_attribute("href")
        assert consent_url is not None
        assert consent_url.startswith(f"{stack.gateway}/connect/admin-consent?consent=")
        # The picture must not change from run to run: a fixed id and expiry stand in for this run's.
        user.evaluate(
            """([id, expires]) => {
                const link = document.getElementById("admin-consent-url");
                link.textContent = link.textContent.replace(/consent=[A-Za-z0-9_-]{43}/, "consent=" + id);
                document.getElementById("admin-consent-expires").textContent = expires;
            }""",
            ["x0Ppg3Yb1fRAZkcrDWnOgm5gJtVNl4aa1XSd6YFuJcM", "2031-05-08T09:00:00Z"],
        )
        docs_picture(user, stack, "admin-consent-link")

        # 3. The administrator follows it in their own browser and accepts on Microsoft's page.
        admin.goto(consent_url)
        admin.wait_for_url(f"{stack.emulator}/organizations/v2.0/adminconsent**")
        admin.fill("input[name=email]", f"it@{DOMAIN}")
        docs_picture(admin, stack, "admin-consent-page")
        # The picture shows `make run`'s address, also in the form's hidden redirect_uri: load the
        # page again (a GET of Microsoft's page, nothing consumed) before answering it.
        admin.reload()
        admin.fill("input[name=email]", f"it@{DOMAIN}")
        admin.click("button[name=decision][value=accept]")
        admin.wait_for_url(f"{stack.demo}/return**")
        query = parse_qs(urlsplit(admin.url).query)
        assert query["status"] == ["admin_consented"]
        assert query["tenant"] == [tenant_id]
        expect(admin.locator("#tenant")).to_have_text(tenant_id)
        tenants = httpx.get(f"{stack.emulator}/_emulator/tenants", timeout=10).json()["tenants"]
        assert {t["domain"]: t["admin_consented"] for t in tenants}[DOMAIN] is True

        # 4. The user connects again, now normally.
        user.fill("#user-id", "user-7")
        user.click("#connect")
        user.wait_for_url(f"{stack.emulator}/**")
        user.fill("input[name=email]", f"lee@{DOMAIN}")
        user.click("button[name=decision][value=allow]")
        user.wait_for_url(f"{stack.demo}/return**")
        assert "status=connected" in user.url
        expect(user.locator("#mailbox")).to_have_text(f"lee@{DOMAIN}")
        grant = httpx.get(
            f"{stack.gateway}/v1/grants/user-7",
            headers={"authorization": f"Bearer {stack.api_key}"},
            timeout=10,
        ).json()
        assert grant["tenant_id"] == tenant_id
    finally:
        user.context.close()
        admin.context.close()
