"""v3 only: the Nylas webhook destination for grant notifications, and its secret in Secrets Manager.

`ensure_webhook` (nylas-lifecycle.md §1.2-1.5):
- no destination for our URL → probe our own challenge first (Nylas runs it during the create call and
  answers 400 when it fails, so the route must already serve: the probe retries while a deployment
  settles), then `POST /v3/webhooks` for the grant triggers and store the returned secret (it is shown
  only once);
- a destination exists → `PUT /v3/webhooks/{id}` when its triggers differ or it is not active (Nylas
  never re-activates a `failed` destination by itself);
- the stored secret is not this destination's (or `rotate=True`) → `POST /v3/webhooks/rotate-secret/{id}`
  (never the Python SDK's `PUT …/{id}/rotate-secret`, a path Nylas does not serve) and store the new
  secret, keeping the previous one as `previous_webhook_secret` for deliveries already in flight until
  `previous_expires_at` (now + `previous_ttl`, 1 h by default; security review 3, G3), or not at all
  with `retire_previous=True` (after a leak).
The secret JSON is `{"webhook_id", "webhook_secret", "previous_webhook_secret"?, "previous_expires_at"?}`
(other keys, e.g. the setup's `registered_callback_urls`, are kept); no value is ever logged or reported.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from .http import NylasSetupHttp, list_of, object_of
from .models import Action, SetupError, check_url

WEBHOOKS_PATH = "/v3/webhooks"
GRANT_TRIGGERS = ("grant.created", "grant.updated", "grant.deleted", "grant.expired")
DESCRIPTION = "teams-connect grant lifecycle"
#: How long a rotated-out webhook secret is still accepted (Nylas retries a delivery for minutes to hours).
PREVIOUS_SECRET_TTL = 3600
_SECRET_KEYS = ("webhook_id", "webhook_secret", "previous_webhook_secret", "previous_expires_at")


@dataclass(frozen=True)
class WebhookSpec:
    url: str  # <public base URL>/nylas/webhooks
    secret_arn: str

    def __post_init__(self) -> None:
        check_url(self.url, "webhook URL")
        if not isinstance(self.secret_arn, str) or not self.secret_arn.startswith("arn:"):
            raise SetupError("the webhook secret ARN is required")


class SecretStore(Protocol):
    def read(self, arn: str) -> dict[str, Any]: ...

    def write(self, arn: str, value: dict[str, Any]) -> None: ...


class SecretsManagerStore:
    """`SecretStore` over a Secrets Manager client (boto3/botocore)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, arn: str) -> dict[str, Any]:
        try:
            text = self.client.get_secret_value(SecretId=arn).get("SecretString") or "{}"
            value = json.loads(text)
        except (ClientError, BotoCoreError) as exc:
            raise SetupError(f"could not read the webhook secret {arn}: {_code(exc)}") from None
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}

    def write(self, arn: str, value: dict[str, Any]) -> None:
        try:
            self.client.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
        except (ClientError, BotoCoreError) as exc:
            raise SetupError(f"could not store the webhook secret in {arn}: {_code(exc)}") from None


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def probe_challenge(
    url: str,
    *,
    attempts: int = 20,
    delay: float = 3.0,
    get: Callable[..., httpx.Response] = httpx.get,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Our route answers Nylas's challenge (GET ?challenge=x → 200 text x), retried while it deploys."""
    last = "no answer"
    for attempt in range(attempts):
        value = secrets.token_urlsafe(16)
        try:
            answer = get(url, params={"challenge": value}, timeout=10.0, follow_redirects=False)
            if answer.status_code == 200 and answer.text == value:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if attempt + 1 < attempts:
            sleep(delay)
    raise SetupError(f"the webhook URL {url} does not answer the challenge ({last}); is the route deployed?")


def ensure_webhook(
    http: NylasSetupHttp,
    spec: WebhookSpec,
    store: SecretStore,
    *,
    dry_run: bool = False,
    rotate: bool = False,
    retire_previous: bool = False,
    previous_ttl: int = PREVIOUS_SECRET_TTL,
    clock: Callable[[], float] = time.time,
    probe: Callable[[str], None] = probe_challenge,
) -> list[Action]:
    actions: list[Action] = []
    ours = [w for w in list_of(http.get(WEBHOOKS_PATH), "webhooks") if w.get("webhook_url") == spec.url]
    stored = store.read(spec.secret_arn)
    kept = {k: v for k, v in stored.items() if k not in _SECRET_KEYS}  # e.g. registered_callback_urls
    if not ours:
        if not dry_run:
            probe(spec.url)
            created = object_of(
                http.send(
                    "POST",
                    WEBHOOKS_PATH,
                    {
                        "trigger_types": list(GRANT_TRIGGERS),
                        "webhook_url": spec.url,
                        "description": DESCRIPTION,
                    },
                ),
                "webhook",
            )
            webhook_id, secret = created.get("id"), created.get("webhook_secret")
            if not isinstance(webhook_id, str) or not isinstance(secret, str) or not secret:
                raise SetupError("Nylas created the webhook but returned no id or secret")
            store.write(spec.secret_arn, {**kept, "webhook_id": webhook_id, "webhook_secret": secret})
        actions.append(Action("webhook", spec.url, "created", "grant triggers"))
        actions.append(Action("webhook secret", spec.secret_arn, "updated", "stored"))
        return actions

    webhook = ours[0]
    webhook_id = webhook.get("id")
    if not isinstance(webhook_id, str) or not webhook_id:
        raise SetupError("Nylas listed our webhook without an id")
    changed: list[str] = []
    triggers = webhook.get("trigger_types")
    if not isinstance(triggers, list) or set(triggers) != set(GRANT_TRIGGERS):
        changed.append("trigger_types")
    if webhook.get("status") not in ("active", "failing"):
        changed.append("status")
    if changed:
        if not dry_run:
            if "status" in changed:
                probe(spec.url)  # re-activation runs the challenge again
            http.send(
                "PUT",
                f"{WEBHOOKS_PATH}/{webhook_id}",
                {"trigger_types": list(GRANT_TRIGGERS), "status": "active"},
            )
        actions.append(Action("webhook", spec.url, "updated", "changed: " + ", ".join(changed)))
    else:
        actions.append(Action("webhook", spec.url, "unchanged"))

    have_secret = stored.get("webhook_id") == webhook_id and isinstance(stored.get("webhook_secret"), str)
    if rotate or not have_secret:
        if not dry_run:
            rotated = object_of(http.send("POST", f"{WEBHOOKS_PATH}/rotate-secret/{webhook_id}"), "webhook")
            secret = rotated.get("webhook_secret")
            if not isinstance(secret, str) or not secret:
                raise SetupError("Nylas rotated the webhook secret but returned none")
            value: dict[str, Any] = {**kept, "webhook_id": webhook_id, "webhook_secret": secret}
            if have_secret and not retire_previous:
                value["previous_webhook_secret"] = stored["webhook_secret"]
                value["previous_expires_at"] = int(clock()) + max(0, int(previous_ttl))
            store.write(spec.secret_arn, value)
        detail = "rotated" if rotate else "rotated: the stored secret was not this webhook's"
        if have_secret:
            detail += (
                "; previous secret retired"
                if retire_previous
                else f"; previous accepted {previous_ttl} s more"
            )
        actions.append(Action("webhook secret", spec.secret_arn, "updated", detail))
    else:
        actions.append(Action("webhook secret", spec.secret_arn, "unchanged"))
    return actions


def teardown_webhook(http: NylasSetupHttp, url: str, *, dry_run: bool = False) -> list[Action]:
    """Delete our destination (the stack's Delete): nothing else sends to this URL."""
    ours = [w for w in list_of(http.get(WEBHOOKS_PATH), "webhooks") if w.get("webhook_url") == url]
    removed = False
    for webhook in ours:
        webhook_id = webhook.get("id")
        if (
            isinstance(webhook_id, str)
            and webhook_id
            and (dry_run or http.delete(f"{WEBHOOKS_PATH}/{webhook_id}"))
        ):
            removed = True
    return [Action("webhook", url, "deleted" if removed else "absent")]
