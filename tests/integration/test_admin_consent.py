"""Admin consent through the local HTTP stack (gateway → real handlers → moto + the emulator playing
Nylas and Microsoft Entra). The refusal runs once per Nylas flavour; the admin-consent flow itself is
flavour-independent, and runs in both stacks too (cheap, and it proves the routes exist in both)."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.support.flow_client import Browser, parse_consent_form, query_of
from tests.support.stack_process import StackUrls


def org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}.example"


def set_policy(stack: StackUrls, domain: str, policy: str) -> str:
    answer = httpx.post(
        f"{stack.emulator}/_emulator/tenants", json={"domain": domain, "user_consent": policy}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["tenant_id"])


def tenants(stack: StackUrls) -> dict[str, dict[str, Any]]:
    listed = httpx.get(f"{stack.emulator}/_emulator/tenants", timeout=10).json()["tenants"]
    return {t["domain"]: t for t in listed}


def refused(browser: Browser, user_id: str, email: str, decision: str) -> httpx.Response:
    """A connect flow whose user chooses Allow and then `decision` on "Need admin approval"."""
    session = browser.create_session(user_id)
    started = browser.start(session["connect_url"])
    assert started.status_code == 302
    page_url, page = browser.to_consent_page(started.headers["location"])
    form = parse_consent_form(page_url, page.text)
    approval = browser.http.post(form.url, data={**form.fields, "email": email, "decision": "allow"})
    assert approval.status_code == 200, approval.text
    assert "Need admin approval" in approval.text
    approval_form = parse_consent_form(
        form.url, approval.text.replace('name="justification"', 'name="email"')
    )
    back = browser.http.post(approval_form.url, data={"id": approval_form.fields["id"], "decision": decision})
    assert back.status_code == 302, back.text
    return browser.http.get(urljoin(approval_form.url, back.headers["location"]))


def events_of(
    stack: StackUrls, detail_type: str, predicate: Any, timeout: float = 10.0
) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    while True:
        found = [
            e["detail"]
            for e in httpx.get(f"{stack.demo}/events", timeout=10).json()["events"]
            if e["detail_type"] == detail_type and predicate(e["detail"])
        ]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.1)


def admin_link(api: httpx.Client, stack: StackUrls, **body: Any) -> dict[str, str]:
    answer = api.post("/v1/admin-consents", json={"return_to": f"{stack.demo}/return?who=it", **body})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def approve(admin: Browser, consent_url: str, email: str, decision: str = "accept") -> httpx.Response:
    """The administrator follows the link, answers Microsoft's page, comes back to the callback."""
    started = admin.http.get(consent_url)
    assert started.status_code == 302, started.text
    page = admin.http.get(started.headers["location"])
    assert page.status_code == 200, page.text
    form = parse_consent_form(str(page.url), page.text)
    answer = admin.http.post(form.url, data={**form.fields, "email": email, "decision": decision})
    assert answer.status_code == 302, answer.text
    return admin.http.get(answer.headers["location"])


@pytest.mark.parametrize("decision", ["request_approval", "back"])
def test_need_admin_approval_ends_with_admin_consent_required(
    stack: StackUrls, browser: Browser, api: httpx.Client, decision: str
) -> None:
    domain = org()
    set_policy(stack, domain, "admin_only")
    user = f"u-{uuid.uuid4().hex[:8]}"
    final = refused(browser, user, f"max@{domain}", decision)
    assert final.status_code == 302
    assert query_of(final.headers["location"]) == {"status": ["error"], "error": ["admin_consent_required"]}
    assert api.get(f"/v1/grants/{user}").status_code == 404, "nothing is stored"
    failed = events_of(stack, "Connect Failed", lambda d: d["user_id"] == user)
    assert [d["error"] for d in failed] == ["admin_consent_required"]
    assert failed[0]["metadata"] == {}


