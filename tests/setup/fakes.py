"""Stateful respx fakes of the Nylas setup endpoints (v3 connectors + redirect URIs, beta integrations).

Each fake keeps the objects it was given, so a second ensure run sees what the first one created, and
exposes its respx routes by name for call-count assertions.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from typing import Any

import httpx
import respx

NYLAS_CLIENT_ID = "nylas-app-client-id-1234"
NYLAS_API_KEY = "nyk_v3_SECRET_api_key_4f9a1c"
NYLAS_CLIENT_SECRET = "nylas-client-SECRET-8d2b77"
AZURE_CLIENT_ID = "0c1d2e3f-aaaa-bbbb-cccc-0123456789ab"
AZURE_CLIENT_SECRET = "azure~SECRET~value~77c1e0"
SECRET_VALUES = (NYLAS_API_KEY, NYLAS_CLIENT_SECRET, AZURE_CLIENT_SECRET)

V3_BASE = "https://api.us.nylas.com"
BETA_BASE = "https://beta.us.nylas.com"
CALLBACK = "https://abc123.execute-api.us-east-1.amazonaws.com/connect/callback"
TENANT_GUID = "9b2c6f4e-3a1d-4c8b-9e7f-1a2b3c4d5e6f"


def assert_no_secret(text: str) -> None:
    for secret in SECRET_VALUES:
        assert secret not in text, "a secret value leaked"


def _v3_error(status: int, etype: str, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"request_id": "req-err-1", "error": {"type": etype, "message": message}}
    )


class _Fake:
    routes: dict[str, respx.Route]

    def writes(self) -> int:
        return sum(r.call_count for name, r in self.routes.items() if not name.startswith("get"))

    def reads(self) -> int:
        return sum(r.call_count for name, r in self.routes.items() if name.startswith("get"))

    def body_of(self, name: str, index: int = -1) -> dict[str, Any]:
        request = self.routes[name].calls[index].request
        return dict(json.loads(request.content))


class FakeV3(_Fake):
    """`/v3/connectors*` and `/v3/applications/redirect-uris*` with Bearer auth."""

    def __init__(self, router: respx.MockRouter, base: str = V3_BASE) -> None:
        self.connector: dict[str, Any] | None = None
        self.secret_sent: str | None = None
        self.redirect_uris: list[dict[str, Any]] = []
        self._ids = (f"ru-{n}" for n in itertools.count(1))
        path = r"/v3/applications/redirect-uris/(?P<uri_id>[^/]+)$"
        self.routes = {
            "get_connector": router.get(f"{base}/v3/connectors/microsoft").mock(
                side_effect=self._get_connector
            ),
            "post_connector": router.post(f"{base}/v3/connectors").mock(side_effect=self._post_connector),
            "patch_connector": router.patch(f"{base}/v3/connectors/microsoft").mock(
                side_effect=self._patch_connector
            ),
            "delete_connector": router.delete(f"{base}/v3/connectors/microsoft").mock(
                side_effect=self._delete_connector
            ),
            "get_uris": router.get(f"{base}/v3/applications/redirect-uris").mock(side_effect=self._get_uris),
            "post_uri": router.post(f"{base}/v3/applications/redirect-uris").mock(side_effect=self._post_uri),
            "delete_uri": router.delete(url__regex=f"^{base}{path}").mock(side_effect=self._delete_uri),
        }

    def seed(
        self, *, tenant: str = "common", scope: list[str] | None = None, uris: tuple[str, ...] = ()
    ) -> None:
        self.connector = {
            "name": "microsoft",
            "provider": "microsoft",
            "settings": {"client_id": AZURE_CLIENT_ID, "tenant": tenant},
            "scope": scope or [],
            "active_credential_id": None,
        }
        for url in uris:
            self.redirect_uris.append({"id": next(self._ids), "url": url, "platform": "web"})

    def _auth(self, request: httpx.Request) -> httpx.Response | None:
        if request.headers.get("authorization") != f"Bearer {NYLAS_API_KEY}":
            return _v3_error(401, "api.authentication_error", "Unauthorized")
        return None

    def _get_connector(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        if self.connector is None:
            return _v3_error(404, "api.not_found_error", "connector not found")
        return httpx.Response(200, json={"request_id": "req-1", "data": copy.deepcopy(self.connector)})

    def _post_connector(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)
        settings = dict(body["settings"])
        self.secret_sent = settings.pop("client_secret")
        self.connector = {
            "name": "microsoft",
            "provider": body["provider"],
            "settings": settings,
            "scope": body.get("scope", []),
        }
        return httpx.Response(201, json={"request_id": "req-2", "data": self.connector})

    def _patch_connector(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        assert self.connector is not None
        body = json.loads(request.content)
        if "settings" in body:
            settings = dict(body["settings"])
            self.secret_sent = settings.pop("client_secret", self.secret_sent)
            self.connector["settings"] = {**self.connector["settings"], **settings}
        if "scope" in body:
            self.connector["scope"] = body["scope"]
        return httpx.Response(200, json={"request_id": "req-3", "data": self.connector})

    def _delete_connector(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        if self.connector is None:
            return _v3_error(404, "api.not_found_error", "connector not found")
        self.connector = None
        return httpx.Response(200, json={"request_id": "req-4"})

    def _get_uris(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        return httpx.Response(200, json={"request_id": "req-5", "data": copy.deepcopy(self.redirect_uris)})

    def _post_uri(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)
        item = {"id": next(self._ids), "url": body["url"], "platform": body["platform"]}
        self.redirect_uris.append(item)
        return httpx.Response(200, json={"request_id": "req-6", "data": item})

    def _delete_uri(self, request: httpx.Request, uri_id: str) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        before = len(self.redirect_uris)
        self.redirect_uris = [u for u in self.redirect_uris if u["id"] != uri_id]
        if len(self.redirect_uris) == before:
            return _v3_error(404, "api.not_found_error", "redirect uri not found")
        return httpx.Response(200, json={"request_id": "req-7"})

    def urls(self) -> list[str]:
        return [u["url"] for u in self.redirect_uris]


class FakeBeta(_Fake):
    """`/connect/integrations*` with Basic auth (v2-style error bodies)."""

    def __init__(self, router: respx.MockRouter, base: str = BETA_BASE) -> None:
        self.integration: dict[str, Any] | None = None
        self.secret_sent: str | None = None
        path = f"{base}/connect/integrations/microsoft"
        self.routes = {
            "get_integration": router.get(path).mock(side_effect=self._get),
            "post_integration": router.post(f"{base}/connect/integrations").mock(side_effect=self._post),
            "patch_integration": router.patch(path).mock(side_effect=self._patch),
            "delete_integration": router.delete(path).mock(side_effect=self._delete),
        }

    def seed(self, *, tenant: str = "common", uris: tuple[str, ...] = (CALLBACK,), **extra: Any) -> None:
        self.integration = {
            "id": "microsoft",
            "name": "teams-connect",
            "provider": "microsoft",
            "settings": {"client_id": AZURE_CLIENT_ID, "tenant": tenant},
            "redirect_uris": list(uris),
            "expires_in": 1209600,
            "scope": [],
            **extra,
        }

    def _auth(self, request: httpx.Request) -> httpx.Response | None:
        token = base64.b64encode(f"{NYLAS_CLIENT_ID}:{NYLAS_CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {token}":
            return httpx.Response(401, json={"message": "Unauthorized", "type": "api_error"})
        return None

    def _get(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        if self.integration is None:
            return httpx.Response(404, json={"message": "Integration not found", "type": "api_error"})
        return httpx.Response(200, json={"data": copy.deepcopy(self.integration)})

    def _post(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        body = json.loads(request.content)
        settings = dict(body["settings"])
        self.secret_sent = settings.pop("client_secret")
        self.integration = {"id": body["provider"], **body, "settings": settings}
        return httpx.Response(200, json={"success": True, "data": self.integration})

    def _patch(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        assert self.integration is not None
        body = json.loads(request.content)
        if body.get("redirect_uris") == []:
            return httpx.Response(
                400, json={"message": "redirect_uris must not be empty", "type": "api_error"}
            )
        if "settings" in body:
            settings = dict(body.pop("settings"))
            self.secret_sent = settings.pop("client_secret", self.secret_sent)
            self.integration["settings"] = settings
        self.integration.update(body)
        return httpx.Response(200, json={"success": True, "data": self.integration})

    def _delete(self, request: httpx.Request) -> httpx.Response:
        if denied := self._auth(request):
            return denied
        if self.integration is None:
            return httpx.Response(404, json={"message": "Integration not found", "type": "api_error"})
        self.integration = None
        return httpx.Response(200, json={"success": True})
