"""The consent page shared by both flavours: form shape, escaping, allow/deny, single use, bad input."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from tests.emulator.conftest import CALLBACK, Emu, query_of


def test_the_page_is_a_labelled_form_with_email_and_two_decisions(emu: Emu) -> None:
    emu.setup_v3()
    page = emu.anon.get(emu.start(login_hint="max@contoso.com"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Nylas emulator" in page.text
    assert '<form method="post"' in page.text
    assert 'name="email" value="max@contoso.com"' in page.text
    assert re.search(r'<button type="submit" name="decision" value="allow"', page.text)
    assert re.search(r'<button type="submit" name="decision" value="deny"', page.text)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_allow_redirects_with_code_and_state(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.consent(emu.start(state="abc.def"), email="max@contoso.com")
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(CALLBACK + "?")
    query = query_of(location)
    assert set(query) == {"code", "state"}
    assert query["state"] == "abc.def"


def test_state_is_omitted_when_none_was_sent(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.consent(emu.start(state=None), email="max@contoso.com")
    assert set(query_of(r.headers["location"])) == {"code"}


def test_deny_redirects_with_access_denied(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.consent(emu.start(state="s1"), email="max@contoso.com", decision="deny")
    assert r.status_code == 302
    query = query_of(r.headers["location"])
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert query["state"] == "s1"
    assert "code" not in query
    assert emu.api.get("/v3/grants").json()["data"] == [], "deny creates no grant"


def test_everything_shown_is_escaped(emu: Emu) -> None:
    emu.setup_v3()
    emu.api.patch("/v3/connectors/microsoft", json={"scope": ["<script>alert(1)</script>", 'a"b']})
    page = emu.anon.get(emu.start(login_hint="o'neil@contoso.com"))
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "a&quot;b" in page.text
    assert "o&#x27;neil@contoso.com" in page.text


def test_login_id_is_single_use(emu: Emu) -> None:
    emu.setup_v3()
    consent_url = emu.start()
    page = emu.anon.get(consent_url)
    login_id = re.search(r'name="id" value="([^"]+)"', page.text)
    assert login_id is not None
    form = {"id": login_id.group(1), "email": "a@contoso.com", "decision": "allow"}
    assert emu.anon.post("/emulator/consent", data=form).status_code == 302
    again = emu.anon.post("/emulator/consent", data=form)
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("text/html")
    assert emu.anon.get(consent_url).status_code == 400


def test_unknown_and_expired_login_ids_are_refused(emu: Emu) -> None:
    assert emu.anon.get("/emulator/consent", params={"id": "nope"}).status_code == 400
    assert emu.anon.get("/emulator/consent").status_code == 400
    emu.setup_v3()
    consent_url = emu.start()
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 3600})
    assert emu.anon.get(consent_url).status_code == 400


def test_bad_email_is_a_400_page_and_the_login_stays_usable(emu: Emu) -> None:
    emu.setup_v3()
    consent_url = emu.start()
    for bad in ("", "no-at-sign", "a@b", "a b@contoso.com", "x" * 310 + "@contoso.com", "<b>@x.com"):
        r = emu.consent(consent_url, email=bad)
        assert r.status_code == 400, bad
        assert "Enter a valid email address" in r.text
        assert "<b>@x.com" not in r.text
    assert emu.consent(consent_url, email="fine@contoso.com").status_code == 302


def test_bad_decision_and_wrong_content_type(emu: Emu) -> None:
    emu.setup_v3()
    consent_url = emu.start()
    assert emu.consent(consent_url, email="a@contoso.com", decision="maybe").status_code == 400
    login_id = consent_url.split("id=")[1]
    r = emu.anon.post(
        urljoin(emu.url, "/emulator/consent"), json={"id": login_id, "email": "a@x.com", "decision": "allow"}
    )
    assert r.status_code == 415
    assert emu.consent(consent_url, email="a@contoso.com").status_code == 302


def test_a_v3_login_id_is_not_a_beta_login_id(emu: Emu) -> None:
    emu.setup_v3()
    login_id = emu.start().split("id=")[1]
    assert emu.anon.get("/connect/login", params={"id": login_id}).status_code == 400
