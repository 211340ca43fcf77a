"""The two flavours' setup steps. Each function returns the actions it took (or, dry run, would take).

v3   (nylas-api.md §1.8, §1.9): Microsoft connector `/v3/connectors/microsoft` + the callback URI
     registration in `/v3/applications/redirect-uris`.
beta (nylas-api.md §2.3, §2.6): Microsoft integration `/connect/integrations/microsoft`; our callback
     is one of its `redirect_uris`.

The Azure client secret cannot be compared (Nylas may not return it, or return it masked), so it is
never read back: it is sent whenever settings are written (create, any settings change) and, with
`push_secret=True`, on every run (the operator's "re-send the rotated secret" switch; the custom
resource sets it on every CloudFormation Update).
"""

from __future__ import annotations

from typing import Any

from .http import NylasSetupHttp, list_of, object_of
from .models import Action, Credentials, OnDelete, SetupSpec

CONNECTOR_PATH = "/v3/connectors/microsoft"
REDIRECT_URIS_PATH = "/v3/applications/redirect-uris"
INTEGRATION_PATH = "/connect/integrations/microsoft"
_KEPT_DETAIL = "OnDelete Retain: deleting it would stop every grant of the application"


def _azure_settings(spec: SetupSpec, creds: Credentials) -> dict[str, str]:
    return {
        "client_id": creds.azure_client_id,
        "client_secret": creds.azure_client_secret,
        "tenant": spec.tenant,
    }


def _settings_diff(current: dict[str, Any], spec: SetupSpec, creds: Credentials) -> list[str]:
    """Names of the comparable Azure settings that differ. A value Nylas does not return is not
    compared, except the tenant, whose Nylas default is `common`."""
    settings = current.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    changed = []
    client_id = settings.get("client_id")
    if isinstance(client_id, str) and client_id != creds.azure_client_id:
        changed.append("client_id")
    tenant = settings.get("tenant") or "common"
    if not isinstance(tenant, str) or tenant.lower() != spec.tenant:
        changed.append("tenant")
    return changed


def _scope_differs(current: dict[str, Any], spec: SetupSpec) -> bool:
    if not spec.scopes:
        return False
    scope = current.get("scope")
    return not isinstance(scope, list) or set(scope) != set(spec.scopes)


def _changed(fields: list[str]) -> str:
    return "changed: " + ", ".join(fields)


# -- v3 ---------------------------------------------------------------------------------------------


def ensure_v3(
    http: NylasSetupHttp, spec: SetupSpec, creds: Credentials, *, dry_run: bool, push_secret: bool
) -> list[Action]:
    actions: list[Action] = []
    current = http.get(CONNECTOR_PATH, missing_ok=True)
    if current is None:
        body: dict[str, Any] = {"provider": "microsoft", "settings": _azure_settings(spec, creds)}
        if spec.scopes:
            body["scope"] = list(spec.scopes)
        if not dry_run:
            http.send("POST", "/v3/connectors", body)
        actions.append(Action("connector", "microsoft", "created", f"tenant {spec.tenant}"))
    else:
        connector = object_of(current, "connector microsoft")
        changed = _settings_diff(connector, spec, creds)
        if _scope_differs(connector, spec):
            changed.append("scope")
        if push_secret:
            changed.append("client_secret (re-sent)")
        if changed:
            patch: dict[str, Any] = {"settings": _azure_settings(spec, creds)}
            if spec.scopes:
                patch["scope"] = list(spec.scopes)
            if not dry_run:
                http.send("PATCH", CONNECTOR_PATH, patch)
            actions.append(Action("connector", "microsoft", "updated", _changed(changed)))
        else:
            actions.append(Action("connector", "microsoft", "unchanged"))

    registered = list_of(http.get(REDIRECT_URIS_PATH), "redirect URIs")
    if any(item.get("url") == spec.callback_url for item in registered):
        actions.append(Action("callback URI", spec.callback_url, "unchanged"))
    else:
        if not dry_run:
            http.send("POST", REDIRECT_URIS_PATH, {"url": spec.callback_url, "platform": "web"})
        actions.append(Action("callback URI", spec.callback_url, "created"))
    return actions


