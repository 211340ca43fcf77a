"""ensure_nylas_side against stateful respx fakes of Nylas (v3 and beta)."""

from __future__ import annotations

import base64

import pytest
import respx

from teams_connect.setup import DEFAULT_SCOPES, Credentials, SetupError, SetupSpec, ensure_nylas_side

from .fakes import (
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    BETA_BASE,
    CALLBACK,
    NYLAS_API_KEY,
    NYLAS_CLIENT_ID,
    NYLAS_CLIENT_SECRET,
    TENANT_GUID,
    V3_BASE,
    FakeBeta,
    FakeV3,
)

TENANTS = ["common", "organizations", TENANT_GUID]


def v3_spec(tenant: str = "common", **extra: object) -> SetupSpec:
    values: dict[str, object] = {
        "flavour": "v3",
        "base_url": V3_BASE,
        "tenant": tenant,
        "callback_url": CALLBACK,
        "scopes": DEFAULT_SCOPES["v3"],
        **extra,
    }
    return SetupSpec(**values)  # type: ignore[arg-type]


def beta_spec(tenant: str = "common", **extra: object) -> SetupSpec:
    values: dict[str, object] = {
        "flavour": "beta",
        "base_url": BETA_BASE,
        "tenant": tenant,
        "callback_url": CALLBACK,
        "scopes": DEFAULT_SCOPES["beta"],
        **extra,
    }
    return SetupSpec(**values)  # type: ignore[arg-type]


# -- v3 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", TENANTS)
def test_v3_creates_connector_and_callback(v3: FakeV3, creds: Credentials, tenant: str) -> None:
    report = ensure_nylas_side(v3_spec(tenant), creds)

    assert report.lines() == [
        f"connector microsoft: created (tenant {tenant})",
        f"callback URI {CALLBACK}: registered",
    ]
    post = v3.body_of("post_connector")
    assert post == {
        "provider": "microsoft",
        "settings": {"client_id": AZURE_CLIENT_ID, "client_secret": AZURE_CLIENT_SECRET, "tenant": tenant},
        "scope": list(DEFAULT_SCOPES["v3"]),
    }
    assert v3.body_of("post_uri") == {"url": CALLBACK, "platform": "web"}
    assert v3.routes["get_connector"].calls[0].request.headers["authorization"] == f"Bearer {NYLAS_API_KEY}"
    assert v3.urls() == [CALLBACK]


def test_v3_second_run_is_unchanged_and_writes_nothing(v3: FakeV3, creds: Credentials) -> None:
    ensure_nylas_side(v3_spec(TENANT_GUID), creds)
    writes_after_first = v3.writes()
    assert writes_after_first == 2

    report = ensure_nylas_side(v3_spec(TENANT_GUID.upper()), creds)

    assert v3.writes() == writes_after_first
    assert report.lines() == [
        "connector microsoft: unchanged",
        f"callback URI {CALLBACK}: already registered",
    ]
    assert not report.changed
    assert v3.routes["patch_connector"].call_count == 0
    assert v3.routes["post_uri"].call_count == 1


