"""The emulator's Microsoft Entra side: tenants and policies, "Need admin approval" in both flavours,
the v2 admin-consent page, the client-credentials token endpoint and the discovery documents."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from tests.emulator.conftest import AZURE, CALLBACK, Emu, query_of

ADMIN_REDIRECT = "http://127.0.0.1:3000/connect/admin-consent/callback"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def set_policy(emu: Emu, domain: str, policy: str) -> dict[str, object]:
    r = emu.anon.post("/_emulator/tenants", json={"domain": domain, "user_consent": policy})
    assert r.status_code == 200, r.text
    body = dict(r.json())
    body.pop("request_id")
    return body


def approval_page(emu: Emu, consent_url: str, email: str) -> httpx.Response:
    r = emu.consent(consent_url, email=email)
    assert r.status_code == 200, r.text
    assert "Need admin approval" in r.text
    return r


def decide(emu: Emu, page: httpx.Response, decision: str) -> httpx.Response:
    login_id = re.search(r'name="id" value="([^"]+)"', page.text)
    assert login_id is not None
    return emu.anon.post("/emulator/approval", data={"id": login_id.group(1), "decision": decision})


def admin_consent(
    emu: Emu, tenant: str, *, email: str | None, decision: str = "accept", **params: str
) -> httpx.Response:
    query = {
        "client_id": AZURE["client_id"],
        "scope": "https://graph.microsoft.com/.default",
        "redirect_uri": ADMIN_REDIRECT,
        "state": "st-1",
        **params,
    }
    page = emu.anon.get(f"/{tenant}/v2.0/adminconsent", params=query)
    assert page.status_code == 200, page.text
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page.text))
    assert form == query
    data = {**query, "decision": decision}
    if email is not None:
        data["email"] = email
    return emu.anon.post(f"/{tenant}/v2.0/adminconsent", data=data)


def client_credentials(emu: Emu, tenant: str, **overrides: str) -> httpx.Response:
    body = {
        "grant_type": "client_credentials",
        "client_id": AZURE["client_id"],
        "client_secret": AZURE["client_secret"],
        "scope": "https://graph.microsoft.com/.default",
        **overrides,
    }
    return emu.anon.post(f"/{tenant}/oauth2/v2.0/token", data=body)


def test_tenants_control_api_sets_and_lists_policies(emu: Emu) -> None:
    body = set_policy(emu, "Contoso.com", "admin_only")
    assert body["domain"] == "contoso.com"
    assert body["user_consent"] == "admin_only"
    assert body["admin_consented"] is False
    assert GUID.match(str(body["tenant_id"]))
    again = set_policy(emu, "contoso.com", "allowed")
    assert again["tenant_id"] == body["tenant_id"], "a domain keeps its tenant id"
    tenants = emu.anon.get("/_emulator/tenants").json()["tenants"]
    assert tenants == [{**body, "user_consent": "allowed"}]


@pytest.mark.parametrize(
    "body",
    [
        {"domain": "contoso.com", "user_consent": "maybe"},
        {"domain": "not a domain", "user_consent": "allowed"},
        {"domain": "outlook.com", "user_consent": "admin_only"},
        {"user_consent": "allowed"},
        {"domain": "contoso.com"},
    ],
)
def test_tenants_control_api_refuses_bad_input(emu: Emu, body: dict[str, str]) -> None:
    assert emu.anon.post("/_emulator/tenants", json=body).status_code == 400
    assert emu.anon.get("/_emulator/tenants").json()["tenants"] == []


def test_unknown_domains_are_allowed(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.consent(emu.start(), email="max@fabrikam.com")
    assert r.status_code == 302
    assert "code" in query_of(r.headers["location"])


@pytest.mark.parametrize(
    ("decision", "aadsts"), [("request_approval", "AADSTS65004"), ("back", "AADSTS90094")]
)
def test_admin_only_tenant_gets_need_admin_approval_v3(emu: Emu, decision: str, aadsts: str) -> None:
    emu.setup_v3()
    set_policy(emu, "contoso.com", "admin_only")
    page = approval_page(emu, emu.start(state="s-9"), "max@contoso.com")
    assert 'value="request_approval"' in page.text
    assert 'value="back"' in page.text
    r = decide(emu, page, decision)
    assert r.status_code == 302
    assert r.headers["location"].startswith(CALLBACK + "?")
    query = query_of(r.headers["location"])
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith(aadsts + ":")
    assert query["state"] == "s-9"
    assert "code" not in query
    assert emu.api.get("/v3/grants").json()["data"] == [], "a refusal creates no grant"
    assert decide(emu, page, decision).status_code == 400, "the decision is single-use"


def test_admin_only_tenant_gets_need_admin_approval_beta(emu: Emu) -> None:
    emu.setup_beta()
    set_policy(emu, "contoso.com", "admin_only")
    login = emu.beta_login(state="b-1")
    page = approval_page(emu, login["url"], "max@contoso.com")
    r = decide(emu, page, "request_approval")
    query = query_of(r.headers["location"])
    assert query["success"] == "false"
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS65004:")
    assert query["state"] == "b-1"


def test_deny_on_an_admin_only_tenant_stays_a_plain_deny(emu: Emu) -> None:
    emu.setup_v3()
    set_policy(emu, "contoso.com", "admin_only")
    r = emu.consent(emu.start(), email="max@contoso.com", decision="deny")
    query = query_of(r.headers["location"])
    assert query["error"] == "access_denied"
    assert "AADSTS9009" not in query["error_description"]
    assert "AADSTS65001" not in query["error_description"]


def test_approval_form_refuses_unknown_login_and_bad_decision(emu: Emu) -> None:
    emu.setup_v3()
    set_policy(emu, "contoso.com", "admin_only")
    assert emu.anon.post("/emulator/approval", data={"id": "nope", "decision": "back"}).status_code == 400
    page = approval_page(emu, emu.start(), "max@contoso.com")
    assert decide(emu, page, "sure").status_code == 400
    assert decide(emu, page, "back").status_code == 302, "a bad decision leaves the page usable"
    # A login that never reached the approval page cannot be decided there.
    consent_url = emu.start()
    login_id = re.search(r"id=([^&]+)", consent_url)
    assert login_id is not None
    r = emu.anon.post("/emulator/approval", data={"id": login_id.group(1), "decision": "back"})
    assert r.status_code == 400


def test_admin_consent_then_users_connect_and_the_token_endpoint_agrees(emu: Emu) -> None:
    emu.setup_v3()
    tenant = set_policy(emu, "contoso.com", "admin_only")
    assert client_credentials(emu, "contoso.com").json()["error_codes"] == [700016]
    r = admin_consent(emu, "organizations", email="it@contoso.com")
    assert r.status_code == 302
    assert r.headers["location"].startswith(ADMIN_REDIRECT + "?")
    query = query_of(r.headers["location"])
    assert query == {
        "admin_consent": "True",
        "tenant": tenant["tenant_id"],
        "scope": "https://graph.microsoft.com/.default",
        "state": "st-1",
    }
    listed = emu.anon.get("/_emulator/tenants").json()["tenants"]
    assert listed[0]["admin_consented"] is True
    # The app now exists in the tenant: client credentials work, by id and by domain.
    for ref in (str(tenant["tenant_id"]), "contoso.com"):
        token = client_credentials(emu, ref)
        assert token.status_code == 200, token.text
        assert token.json()["token_type"] == "Bearer"
    # ...and the tenant's users connect normally.
    r = emu.consent(emu.start(), email="max@contoso.com")
    assert r.status_code == 302
    assert "code" in query_of(r.headers["location"])


def test_admin_consent_for_a_named_tenant_refuses_an_admin_of_another(emu: Emu) -> None:
    emu.setup_v3()
    set_policy(emu, "contoso.com", "admin_only")
    r = admin_consent(emu, "contoso.com", email="it@fabrikam.com")
    assert r.status_code == 400
    assert "AADSTS50020" in r.text
    assert emu.anon.get("/_emulator/tenants").json()["tenants"][0]["admin_consented"] is False


def test_admin_cancel_redirects_with_an_error(emu: Emu) -> None:
    emu.setup_v3()
    r = admin_consent(emu, "organizations", email=None, decision="cancel")
    query = query_of(r.headers["location"])
    assert query["error"] == "access_denied"
    assert query["state"] == "st-1"
    assert "admin_consent" not in query
    assert "tenant" not in query


@pytest.mark.parametrize(
    ("tenant", "params", "needle"),
    [
        ("common", {}, "common"),
        ("consumers", {}, "common"),
        ("organizations", {"client_id": "someone-else"}, "AADSTS700016"),
        ("organizations", {"redirect_uri": "javascript:alert(1)"}, "AADSTS50011"),
        ("organizations", {"scope": ""}, "scope"),
        ("00000000-0000-0000-0000-000000000000", {}, "AADSTS90002"),
    ],
)
def test_admin_consent_refusals_are_pages_not_redirects(
    emu: Emu, tenant: str, params: dict[str, str], needle: str
) -> None:
    emu.setup_v3()
    query = {
        "client_id": AZURE["client_id"],
        "scope": "https://graph.microsoft.com/.default",
        "redirect_uri": ADMIN_REDIRECT,
        "state": "x",
        **params,
    }
    r = emu.anon.get(f"/{tenant}/v2.0/adminconsent", params=query)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert needle in r.text


def test_admin_consent_escapes_what_it_shows(emu: Emu) -> None:
    emu.setup_v3()
    page = emu.anon.get(
        "/organizations/v2.0/adminconsent",
        params={
            "client_id": AZURE["client_id"],
            "scope": "<script>x</script>",
            "redirect_uri": ADMIN_REDIRECT,
            "state": '"><b>',
        },
    )
    assert page.status_code == 200
    assert "<script>x</script>" not in page.text
    assert '"><b>' not in page.text


def test_token_endpoint_refusals(emu: Emu) -> None:
    emu.setup_v3()
    set_policy(emu, "contoso.com", "allowed")
    assert client_credentials(emu, "contoso.com", client_secret="wrong").status_code == 401
    assert client_credentials(emu, "contoso.com", grant_type="password").json()["error"] == (
        "unsupported_grant_type"
    )
    assert client_credentials(emu, "common").status_code == 400
    unknown = client_credentials(emu, "11111111-1111-1111-1111-111111111111")
    assert unknown.json()["error_codes"] == [90002]
    # An allowed tenant has the app once one of its users consented.
    assert client_credentials(emu, "contoso.com").json()["error"] == "unauthorized_client"
    emu.connect("max@contoso.com")
    assert client_credentials(emu, "contoso.com").status_code == 200


def test_discovery_resolves_a_domain_to_its_tenant_id(emu: Emu) -> None:
    tenant = set_policy(emu, "contoso.com", "admin_only")
    doc = emu.anon.get("/contoso.com/v2.0/.well-known/openid-configuration")
    assert doc.status_code == 200
    tid = tenant["tenant_id"]
    assert doc.json()["issuer"] == f"{emu.url}/{tid}/v2.0"
    assert doc.json()["token_endpoint"] == f"{emu.url}/{tid}/oauth2/v2.0/token"
    by_id = emu.anon.get(f"/{tid}/v2.0/.well-known/openid-configuration")
    assert by_id.json()["issuer"] == doc.json()["issuer"]
    missing = emu.anon.get("/22222222-2222-2222-2222-222222222222/v2.0/.well-known/openid-configuration")
    assert missing.status_code == 400
    assert missing.json()["error_codes"] == [90002]


def test_the_token_endpoint_can_be_faulted(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.fault(method="POST", path="/{tenant}/oauth2/v2.0/token", status=503, count=1)
    assert r.status_code == 201, r.text
    assert client_credentials(emu, "contoso.com").status_code == 503
    assert client_credentials(emu, "contoso.com").status_code == 400  # the fault was used up


def test_state_dump_shows_tenants(emu: Emu) -> None:
    set_policy(emu, "contoso.com", "admin_only")
    state = emu.anon.get("/_emulator/state").json()["state"]
    assert [t["domain"] for t in state["tenants"]] == ["contoso.com"]
    assert urljoin(emu.url, "/") == emu.url + "/"
