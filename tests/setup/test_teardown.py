"""teardown_nylas_side: Retain (default) removes only our callback URI; Remove also deletes the
connector/integration."""

from __future__ import annotations

import pytest
import respx

from teams_connect.setup import Credentials, SetupError, teardown_nylas_side

from .fakes import CALLBACK, FakeBeta, FakeV3
from .test_ensure import beta_spec, v3_spec

OTHER = "https://other.example.com/connect/callback"


def test_v3_retain_removes_only_our_callback(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(uris=(OTHER, CALLBACK))
    report = teardown_nylas_side(v3_spec(), creds)
    assert report.lines() == [
        f"callback URI {CALLBACK}: removed",
        "connector microsoft: kept (OnDelete Retain: deleting it would stop every grant of the application)",
    ]
    assert v3.urls() == [OTHER]
    assert v3.connector is not None
    assert v3.routes["delete_connector"].call_count == 0
    assert v3.routes["delete_uri"].calls[0].request.url.path == "/v3/applications/redirect-uris/ru-2"


def test_v3_retain_when_nothing_registered(v3: FakeV3, creds: Credentials) -> None:
    report = teardown_nylas_side(v3_spec(), creds)
    assert report.lines()[0] == f"callback URI {CALLBACK}: not registered"
    assert v3.writes() == 0


def test_v3_remove_deletes_connector(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(uris=(CALLBACK,))
    report = teardown_nylas_side(v3_spec(), creds, on_delete="Remove")
    assert report.lines() == [f"callback URI {CALLBACK}: removed", "connector microsoft: deleted"]
    assert v3.connector is None
    again = teardown_nylas_side(v3_spec(), creds, on_delete="Remove")
    assert again.lines() == [f"callback URI {CALLBACK}: not registered", "connector microsoft: not present"]


def test_v3_teardown_dry_run(v3: FakeV3, creds: Credentials) -> None:
    v3.seed(uris=(CALLBACK,))
    report = teardown_nylas_side(v3_spec(), creds, on_delete="Remove", dry_run=True)
    assert report.lines() == [
        f"(dry run) would remove callback URI {CALLBACK}",
        "(dry run) would delete connector microsoft",
    ]
    assert v3.writes() == 0


def test_beta_retain_removes_our_redirect_uri(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed(uris=(OTHER, CALLBACK))
    report = teardown_nylas_side(beta_spec(), creds)
    assert report.lines()[0] == f"redirect URI {CALLBACK}: removed"
    assert report.lines()[1].startswith("integration microsoft: kept")
    assert beta.body_of("patch_integration") == {"redirect_uris": [OTHER]}
    assert beta.integration is not None
    assert beta.routes["delete_integration"].call_count == 0


def test_beta_retain_keeps_the_only_redirect_uri(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed(uris=(CALLBACK,))
    report = teardown_nylas_side(beta_spec(), creds)
    assert report.lines()[0] == f"redirect URI {CALLBACK}: kept (the integration's only redirect URI)"
    assert beta.writes() == 0
    assert beta.integration is not None
    assert beta.integration["redirect_uris"] == [CALLBACK]


def test_beta_retain_when_absent(beta: FakeBeta, creds: Credentials) -> None:
    assert teardown_nylas_side(beta_spec(), creds).lines() == [
        f"redirect URI {CALLBACK}: not registered",
        "integration microsoft: not present",
    ]
    beta.seed(uris=(OTHER,))
    assert teardown_nylas_side(beta_spec(), creds).lines()[0] == f"redirect URI {CALLBACK}: not registered"
    assert beta.writes() == 0


def test_beta_remove_deletes_integration(beta: FakeBeta, creds: Credentials) -> None:
    beta.seed()
    assert teardown_nylas_side(beta_spec(), creds, on_delete="Remove", dry_run=True).lines() == [
        "(dry run) would delete integration microsoft"
    ]
    assert beta.integration is not None
    assert teardown_nylas_side(beta_spec(), creds, on_delete="Remove").lines() == [
        "integration microsoft: deleted"
    ]
    assert beta.integration is None


def test_teardown_needs_no_azure_credentials(v3: FakeV3) -> None:
    v3.seed(uris=(CALLBACK,))
    nylas_only = Credentials(nylas_client_id="id", nylas_api_key="nyk_v3_SECRET_api_key_4f9a1c")
    assert teardown_nylas_side(v3_spec(), nylas_only).lines()[0] == f"callback URI {CALLBACK}: removed"


def test_bad_on_delete(router: respx.MockRouter, creds: Credentials) -> None:
    with pytest.raises(SetupError, match="OnDelete"):
        teardown_nylas_side(v3_spec(), creds, on_delete="Destroy")  # type: ignore[arg-type]
    assert not router.calls