def test_v3_changed_tenant_patches_settings(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(tenant="common", scope=list(DEFAULT_SCOPES["v3"]), uris=(CALLBACK,))

    report = ensure_nylas_side(v3_spec(TENANT_GUID), creds)

    assert report.lines()[0] == "connector microsoft: updated (changed: tenant)"
    assert v3.body_of("patch_connector") == {
        "settings": {
            "client_id": AZURE_CLIENT_ID,
            "client_secret": AZURE_CLIENT_SECRET,
            "tenant": TENANT_GUID,
        },
        "scope": list(DEFAULT_SCOPES["v3"]),
    }
    assert v3.routes["post_connector"].call_count == 0
    assert v3.routes["post_uri"].call_count == 0
    assert ensure_nylas_side(v3_spec(TENANT_GUID), creds).changed is False


def test_v3_changed_scope_or_client_id_patches(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(tenant="common", scope=["Mail.Read"], uris=(CALLBACK,))
    assert v3.connector is not None
    v3.connector["settings"]["client_id"] = "an-older-azure-app"

    report = ensure_nylas_side(v3_spec(), creds)

    assert report.lines()[0] == "connector microsoft: updated (changed: client_id, scope)"
    assert v3.connector["scope"] == list(DEFAULT_SCOPES["v3"])
    assert v3.connector["settings"]["client_id"] == AZURE_CLIENT_ID


def test_v3_scope_order_does_not_matter_and_missing_tenant_means_common(
    v3: FakeV3, creds: Credentials
) -> None:
    v3.seed(scope=list(reversed(DEFAULT_SCOPES["v3"])), uris=(CALLBACK,))
    assert v3.connector is not None
    del v3.connector["settings"]["tenant"]
    report = ensure_nylas_side(v3_spec("common"), creds)
    assert not report.changed
    assert v3.writes() == 0


def test_v3_push_secret_patches_even_when_identical(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(scope=list(DEFAULT_SCOPES["v3"]), uris=(CALLBACK,))
    report = ensure_nylas_side(v3_spec(), creds, push_secret=True)
    assert report.lines()[0] == "connector microsoft: updated (changed: client_secret (re-sent))"
    assert v3.secret_sent == AZURE_CLIENT_SECRET
    assert v3.routes["patch_connector"].call_count == 1


def test_v3_registers_callback_next_to_others(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(scope=list(DEFAULT_SCOPES["v3"]), uris=("https://other.example.com/cb",))
    report = ensure_nylas_side(v3_spec(), creds)
    assert report.lines() == ["connector microsoft: unchanged", f"callback URI {CALLBACK}: registered"]
    assert v3.urls() == ["https://other.example.com/cb", CALLBACK]


def test_v3_dry_run_reads_only(v3: FakeV3, creds: Credentials) -> None:
    report = ensure_nylas_side(v3_spec(), creds, dry_run=True)
    assert v3.writes() == 0
    assert v3.reads() == 2
    assert report.dry_run
    assert report.changed
    assert report.lines() == [
        "(dry run) would create connector microsoft (tenant common)",
        f"(dry run) would register callback URI {CALLBACK}",
    ]
    v3.seed(uris=(CALLBACK,))
    assert ensure_nylas_side(v3_spec(TENANT_GUID), creds, dry_run=True).lines()[0] == (
        "(dry run) would update connector microsoft (changed: tenant, scope)"
    )
    assert v3.writes() == 0


def test_v3_needs_api_key(router: respx.MockRouter, creds: Credentials) -> None:
    no_key = Credentials(
        creds.nylas_client_id, "", creds.nylas_client_secret, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET
    )
    with pytest.raises(SetupError, match="api_key"):
        ensure_nylas_side(v3_spec(), no_key)
    assert not router.calls


def test_needs_azure_credentials(router: respx.MockRouter, creds: Credentials) -> None:
    no_azure = Credentials(creds.nylas_client_id, NYLAS_API_KEY, NYLAS_CLIENT_SECRET, AZURE_CLIENT_ID, "")
    with pytest.raises(SetupError, match="Azure"):
        ensure_nylas_side(v3_spec(), no_azure)
    assert not router.calls


# -- beta -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", TENANTS)
def test_beta_creates_integration(beta: FakeBeta, creds: Credentials, tenant: str) -> None:
    report = ensure_nylas_side(beta_spec(tenant), creds)

    assert report.lines() == [
        f"integration microsoft: created (tenant {tenant})",
        f"redirect URI {CALLBACK}: registered",
    ]
    assert beta.body_of("post_integration") == {
        "name": "teams-connect",
        "provider": "microsoft",
        "settings": {"client_id": AZURE_CLIENT_ID, "client_secret": AZURE_CLIENT_SECRET, "tenant": tenant},
        "redirect_uris": [CALLBACK],
        "expires_in": 1209600,
        "scope": list(DEFAULT_SCOPES["beta"]),
    }
    expected = base64.b64encode(f"{NYLAS_CLIENT_ID}:{NYLAS_CLIENT_SECRET}".encode()).decode()
    assert beta.routes["get_integration"].calls[0].request.headers["authorization"] == f"Basic {expected}"


def test_beta_second_run_is_unchanged(beta: FakeBeta, creds: Credentials) -> None:
    ensure_nylas_side(beta_spec(TENANT_GUID), creds)
    assert beta.writes() == 1
    report = ensure_nylas_side(beta_spec(TENANT_GUID), creds)
    assert beta.writes() == 1
    assert report.lines() == [
        "integration microsoft: unchanged",
        f"redirect URI {CALLBACK}: already registered",
    ]


def test_beta_changed_tenant_patches_settings_only(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed(tenant="common", scope=list(DEFAULT_SCOPES["beta"]))
    report = ensure_nylas_side(beta_spec(TENANT_GUID), creds)
    assert report.lines() == [
        "integration microsoft: updated (changed: tenant)",
        f"redirect URI {CALLBACK}: already registered",
    ]
    assert beta.body_of("patch_integration") == {
        "settings": {
            "client_id": AZURE_CLIENT_ID,
            "client_secret": AZURE_CLIENT_SECRET,
            "tenant": TENANT_GUID,
        }
    }


def test_beta_keeps_other_redirect_uris_and_fixes_fields(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed(uris=("https://other.example.com/cb",), name="old name", expires_in=3600, scope=["User.Read"])
    report = ensure_nylas_side(beta_spec(), creds)
    assert report.lines() == [
        "integration microsoft: updated (changed: name, expires_in, scope)",
        f"redirect URI {CALLBACK}: registered",
    ]
    assert beta.body_of("patch_integration") == {
        "name": "teams-connect",
        "expires_in": 1209600,
        "scope": list(DEFAULT_SCOPES["beta"]),
        "redirect_uris": ["https://other.example.com/cb", CALLBACK],
    }
    assert beta.routes["patch_integration"].call_count == 1
    assert not ensure_nylas_side(beta_spec(), creds).changed
    assert beta.routes["patch_integration"].call_count == 1


def test_beta_only_missing_callback(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed(uris=(), scope=list(DEFAULT_SCOPES["beta"]))
    report = ensure_nylas_side(beta_spec(), creds)
    assert report.lines() == ["integration microsoft: unchanged", f"redirect URI {CALLBACK}: registered"]
    assert beta.body_of("patch_integration") == {"redirect_uris": [CALLBACK]}


def test_beta_without_scopes_sends_and_compares_none(beta: FakeBeta, creds: Credentials) -> None:
    ensure_nylas_side(beta_spec(scopes=()), creds)
    assert "scope" not in beta.body_of("post_integration")
    assert beta.integration is not None
    beta.integration["scope"] = ["Anything"]
    assert not ensure_nylas_side(beta_spec(scopes=()), creds).changed


def test_beta_dry_run_reads_only(beta: FakeBeta, creds: Credentials) -> None:
    report = ensure_nylas_side(beta_spec(), creds, dry_run=True)
    assert beta.writes() == 0
    assert report.lines() == [
        "(dry run) would create integration microsoft (tenant common)",
        f"(dry run) would register redirect URI {CALLBACK}",
    ]


def test_beta_needs_nylas_client_secret(router: respx.MockRouter, creds: Credentials) -> None:
    v3_only = Credentials(NYLAS_CLIENT_ID, NYLAS_API_KEY, "", AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)
    with pytest.raises(SetupError, match="client_secret"):
        ensure_nylas_side(beta_spec(), v3_only)
    assert not router.calls
