from __future__ import annotations

import pytest

from teams_connect.config import AllowedReturnUrl, ConfigError, Settings

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tc/nylas-AbCdEf"
BASE = {
    "PUBLIC_BASE_URL": "https://connect.example.com",
    "SESSIONS_TABLE": "tc-sessions",
    "GRANTS_TABLE": "tc-grants",
    "NYLAS_SECRET_ARN": ARN,
    "API_KEYS_SECRET_ARN": ARN.replace("nylas", "keys"),
}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.nylas_api == "v3"
    assert s.nylas_region == "us"
    assert s.nylas_base_url == "https://api.us.nylas.com"
    assert s.azure_tenant == "common"
    assert s.session_ttl_seconds == 600
    assert s.beta_auth_expires_in == 1800
    assert s.flow_ttl_seconds == 900
    assert s.beta_login_expires_in == 900  # the beta login link never outlives the flow (F10)
    assert s.secrets_max_age == 300
    assert s.nylas_scopes == ()
    assert s.allowed_return_urls == ()
    assert s.callback_url == "https://connect.example.com/connect/callback"
    assert s.cookie_secure


def test_beta_eu_and_overrides() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "NYLAS_API": "beta",
            "NYLAS_REGION": "eu",
            "AZURE_TENANT": "0b2c6a3e-1111-4a4a-9b9b-123456789abc",
            "NYLAS_SCOPES": "User.Read, Calendars.ReadWrite",
            "ALLOWED_RETURN_URLS": "https://app.example.com/integrations, http://localhost:3000/",
        }
    )
    assert s.nylas_base_url == "https://beta.eu.nylas.com"
    assert s.nylas_scopes == ("User.Read", "Calendars.ReadWrite")
    assert s.allowed_return_urls == (
        AllowedReturnUrl("https", "app.example.com", 443, "/integrations"),
        AllowedReturnUrl("http", "localhost", 3000, "/"),
    )
    local = Settings.from_env(
        {**BASE, "PUBLIC_BASE_URL": "http://127.0.0.1:3000", "NYLAS_BASE_URL": "http://localhost:4010"}
    )
    assert local.nylas_base_url == "http://localhost:4010"
    assert not local.cookie_secure


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("NYLAS_API", "v2", "NYLAS_API"),
        ("NYLAS_REGION", "ap", "NYLAS_REGION"),
        ("NYLAS_BASE_URL", "http://nylas.example.com", "NYLAS_BASE_URL"),
        ("NYLAS_BASE_URL", "https://x.example/v3", "NYLAS_BASE_URL"),
        ("NYLAS_BASE_URL", "https://user@x.example", "NYLAS_BASE_URL"),
        ("AZURE_TENANT", "contoso", "AZURE_TENANT"),
        ("PUBLIC_BASE_URL", "", "PUBLIC_BASE_URL"),
        ("PUBLIC_BASE_URL", "http://connect.example.com", "PUBLIC_BASE_URL"),
        ("PUBLIC_BASE_URL", "https://connect.example.com/", "PUBLIC_BASE_URL"),
        ("PUBLIC_BASE_URL", "https://connect.example.com?x=1", "PUBLIC_BASE_URL"),
        ("PUBLIC_BASE_URL", "connect.example.com", "PUBLIC_BASE_URL"),
        ("SESSION_TTL_SECONDS", "601", "SESSION_TTL_SECONDS"),
        ("SESSION_TTL_SECONDS", "abc", "SESSION_TTL_SECONDS"),
        ("SESSION_TTL_SECONDS", "10", "SESSION_TTL_SECONDS"),
        ("BETA_AUTH_EXPIRES_IN", "-5", "BETA_AUTH_EXPIRES_IN"),
        ("FLOW_TTL_SECONDS", "60", "FLOW_TTL_SECONDS"),
        ("FLOW_TTL_SECONDS", "3600", "FLOW_TTL_SECONDS"),
        ("SECRETS_MAX_AGE", "99999", "SECRETS_MAX_AGE"),
        ("SESSIONS_TABLE", "", "SESSIONS_TABLE"),
        ("GRANTS_TABLE", "bad name!", "GRANTS_TABLE"),
        ("NYLAS_SECRET_ARN", "", "NYLAS_SECRET_ARN"),
        ("API_KEYS_SECRET_ARN", "my-secret", "API_KEYS_SECRET_ARN"),
        ("AZURE_SECRET_ARN", "nope", "AZURE_SECRET_ARN"),
        ("NYLAS_SCOPES", "a b", "NYLAS_SCOPES"),
        ("ALLOWED_RETURN_URLS", "http://app.example.com/", "ALLOWED_RETURN_URLS"),
        ("ALLOWED_RETURN_URLS", "https://user@app.example.com/", "ALLOWED_RETURN_URLS"),
        ("ALLOWED_RETURN_URLS", "//app.example.com/", "ALLOWED_RETURN_URLS"),
        ("ALLOWED_RETURN_URLS", "https://app.example.com/x?y=1", "ALLOWED_RETURN_URLS"),
        ("ALLOWED_RETURN_URLS", "https://app.example.com/a/../b", "ALLOWED_RETURN_URLS"),
        ("ALLOWED_RETURN_URLS", "https://app_example.com/", "ALLOWED_RETURN_URLS"),
    ],
)
def test_bad_values_raise_a_clear_error(name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env({**BASE, name: value})


def test_settings_are_frozen() -> None:
    s = Settings.from_env(BASE)
    with pytest.raises(AttributeError):
        s.nylas_api = "beta"  # type: ignore[misc]


def test_the_beta_login_link_never_outlives_the_flow() -> None:
    s = Settings.from_env({**BASE, "BETA_AUTH_EXPIRES_IN": "43200", "FLOW_TTL_SECONDS": "600"})
    assert s.beta_login_expires_in == 600
    s = Settings.from_env({**BASE, "BETA_AUTH_EXPIRES_IN": "300", "FLOW_TTL_SECONDS": "600"})
    assert s.beta_login_expires_in == 300