def teardown_v3(http: NylasSetupHttp, spec: SetupSpec, *, on_delete: OnDelete, dry_run: bool) -> list[Action]:
    actions: list[Action] = []
    registered = list_of(http.get(REDIRECT_URIS_PATH), "redirect URIs")
    ours = [item for item in registered if item.get("url") == spec.callback_url]
    removed = False
    for item in ours:
        uri_id = item.get("id")
        if not isinstance(uri_id, str) or not uri_id:
            continue
        if dry_run or http.delete(f"{REDIRECT_URIS_PATH}/{uri_id}"):
            removed = True
    actions.append(Action("callback URI", spec.callback_url, "deleted" if removed else "absent"))

    if on_delete == "Remove":
        if dry_run:
            exists = http.get(CONNECTOR_PATH, missing_ok=True) is not None
        else:
            exists = http.delete(CONNECTOR_PATH)
        actions.append(Action("connector", "microsoft", "deleted" if exists else "absent"))
    else:
        actions.append(Action("connector", "microsoft", "kept", _KEPT_DETAIL))
    return actions


# -- beta -------------------------------------------------------------------------------------------


def ensure_beta(
    http: NylasSetupHttp, spec: SetupSpec, creds: Credentials, *, dry_run: bool, push_secret: bool
) -> list[Action]:
    current = http.get(INTEGRATION_PATH, missing_ok=True)
    if current is None:
        body: dict[str, Any] = {
            "name": spec.integration_name,
            "provider": "microsoft",
            "settings": _azure_settings(spec, creds),
            "redirect_uris": [spec.callback_url],
            "expires_in": spec.expires_in,
        }
        if spec.scopes:
            body["scope"] = list(spec.scopes)
        if not dry_run:
            http.send("POST", "/connect/integrations", body)
        return [
            Action("integration", "microsoft", "created", f"tenant {spec.tenant}"),
            Action("redirect URI", spec.callback_url, "created"),
        ]

    integration = object_of(current, "integration microsoft")
    patch: dict[str, Any] = {}
    changed = _settings_diff(integration, spec, creds)
    if push_secret:
        changed.append("client_secret (re-sent)")
    if changed:
        patch["settings"] = _azure_settings(spec, creds)
    if integration.get("name") != spec.integration_name:
        patch["name"] = spec.integration_name
        changed.append("name")
    if integration.get("expires_in") != spec.expires_in:
        patch["expires_in"] = spec.expires_in
        changed.append("expires_in")
    if _scope_differs(integration, spec):
        patch["scope"] = list(spec.scopes)
        changed.append("scope")
    existing = integration.get("redirect_uris")
    uris = [u for u in existing if isinstance(u, str)] if isinstance(existing, list) else []
    missing_uri = spec.callback_url not in uris
    if missing_uri:
        patch["redirect_uris"] = [*uris, spec.callback_url]  # keep the others, add ours
    if patch and not dry_run:
        http.send("PATCH", INTEGRATION_PATH, patch)
    return [
        Action("integration", "microsoft", "updated", _changed(changed))
        if changed
        else Action("integration", "microsoft", "unchanged"),
        Action("redirect URI", spec.callback_url, "created" if missing_uri else "unchanged"),
    ]


def teardown_beta(
    http: NylasSetupHttp, spec: SetupSpec, *, on_delete: OnDelete, dry_run: bool
) -> list[Action]:
    if on_delete == "Remove":
        if dry_run:
            exists = http.get(INTEGRATION_PATH, missing_ok=True) is not None
        else:
            exists = http.delete(INTEGRATION_PATH)
        return [Action("integration", "microsoft", "deleted" if exists else "absent")]

    current = http.get(INTEGRATION_PATH, missing_ok=True)
    if current is None:
        return [
            Action("redirect URI", spec.callback_url, "absent"),
            Action("integration", "microsoft", "absent"),
        ]
    integration = object_of(current, "integration microsoft")
    existing = integration.get("redirect_uris")
    uris = [u for u in existing if isinstance(u, str)] if isinstance(existing, list) else []
    remaining = [u for u in uris if u != spec.callback_url]
    if spec.callback_url in uris and not remaining:
        # an integration needs at least one redirect URI: the last one stays (with the integration)
        uri_action = Action("redirect URI", spec.callback_url, "kept", "the integration's only redirect URI")
    elif spec.callback_url in uris:
        if not dry_run:
            http.send("PATCH", INTEGRATION_PATH, {"redirect_uris": remaining})
        uri_action = Action("redirect URI", spec.callback_url, "deleted")
    else:
        uri_action = Action("redirect URI", spec.callback_url, "absent")
    return [uri_action, Action("integration", "microsoft", "kept", _KEPT_DETAIL)]
