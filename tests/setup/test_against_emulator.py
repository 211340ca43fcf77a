"""The setup against the real local Nylas emulator (local/nylas_emulator) over HTTP, both flavours."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from local.nylas_emulator.config import EmulatorConfig
from local.nylas_emulator.server import serve_in_thread

from teams_connect.setup import (
    DEFAULT_SCOPES,
    Credentials,
    SetupError,
    SetupSpec,
    ensure_nylas_side,
    teardown_nylas_side,
)

from .fakes import AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, CALLBACK, TENANT_GUID, assert_no_secret

CONFIG = EmulatorConfig()
CREDS = Credentials(
    nylas_client_id=CONFIG.client_id,
    nylas_api_key=CONFIG.api_key,
    nylas_client_secret=CONFIG.client_secret,
    azure_client_id=AZURE_CLIENT_ID,
    azure_client_secret=AZURE_CLIENT_SECRET,
)
OTHER = "http://127.0.0.1:3000/connect/callback"


@pytest.fixture
def emulator() -> Iterator[Any]:
    server = serve_in_thread(CONFIG, port=0)
    try:
        yield server
    finally:
        server.stop()


def spec(url: str, flavour: str, tenant: str = "common", callback: str = CALLBACK) -> SetupSpec:
    return SetupSpec(
        flavour="v3" if flavour == "v3" else "beta",
        base_url=url,
        tenant=tenant,
        callback_url=callback,
        scopes=DEFAULT_SCOPES[flavour],
    )


def test_v3_created_then_unchanged_then_updated_then_torn_down(emulator: Any) -> None:
    first = ensure_nylas_side(spec(emulator.url, "v3"), CREDS)
    assert [a.outcome for a in first.actions] == ["created", "created"]
    second = ensure_nylas_side(spec(emulator.url, "v3"), CREDS)
    assert [a.outcome for a in second.actions] == ["unchanged", "unchanged"]
    assert not second.changed

    third = ensure_nylas_side(spec(emulator.url, "v3", TENANT_GUID), CREDS)
    assert third.lines()[0] == "connector microsoft: updated (changed: tenant)"
    assert not ensure_nylas_side(spec(emulator.url, "v3", TENANT_GUID), CREDS).changed

    headers = {"Authorization": f"Bearer {CONFIG.api_key}"}
    connector = httpx.get(f"{emulator.url}/v3/connectors/microsoft", headers=headers).json()["data"]
    assert connector["settings"]["tenant"] == TENANT_GUID
    assert connector["settings"]["client_id"] == AZURE_CLIENT_ID
    assert connector["scope"] == list(DEFAULT_SCOPES["v3"])

    down = teardown_nylas_side(spec(emulator.url, "v3"), CREDS)
    assert [a.outcome for a in down.actions] == ["deleted", "kept"]
    uris = httpx.get(f"{emulator.url}/v3/applications/redirect-uris", headers=headers).json()["data"]
    assert [u["url"] for u in uris] == []
    assert httpx.get(f"{emulator.url}/v3/connectors/microsoft", headers=headers).status_code == 200

    gone = teardown_nylas_side(spec(emulator.url, "v3"), CREDS, on_delete="Remove")
    assert [a.outcome for a in gone.actions] == ["absent", "deleted"]
    assert httpx.get(f"{emulator.url}/v3/connectors/microsoft", headers=headers).status_code == 404


def test_beta_created_then_unchanged_then_torn_down(emulator: Any) -> None:
    first = ensure_nylas_side(spec(emulator.url, "beta", "organizations"), CREDS)
    assert [a.outcome for a in first.actions] == ["created", "created"]
    second = ensure_nylas_side(spec(emulator.url, "beta", "organizations"), CREDS)
    assert [a.outcome for a in second.actions] == ["unchanged", "unchanged"]

    # a second deployment's callback joins ours; tearing ours down keeps it
    both = ensure_nylas_side(spec(emulator.url, "beta", "organizations", OTHER), CREDS)
    assert both.lines()[1] == f"redirect URI {OTHER}: registered"
    down = teardown_nylas_side(spec(emulator.url, "beta", "organizations"), CREDS)
    assert [a.outcome for a in down.actions] == ["deleted", "kept"]
    last = teardown_nylas_side(spec(emulator.url, "beta", "organizations", OTHER), CREDS)
    assert [a.outcome for a in last.actions] == ["kept", "kept"]

    gone = teardown_nylas_side(spec(emulator.url, "beta"), CREDS, on_delete="Remove")
    assert [a.outcome for a in gone.actions] == ["deleted"]


@pytest.mark.parametrize("flavour", ["v3", "beta"])
def test_wrong_credentials_are_refused_without_leaking(emulator: Any, flavour: str) -> None:
    wrong = Credentials(
        nylas_client_id=CONFIG.client_id,
        nylas_api_key="nyk_v3_SECRET_api_key_4f9a1c",
        nylas_client_secret="nylas-client-SECRET-8d2b77",
        azure_client_id=AZURE_CLIENT_ID,
        azure_client_secret=AZURE_CLIENT_SECRET,
    )
    with pytest.raises(SetupError) as info:
        ensure_nylas_side(spec(emulator.url, flavour), wrong)
    assert info.value.status == 401
    assert "HTTP 401" in str(info.value)
    assert_no_secret(str(info.value))
