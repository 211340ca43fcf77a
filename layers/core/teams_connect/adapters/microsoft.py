"""Microsoft identity platform (Entra ID), the parts the admin-consent flow calls directly:

- `resolve_tenant(ref)`: a tenant id or verified domain → its tenant id, from the tenant's OpenID
  discovery document (`{login}/{ref}/v2.0/.well-known/openid-configuration`, its `issuer`);
- `app_present(tenant_id, credentials)`: the proof that an administrator's consent took effect: a
  client-credentials token request for that tenant with the Azure app's credentials succeeds only
  when the app's service principal exists there (`AADSTS700016` otherwise). The token is discarded.
- `tenant_of_email(email)`: best effort, for the grant record's `tenant_id`.

httpx with explicit timeouts and an overall deadline; transport errors, 429 and 5xx are retried (both
calls are safe to repeat) with capped backoff inside the deadline, then `upstream_unavailable`.
The Azure app's credentials come from Secrets Manager (`AzureSecretArn`); nothing secret is logged.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teams_connect.adapters.secrets import get_json_secret
from teams_connect.config import Settings
from teams_connect.errors import InvalidRequest, ServerError, UpstreamUnavailable
from teams_connect.observability import logger
from teams_connect.rules import microsoft as rules

if TYPE_CHECKING:
    import httpx

# httpx is imported when the client is created (`warm()` at init, or the first call), not at import:
# `admin_consent_start` and `get_tenant` build this adapter but never call Microsoft.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 3
DEFAULT_BUDGET_SECONDS = 8.0
TENANT_LOOKUP_SECONDS = 1.5  # the grant's tenant: best effort on the connect callback's path
_MIN_ATTEMPT_SECONDS = 0.3
#: Answers of the token endpoint that mean "the app is not (yet) in this tenant".
_NOT_PRESENT_CODES = frozenset({700016, 90002, 500011, 65001})
_TENANT_CACHE_SECONDS = 3600.0
_TENANT_CACHE_MAX = 1024
_random = random.SystemRandom()


@dataclass(frozen=True)
class AzureApp:
    client_id: str
    client_secret: str = field(repr=False)


def azure_app(settings: Settings, *, force_fetch: bool = False) -> AzureApp:
    """The Azure app's credentials (`{"client_id", "client_secret"}` in `AzureSecretArn`)."""
    if not settings.azure_secret_arn:
        logger.error("AZURE_SECRET_ARN is not configured: admin consent needs the Azure app's credentials")
        raise ServerError()
    data = get_json_secret(
        settings.azure_secret_arn, max_age=settings.secrets_max_age, force_fetch=force_fetch
    )
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
        logger.error("Azure secret lacks client_id or client_secret")
        raise ServerError()
    return AzureApp(client_id=client_id, client_secret=secret)


