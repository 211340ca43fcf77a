"""Configuration of the Nylas emulator (one frozen value, shared by every module)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4010
DEFAULT_CLIENT_ID = "local-nylas-client-id"
DEFAULT_API_KEY = "local-nylas-api-key"
DEFAULT_CLIENT_SECRET = "local-nylas-client-secret"


@dataclass(frozen=True)
class EmulatorConfig:
    """What the emulator needs to know about "its" Nylas application.

    - ``client_id``: the Nylas application id (v3 ``client_id``, first half of the beta Basic auth).
    - ``api_key``: the v3 API key (``Authorization: Bearer``, and ``client_secret`` at ``/v3/connect/token``).
    - ``client_secret``: the beta client secret (second half of the beta Basic auth).
    - ``public_url``: base URL the emulator writes into URLs it hands out (consent page, beta login URL);
      ``None`` means ``http://{host}:{port}``.
    - ``code_ttl_seconds``: lifetime of a v3 authorization code.
    - ``login_ttl_seconds``: lifetime of a v3 pending login (the consent page link).
    - ``beta_login_ttl_max``: largest ``expires_in`` accepted at beta ``POST /connect/auth``.
    - ``max_body_bytes``: request bodies above this get 413.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    client_id: str = DEFAULT_CLIENT_ID
    api_key: str = DEFAULT_API_KEY
    client_secret: str = DEFAULT_CLIENT_SECRET
    public_url: str | None = None
    code_ttl_seconds: float = 60.0
    login_ttl_seconds: float = 1800.0
    beta_login_ttl_max: int = 604800
    max_body_bytes: int = 64 * 1024

    @property
    def base_url(self) -> str:
        """The public base URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
