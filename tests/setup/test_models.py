from __future__ import annotations

import pytest

from teams_connect.setup import (
    DEFAULT_SCOPES,
    Action,
    Credentials,
    SetupError,
    SetupReport,
    SetupSpec,
    physical_resource_id,
    resolve_base_url,
)

from .fakes import CALLBACK, SECRET_VALUES, TENANT_GUID, assert_no_secret


def spec(**overrides: object) -> SetupSpec:
    values: dict[str, object] = {
        "flavour": "v3",
        "base_url": "https://api.us.nylas.com",
        "tenant": "common",
        "callback_url": CALLBACK,
        "scopes": DEFAULT_SCOPES["v3"],
    }
    values.update(overrides)
    return SetupSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tenant", "stored"),
    [
        ("common", "common"),
        ("organizations", "organizations"),
        (TENANT_GUID, TENANT_GUID),
        (TENANT_GUID.upper(), TENANT_GUID),
    ],
)
def test_accepted_tenants(tenant: str, stored: str) -> None:
    assert spec(tenant=tenant).tenant == stored


@pytest.mark.parametrize(
    "tenant",
    [
        "",
        "consumers",
        "Common",
        "contoso.onmicrosoft.com",
        "9b2c6f4e-3a1d-4c8b-9e7f",
        f"{TENANT_GUID} ",
        None,
    ],
)
def test_refused_tenants(tenant: object) -> None:
    with pytest.raises(SetupError, match="tenant GUID"):
        spec(tenant=tenant)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("flavour", "v2", "flavour"),
        ("base_url", "http://api.us.nylas.com", "https"),
        ("base_url", "ftp://x", "https"),
        ("callback_url", "https://user:pw@example.com/cb", "user information"),
        ("callback_url", "https://example.com/cb#frag", "fragment"),
        ("callback_url", "/connect/callback", "absolute"),
        ("scopes", "Calendars.ReadWrite", "scopes"),
        ("scopes", ("ok", ""), "scopes"),
        ("expires_in", 60, "expires_in"),
        ("expires_in", True, "expires_in"),
        ("integration_name", " ", "name"),
    ],
)
def test_invalid_spec(field: str, value: object, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        spec(**{field: value})


def test_http_allowed_for_loopback_only() -> None:
    assert spec(base_url="http://127.0.0.1:4010/").base_url == "http://127.0.0.1:4010"
    assert spec(callback_url="http://localhost:3000/connect/callback").callback_url.startswith("http://")
    with pytest.raises(SetupError):
        spec(callback_url="http://example.com/connect/callback")


def test_base_url_resolution_and_physical_id() -> None:
    assert resolve_base_url("v3", "eu") == "https://api.eu.nylas.com"
    assert resolve_base_url("beta", "us") == "https://beta.us.nylas.com"
    assert resolve_base_url("beta", "eu", "http://127.0.0.1:4010/") == "http://127.0.0.1:4010"
    with pytest.raises(SetupError, match="region"):
        resolve_base_url("v3", "ap")
    assert physical_resource_id("v3", "us", "https://api.us.nylas.com") == "nylas-v3-microsoft-us"
    assert physical_resource_id("beta", "eu", "https://beta.eu.nylas.com") == "nylas-beta-microsoft-eu"
    custom = physical_resource_id("v3", "us", "http://127.0.0.1:4010")
    assert custom.startswith("nylas-v3-microsoft-custom-")
    # an override names the host, not the region: changing only the region is no replacement
    assert physical_resource_id("v3", "eu", "http://127.0.0.1:4010") == custom


def test_credentials_repr_masks_secrets(creds: Credentials) -> None:
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert_no_secret(text)
        assert "***" in text
        assert creds.nylas_client_id in text
    assert set(creds.secret_values()) == set(SECRET_VALUES)


def test_report_lines() -> None:
    actions = (
        Action("connector", "microsoft", "created", "tenant common"),
        Action("callback URI", CALLBACK, "unchanged"),
    )
    real = SetupReport("v3", "https://api.us.nylas.com", False, actions)
    assert real.lines() == [
        "connector microsoft: created (tenant common)",
        f"callback URI {CALLBACK}: already registered",
    ]
    assert real.changed
    dry = SetupReport("v3", "https://api.us.nylas.com", True, actions)
    assert dry.lines()[0] == "(dry run) would create connector microsoft (tenant common)"
    assert dry.lines()[1] == f"callback URI {CALLBACK}: already registered"
    quiet = SetupReport("v3", "x", False, (Action("callback URI", CALLBACK, "unchanged"),))
    assert not quiet.changed
    assert quiet.summary() == {f"callback URI {CALLBACK}": "unchanged"}