class MicrosoftIdentity:
    def __init__(
        self,
        login_url: str,
        *,
        client: httpx.Client | None = None,
        read_timeout: float = 4.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.login_url = login_url.rstrip("/")
        self.read_timeout = read_timeout
        self._client = client
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._sleep = sleep
        self._tenants: dict[str, tuple[float, str]] = {}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import httpx

                    from teams_connect.adapters import tls

                    self._client = httpx.Client(
                        timeout=httpx.Timeout(connect=2.0, read=self.read_timeout, write=4.0, pool=1.0),
                        follow_redirects=False,
                        verify=tls.context(),  # the container's one TLS context (the Nylas client's too)
                    )
        return self._client

    def warm(self) -> None:
        """Create the HTTP client now (at init), for a function that calls Microsoft on its hot path."""
        _ = self.client

    # --- calls ---------------------------------------------------------------------------------------
    def _call(
        self, method: str, path: str, *, deadline: float | None, what: str, **kwargs: Any
    ) -> httpx.Response:
        """One request with retries on transport errors, 429 and 5xx, inside the deadline (a
        `time.monotonic()` value, as `web.deadline_from` gives; None = `DEFAULT_BUDGET_SECONDS`)."""
        import httpx

        end = self._monotonic() + DEFAULT_BUDGET_SECONDS if deadline is None else deadline
        url = f"{self.login_url}{path}"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            remaining = end - self._monotonic()
            if remaining < _MIN_ATTEMPT_SECONDS:
                break
            timeout = httpx.Timeout(
                connect=min(2.0, remaining),
                read=min(self.read_timeout, remaining),
                write=min(4.0, remaining),
                pool=1.0,
            )
            try:
                response = self.client.request(method, url, timeout=timeout, **kwargs)
            except httpx.HTTPError as exc:
                logger.warning(
                    "Microsoft identity platform unreachable",
                    extra={"call": what, "error_type": type(exc).__name__, "attempt": attempt},
                )
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                logger.warning(
                    "Microsoft identity platform answered an error",
                    extra={"call": what, "status": response.status_code, "attempt": attempt},
                )
            pause = min(1.0, 0.2 * 2 ** (attempt - 1)) * _random.random()
            if self._monotonic() + pause + _MIN_ATTEMPT_SECONDS >= end or attempt == MAX_ATTEMPTS:
                break
            self._sleep(pause)
        raise UpstreamUnavailable()

    def resolve_tenant(self, ref: str, *, deadline: float | None = None) -> str:
        """The tenant id of `ref` (a tenant id or a domain). Unknown tenant → `InvalidRequest`."""
        cached = self._cached(ref)
        if cached is not None:
            return cached
        response = self._call(
            "GET", f"/{ref}/v2.0/.well-known/openid-configuration", deadline=deadline, what="discovery"
        )
        if response.status_code in (400, 404):
            raise InvalidRequest("tenant: no Microsoft Entra tenant is known by that id or domain.")
        if response.status_code != 200:
            logger.error("discovery document answered unexpectedly", extra={"status": response.status_code})
            raise UpstreamUnavailable()
        try:
            body = response.json()
        except ValueError:
            body = None
        tenant_id = rules.tenant_id_from_issuer(
            body.get("issuer") if isinstance(body, dict) else None, self.login_url
        )
        if tenant_id is None:
            logger.error("discovery document without a usable issuer")
            raise UpstreamUnavailable()
        self._remember(ref, tenant_id)
        return tenant_id

    def tenant_of_email(self, email: str, *, deadline: float | None = None) -> str | None:
        """Best effort: the tenant of a mailbox's domain (the consumer tenant for personal domains);
        None when it cannot be learnt within `TENANT_LOOKUP_SECONDS` (it runs on the browser's path
        of the connect callback, so a slow Microsoft costs at most that). Never raises."""
        domain = rules.email_domain(email)
        if domain is None:
            return None
        if domain in rules.PERSONAL_DOMAINS:
            return rules.CONSUMER_TENANT_ID
        budget = self._monotonic() + TENANT_LOOKUP_SECONDS
        try:
            return self.resolve_tenant(domain, deadline=budget if deadline is None else min(deadline, budget))
        except (InvalidRequest, UpstreamUnavailable, ServerError):
            return None

    def app_present(self, tenant_id: str, app: AzureApp, *, deadline: float | None = None) -> bool:
        """True when a client-credentials token for `tenant_id` is issued to the Azure app."""
        response = self._call(
            "POST",
            f"/{tenant_id}/oauth2/v2.0/token",
            deadline=deadline,
            what="client_credentials",
            data={
                "grant_type": "client_credentials",
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "scope": rules.GRAPH_DEFAULT_SCOPE,
            },
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        if response.status_code == 200 and isinstance(body.get("access_token"), str):
            return True  # the token itself is discarded, never logged or stored
        codes = {c for c in body.get("error_codes") or [] if isinstance(c, int)}
        error = str(body.get("error") or "")
        if response.status_code == 401 or error == "invalid_client":
            logger.error(
                "the Azure app's credentials were refused by Microsoft",
                extra={"error_codes": sorted(codes)[:5]},
            )
            raise ServerError()
        if codes & _NOT_PRESENT_CODES or error in ("unauthorized_client", "invalid_request"):
            logger.info("the app is not present in the tenant", extra={"error_codes": sorted(codes)[:5]})
            return False
        logger.error(
            "token endpoint answered unexpectedly",
            extra={"status": response.status_code, "error": error[:64]},
        )
        raise UpstreamUnavailable()

    # --- tenant cache (per container) -------------------------------------------------------------
    def _cached(self, ref: str) -> str | None:
        with self._lock:
            hit = self._tenants.get(ref)
        if hit is not None and self._monotonic() - hit[0] < _TENANT_CACHE_SECONDS:
            return hit[1]
        return None

    def _remember(self, ref: str, tenant_id: str) -> None:
        with self._lock:
            if len(self._tenants) >= _TENANT_CACHE_MAX:
                self._tenants.clear()
            self._tenants[ref] = (self._monotonic(), tenant_id)