def test_a_users_own_deny_stays_access_denied(stack: StackUrls, browser: Browser) -> None:
    domain = org()
    set_policy(stack, domain, "admin_only")
    result = browser.run(f"u-{uuid.uuid4().hex[:8]}", email=f"max@{domain}", decision="deny")
    assert query_of(result.location)["error"] == ["access_denied"]


def test_admin_consent_end_to_end(
    stack: StackUrls, browser: Browser, other_browser: Browser, api: httpx.Client
) -> None:
    domain = org()
    tenant_id = set_policy(stack, domain, "admin_only")
    link = admin_link(api, stack, tenant=domain)
    assert link["consent_url"] == f"{stack.gateway}/connect/admin-consent?consent={link['consent_id']}"
    assert link["expires_at"].endswith("Z")
    assert api.get(f"/v1/tenants/{tenant_id}").status_code == 404

    started = other_browser.http.get(link["consent_url"])
    assert started.status_code == 302
    location = urlsplit(started.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == stack.emulator
    assert location.path == f"/{tenant_id}/v2.0/adminconsent", "the link's own tenant, never common"
    query = query_of(started.headers["location"])
    assert query["scope"] == ["https://graph.microsoft.com/.default"]
    assert query["redirect_uri"] == [f"{stack.gateway}/connect/admin-consent/callback"]
    assert query["client_id"][0]
    cookie = started.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie

    page = other_browser.http.get(started.headers["location"])
    form = parse_consent_form(str(page.url), page.text)
    answer = other_browser.http.post(
        form.url, data={**form.fields, "email": f"it@{domain}", "decision": "accept"}
    )
    final = other_browser.http.get(answer.headers["location"])
    assert final.status_code == 302
    assert (
        final.headers["location"] == f"{stack.demo}/return?who=it&status=admin_consented&tenant={tenant_id}"
    )

    recorded = api.get(f"/v1/tenants/{tenant_id}")
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["consent_id"] == link["consent_id"]
    assert recorded.json()["admin_consented_at"].endswith("Z")
    assert api.get(f"/v1/tenants/{tenant_id.upper()}").status_code == 200
    announced = events_of(stack, "Tenant Admin Consented", lambda d: d["tenant_id"] == tenant_id)
    assert [d["consent_id"] for d in announced] == [link["consent_id"]]
    assert tenants(stack)[domain]["admin_consented"] is True

    # The callback replayed: its binding cookie was cleared with the success, so it is refused and
    # changes nothing.
    again = other_browser.http.get(answer.headers["location"])
    assert query_of(again.headers["location"])["error"] == ["browser_mismatch"]
    assert api.get(f"/v1/tenants/{tenant_id}").json() == recorded.json()
    # The link works once.
    reused = other_browser.http.get(link["consent_url"])
    assert query_of(reused.headers["location"])["error"] == ["session_used"]

    # The organisation's users now connect normally, and their grant names the tenant.
    user = f"u-{uuid.uuid4().hex[:8]}"
    result = browser.run(user, email=f"max@{domain}")
    assert query_of(result.location)["status"] == ["connected"]
    grant = api.get(f"/v1/grants/{user}").json()
    assert grant["tenant_id"] == tenant_id


def test_without_a_tenant_the_link_uses_organizations(
    stack: StackUrls, other_browser: Browser, api: httpx.Client
) -> None:
    domain = org()
    tenant_id = set_policy(stack, domain, "admin_only")
    link = admin_link(api, stack)
    final = approve(other_browser, link["consent_url"], f"boss@{domain}")
    assert query_of(final.headers["location"])["tenant"] == [tenant_id]


def test_an_administrator_who_cancels_ends_with_access_denied(
    stack: StackUrls, other_browser: Browser, api: httpx.Client
) -> None:
    link = admin_link(api, stack)
    final = approve(other_browser, link["consent_url"], "", decision="cancel")
    assert query_of(final.headers["location"]) == {
        "who": ["it"],
        "status": ["error"],
        "error": ["access_denied"],
    }
