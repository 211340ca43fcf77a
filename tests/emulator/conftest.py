"""Contract tests of the Nylas emulator, over real HTTP against `serve_in_thread` on a free port."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from local.nylas_emulator import EmulatorConfig, RunningServer, serve_in_thread

CLIENT_ID = "test-client-id"
API_KEY = "test-api-key"
CLIENT_SECRET = "test-client-secret"
CALLBACK = "http://127.0.0.1:3000/connect/callback"
AZURE = {"client_id": "azure-app-id", "client_secret": "azure-secret", "tenant": "common"}
VERIFIER = "nylas"
# Nylas's S256 challenge of "nylas": base64(hex(sha256("nylas"))) without padding (nylas-api.md §1.6).
CHALLENGE = "ZTk2YmY2Njg2YTNjMzUxMGU5ZTkyN2RiNzA2OWNiMWNiYTliOTliMDIyZjQ5NDgzYTZjZTMyNzA4MDllNjhhMg"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@dataclass
class Emu:
    """The running emulator plus the HTTP clients a test needs."""

    server: RunningServer
    api: httpx.Client  # v3, Bearer API key
    anon: httpx.Client  # no credentials (browser, token endpoint, control API)
    beta: httpx.Client  # beta, Basic auth

    @property
    def url(self) -> str:
        return self.server.url

    # -- v3 setup and flow -----------------------------------------------------------------------------
    def setup_v3(self, *, connector: bool = True, redirect: bool = True) -> None:
        if connector:
            r = self.api.post("/v3/connectors", json={"provider": "microsoft", "settings": AZURE})
            assert r.status_code == 201, r.text
        if redirect:
            r = self.api.post("/v3/applications/redirect-uris", json={"url": CALLBACK, "platform": "web"})
            assert r.status_code == 200, r.text

    def auth_params(self, **overrides: str | None) -> dict[str, str]:
        params: dict[str, str | None] = {
            "client_id": CLIENT_ID,
            "redirect_uri": CALLBACK,
            "response_type": "code",
            "provider": "microsoft",
            "state": "state-123",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            **overrides,
        }
        return {k: v for k, v in params.items() if v is not None}

    def start(self, **overrides: str | None) -> str:
        """GET /v3/connect/auth; returns the consent page URL it redirects to."""
        r = self.anon.get("/v3/connect/auth", params=self.auth_params(**overrides))
        assert r.status_code == 302, r.text
        return urljoin(self.url, r.headers["location"])

    def consent(self, consent_url: str, *, email: str, decision: str = "allow") -> httpx.Response:
        page = self.anon.get(consent_url)
        assert page.status_code == 200, page.text
        login_id = re.search(r'name="id" value="([^"]+)"', page.text)
        assert login_id is not None
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert action is not None
        return self.anon.post(
            urljoin(consent_url, action.group(1)),
            data={"id": login_id.group(1), "email": email, "decision": decision},
        )

    def code_for(self, email: str, **overrides: str | None) -> str:
        r = self.consent(self.start(**overrides), email=email)
        assert r.status_code == 302, r.text
        return query_of(r.headers["location"])["code"]

    def exchange(self, code: str, **overrides: str | None) -> httpx.Response:
        body: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": API_KEY,
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": VERIFIER,
            **overrides,
        }
        return self.anon.post("/v3/connect/token", json={k: v for k, v in body.items() if v is not None})

    def connect(self, email: str, **overrides: str | None) -> dict[str, Any]:
        """The whole v3 flow; returns the token response."""
        r = self.exchange(self.code_for(email, **overrides))
        assert r.status_code == 200, r.text
        return dict(r.json())

    # -- beta setup and flow ---------------------------------------------------------------------------
    def setup_beta(self) -> None:
        r = self.beta.post("/connect/integrations", json=integration_body())
        assert r.status_code == 200, r.text

    def beta_login(self, **overrides: object) -> dict[str, Any]:
        body = {"provider": "microsoft", "redirect_uri": CALLBACK, "expires_in": 43200, **overrides}
        r = self.beta.post("/connect/auth", json={k: v for k, v in body.items() if v is not None})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert isinstance(data, dict)
        return data

    def calls(self) -> dict[str, int]:
        return dict(self.anon.get("/_emulator/calls").json()["calls"])

    def fault(self, **body: object) -> httpx.Response:
        return self.anon.post("/_emulator/faults", json=body)


def integration_body(**overrides: object) -> dict[str, Any]:
    return {
        "name": "Teams integration",
        "provider": "microsoft",
        "settings": dict(AZURE),
        "redirect_uris": [CALLBACK],
        "expires_in": 1209600,
        **overrides,
    }


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = EmulatorConfig(
        client_id=CLIENT_ID, api_key=API_KEY, client_secret=CLIENT_SECRET, code_ttl_seconds=60
    )
    running = serve_in_thread(config)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def clients(server: RunningServer) -> Iterator[Emu]:
    # One set of clients per module: creating an httpx.Client (TLS context) costs ~0.1 s.
    with (
        httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=10) as api,
        httpx.Client(base_url=server.url, timeout=10) as anon,
        httpx.Client(
            base_url=server.url, headers={"authorization": basic(CLIENT_ID, CLIENT_SECRET)}, timeout=10
        ) as b,
    ):
        yield Emu(server=server, api=api, anon=anon, beta=b)


@pytest.fixture
def emu(clients: Emu) -> Emu:
    """The module's emulator, reset (state, counters, faults, clock) before each test."""
    assert clients.anon.post("/_emulator/reset").status_code == 200
    clients.anon.cookies.clear()
    return clients
