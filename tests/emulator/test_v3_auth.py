"""v3 hosted OAuth: /v3/connect/auth, the consent redirect, /v3/connect/token, revoke and tokeninfo."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.emulator.conftest import API_KEY, CALLBACK, CHALLENGE, CLIENT_ID, VERIFIER, Emu, query_of
from tests.emulator.openapi import assert_matches

OAUTH_ERROR_KEYS = {"error", "error_code", "error_description", "error_uri"}


def assert_v3_error(response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"request_id", "error"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["error"]["message"], str)
    if type_ is not None:
        assert body["error"]["type"] == type_
    assert isinstance(body, dict)
    return body


def assert_oauth_error(response, error: str, error_code: int) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == OAUTH_ERROR_KEYS
    assert (body["error"], body["error_code"]) == (error, error_code)
    assert body["error_uri"] == "https://developer.nylas.com/docs/api/errors/"


def test_nylas_s256_vector_matches_the_documented_challenge() -> None:
    digest_hex = hashlib.sha256(VERIFIER.encode()).hexdigest()
    assert base64.b64encode(digest_hex.encode()).decode().rstrip("=") == CHALLENGE


def test_auth_redirects_to_the_consent_page(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.anon.get("/v3/connect/auth", params=emu.auth_params())
    assert r.status_code == 302
    assert r.headers["location"].startswith(f"{emu.url}/emulator/consent?id=")
    assert r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("overrides", "type_"),
    [
        ({"client_id": None}, "invalid_request_error"),
        ({"client_id": "someone-else"}, "invalid_request_error"),
        ({"redirect_uri": None}, "invalid_request_error"),
        ({"redirect_uri": "https://evil.example/callback"}, "grant.callback_uri_not_allowed"),
        ({"redirect_uri": CALLBACK + "/"}, "grant.callback_uri_not_allowed"),
        ({"response_type": None}, "invalid_request_error"),
        ({"response_type": "token"}, "invalid_request_error"),
        ({"provider": "google"}, "grant.provider_required"),
        ({"provider": "nope"}, "invalid_request_error"),
        ({"state": "s" * 257}, "invalid_request_error"),
        ({"login_hint": "not-an-email"}, "invalid_request_error"),
        ({"access_type": "forever"}, "invalid_request_error"),
        ({"code_challenge_method": "S512"}, "invalid_request_error"),
        ({"code_challenge": None}, "invalid_request_error"),  # method without challenge
        ({"prompt": "login"}, "invalid_request_error"),
    ],
)
def test_auth_rejects_bad_requests(emu: Emu, overrides: dict[str, Any], type_: str) -> None:
    emu.setup_v3()
    r = emu.anon.get("/v3/connect/auth", params=emu.auth_params(**overrides))
    body = assert_v3_error(r, 400, type_)
    assert "location" not in r.headers
    # The OpenAPI's 400 response for /v3/connect/auth
    assert_matches("/v3/connect/auth", "get", 400, body)


def test_auth_accepts_a_provider_list_and_a_256_char_state(emu: Emu) -> None:
    emu.setup_v3()
    consent_url = emu.start(provider="google,microsoft", state="s" * 256)
    r = emu.consent(consent_url, email="max@contoso.com")
    assert query_of(r.headers["location"])["state"] == "s" * 256


def test_auth_refuses_a_repeated_parameter(emu: Emu) -> None:
    emu.setup_v3()
    params: list[tuple[str, str | int | float | bool | None]] = [
        *emu.auth_params().items(),
        ("state", "second"),
    ]
    assert_v3_error(emu.anon.get("/v3/connect/auth", params=params), 400)


def test_auth_needs_a_registered_redirect_uri_and_a_microsoft_connector(emu: Emu) -> None:
    emu.setup_v3(redirect=False)
    assert_v3_error(
        emu.anon.get("/v3/connect/auth", params=emu.auth_params()), 400, "grant.callback_uri_not_allowed"
    )
    emu.anon.post("/_emulator/reset")
    emu.setup_v3(connector=False)
    assert_v3_error(
        emu.anon.get("/v3/connect/auth", params=emu.auth_params()), 400, "grant.connector_not_found"
    )


@pytest.mark.parametrize("method", ["S256", "s256"])
def test_token_exchange_with_nylas_s256(emu: Emu, method: str) -> None:
    emu.setup_v3()
    r = emu.exchange(emu.code_for("max@contoso.com", code_challenge_method=method))
    assert r.status_code == 200, r.text
    body = r.json()
    assert_matches("/v3/connect/token", "post", 200, body)
    assert "request_id" not in body  # no envelope
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["email"] == "max@contoso.com"
    assert body["provider"] == "microsoft"
    assert "Calendars.ReadWrite" in body["scope"].split(" ")
    assert "refresh_token" not in body  # access_type=online
    assert r.headers["cache-control"] == "no-store"


def test_rfc7636_challenge_is_not_what_nylas_checks(emu: Emu) -> None:
    emu.setup_v3()
    rfc = "6Wv2aGo8NRDp6SfbcGnLHLqbmbAi9JSDps4ycICeaKI"
    assert_oauth_error(
        emu.exchange(emu.code_for("a@contoso.com", code_challenge=rfc)), "invalid_grant", 45004
    )


def test_plain_pkce_and_explicit_plain(emu: Emu) -> None:
    emu.setup_v3()
    code = emu.code_for("a@contoso.com", code_challenge="plain-verifier", code_challenge_method=None)
    assert emu.exchange(code, code_verifier="plain-verifier").status_code == 200
    code = emu.code_for("a@contoso.com", code_challenge="plain-verifier", code_challenge_method="plain")
    assert_oauth_error(emu.exchange(code, code_verifier="other"), "invalid_grant", 45004)


def test_verifier_is_required_when_a_challenge_was_sent_and_refused_when_none_was(emu: Emu) -> None:
    emu.setup_v3()
    assert_oauth_error(
        emu.exchange(emu.code_for("a@contoso.com"), code_verifier=None), "invalid_grant", 45004
    )
    code = emu.code_for("a@contoso.com", code_challenge=None, code_challenge_method=None)
    assert_oauth_error(emu.exchange(code), "invalid_grant", 45004)
    code = emu.code_for("a@contoso.com", code_challenge=None, code_challenge_method=None)
    assert emu.exchange(code, code_verifier=None).status_code == 200


def test_code_is_single_use_even_after_a_failed_exchange(emu: Emu) -> None:
    emu.setup_v3()
    code = emu.code_for("a@contoso.com")
    assert emu.exchange(code).status_code == 200
    assert_oauth_error(emu.exchange(code), "invalid_grant", 45003)
    code = emu.code_for("a@contoso.com")
    assert_oauth_error(emu.exchange(code, code_verifier="wrong"), "invalid_grant", 45004)
    assert_oauth_error(emu.exchange(code), "invalid_grant", 45003)


def test_code_expires(emu: Emu) -> None:
    emu.setup_v3()
    code = emu.code_for("a@contoso.com")
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 61})
    assert_oauth_error(emu.exchange(code), "invalid_grant", 45003)


def test_code_still_valid_just_before_expiry(emu: Emu) -> None:
    emu.setup_v3()
    code = emu.code_for("a@contoso.com")
    emu.anon.post("/_emulator/clock", json={"advance_seconds": 58})
    assert emu.exchange(code).status_code == 200


def test_redirect_uri_mismatch(emu: Emu) -> None:
    emu.setup_v3()
    assert_oauth_error(
        emu.exchange(emu.code_for("a@x.com"), redirect_uri=CALLBACK + "?x=1"), "invalid_grant", 45005
    )


def test_wrong_client_secret_and_client_id(emu: Emu) -> None:
    emu.setup_v3()
    r = emu.exchange(emu.code_for("a@x.com"), client_secret="not-the-api-key")
    assert r.status_code == 400
    assert (r.json()["error"], r.json()["error_code"]) == ("invalid_client", 45002)
    r = emu.exchange(emu.code_for("a@x.com"), client_id="other-client")
    assert (r.json()["error"], r.json()["error_code"]) == ("invalid_client", 45001)


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (
            {"grant_type": "password", "client_id": CLIENT_ID, "client_secret": API_KEY},
            "unsupported_grant_type",
            45006,
        ),
        ({"client_id": CLIENT_ID, "client_secret": API_KEY}, "invalid_request", 45000),
        (
            {"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": API_KEY},
            "invalid_request",
            45000,
        ),
        ({"grant_type": 5, "client_id": CLIENT_ID, "client_secret": API_KEY}, "invalid_request", 45000),
        (
            {
                "grant_type": "authorization_code",
                "client_id": CLIENT_ID,
                "client_secret": API_KEY,
                "code": "nope",
                "redirect_uri": CALLBACK,
            },
            "invalid_grant",
            45003,
        ),
    ],
)
def test_token_rejects_bad_bodies(emu: Emu, body: dict[str, Any], error: str, code: int) -> None:
    assert_oauth_error(emu.anon.post("/v3/connect/token", json=body), error, code)


def test_token_accepts_form_encoding_and_refuses_other_types(emu: Emu) -> None:
    emu.setup_v3()
    form = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": API_KEY,
        "code": emu.code_for("a@x.com"),
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
    }
    assert emu.anon.post("/v3/connect/token", data=form).status_code == 200
    r = emu.anon.post("/v3/connect/token", content=json.dumps(form), headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"] == "invalid_request"
    r = emu.anon.post("/v3/connect/token", content=b"{not json", headers={"content-type": "application/json"})
    assert_oauth_error(r, "invalid_request", 45000)


def test_offline_access_refresh_token_and_refresh_grant(emu: Emu) -> None:
    emu.setup_v3()
    tokens = emu.connect("a@x.com", access_type="offline")
    assert isinstance(tokens["refresh_token"], str)
    body = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": API_KEY}
    r = emu.anon.post("/v3/connect/token", json={**body, "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    assert r.json()["grant_id"] == tokens["grant_id"]
    assert r.json()["access_token"] != tokens["access_token"]
    assert_oauth_error(
        emu.anon.post("/v3/connect/token", json={**body, "refresh_token": "x"}), "invalid_grant", 45007
    )


def test_client_credentials_grant(emu: Emu) -> None:
    emu.setup_v3()
    grant_id = emu.connect("a@x.com")["grant_id"]
    body = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": API_KEY}
    r = emu.anon.post("/v3/connect/token", json={**body, "grant_id": grant_id})
    assert r.status_code == 200
    assert "refresh_token" not in r.json()
    assert_oauth_error(
        emu.anon.post("/v3/connect/token", json={**body, "grant_id": "nope"}), "invalid_grant", 45003
    )


def test_id_token_claims_and_tokeninfo(emu: Emu) -> None:
    emu.setup_v3()
    tokens = emu.connect("max@contoso.com")
    header, payload, signature = str(tokens["id_token"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["email"] == "max@contoso.com"
    assert claims["sub"] == tokens["grant_id"]
    assert claims["aud"] == CLIENT_ID
    assert claims["iss"] == emu.url
    assert signature
    info = emu.api.get("/v3/connect/tokeninfo", params={"id_token": tokens["id_token"]})
    assert info.status_code == 200
    assert_matches("/v3/connect/tokeninfo", "get", 200, info.json())
    assert info.json()["data"]["sub"] == tokens["grant_id"]
    by_access = emu.api.get("/v3/connect/tokeninfo", params={"access_token": tokens["access_token"]})
    assert by_access.json()["data"]["email"] == "max@contoso.com"
    tampered = f"{header}.{payload}.AAAA"
    assert_oauth_error(
        emu.api.get("/v3/connect/tokeninfo", params={"id_token": tampered}), "invalid_token", 45008
    )
    assert emu.anon.get("/v3/connect/tokeninfo", params={"id_token": tokens["id_token"]}).status_code == 401


def test_revoke_keeps_the_grant(emu: Emu) -> None:
    emu.setup_v3()
    tokens = emu.connect("a@x.com", access_type="offline")
    r = emu.api.post("/v3/connect/revoke", params={"token": tokens["access_token"]})
    assert (r.status_code, r.json()) == (200, {})
    assert_matches("/v3/connect/revoke", "post", 200, r.json())
    assert_oauth_error(
        emu.api.post("/v3/connect/revoke", params={"token": tokens["access_token"]}), "invalid_token", 45008
    )
    refresh = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": API_KEY}
    r = emu.anon.post("/v3/connect/token", json={**refresh, "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 400, "the related refresh token is revoked too"
    assert emu.api.get(f"/v3/grants/{tokens['grant_id']}").status_code == 200
    assert emu.anon.post("/v3/connect/revoke", params={"token": "x"}).status_code == 401
