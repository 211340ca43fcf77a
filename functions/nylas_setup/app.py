"""`Custom::NylasSetup`: sets up the Nylas side at deploy time (CloudFormation custom resource).

Create  → ensure the Microsoft connector (v3) / integration (beta) and register our callback URI; v3
          with `WebhookUrl` + `WebhookSecretArn`: also the grant-notification webhook, its secret stored
          in that secret (the template makes this resource wait for the webhook route).
Update  → the same, re-sending the Azure settings with the client secret (a secret cannot be compared,
          so every CloudFormation Update pushes it; change `SecretVersion` to force one after a rotation).
          When only the callback URL changed, the old callback URI is then removed (best effort).
Delete  → `OnDelete: Retain` (default): remove only our callback URI and keep the connector/integration
          (deleting it would stop every grant of the Nylas application at once). Best effort: a failure
          is logged and the Delete still succeeds, so a stack deletion or rollback never hangs on a
          leftover URI registration. `OnDelete: Remove`: also delete the connector/integration; failures
          are reported as FAILED. A Delete for a physical id this function never returned (a Create
          that failed) is a no-op.

Physical id: `nylas-<flavour>-microsoft-<region>` (or `…-custom-<hash>` with a base-URL override).
Changing flavour, region or host therefore replaces the resource, and CloudFormation's Delete of the
old id cleans up the old target per its own `OnDelete`.

crhelper always answers CloudFormation (also on init failure and just before the Lambda times out).
Reasons never hold a credential: Setup errors are credential-free by construction and are redacted
again against the loaded secret values; any other exception is reported by type name only.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crhelper import CfnResource

logger = logging.getLogger(__name__)
helper = CfnResource(json_logging=False, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)

try:
    from teams_connect.setup import (
        DEFAULT_SCOPES,
        Credentials,
        OnDelete,
        SecretsManagerStore,
        SetupError,
        SetupReport,
        SetupSpec,
        WebhookSpec,
        ensure_nylas_side,
        ensure_webhook_side,
        load_credentials,
        physical_resource_id,
        redact,
        resolve_base_url,
        teardown_nylas_side,
        teardown_webhook_side,
    )
except Exception as exc:  # every request is then answered FAILED with this reason
    helper.init_failure(exc)

KNOWN_PROPERTIES = frozenset(
    {
        "ServiceToken",
        "NylasApi",
        "NylasRegion",
        "NylasBaseUrl",
        "AzureTenant",
        "CallbackUrl",
        "NylasSecretArn",
        "AzureSecretArn",
        "Scopes",
        "OnDelete",
        "IntegrationName",
        "ExpiresIn",
        "SecretVersion",
        "WebhookUrl",
        "WebhookSecretArn",
    }
)


class CustomResourceError(Exception):
    """What crhelper reports as the Reason: already safe to show."""


@dataclass(frozen=True)
class Properties:
    spec: SetupSpec
    region: str
    nylas_secret_arn: str
    azure_secret_arn: str
    on_delete: OnDelete
    physical_id: str


def _text(props: Mapping[str, Any], key: str, default: str = "") -> str:
    value = props.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise SetupError(f"property {key} must be a string")
    return value.strip() or default


def _scopes(props: Mapping[str, Any], flavour: str) -> tuple[str, ...]:
    value = props.get("Scopes")
    if value is None or value == "" or value == []:
        return DEFAULT_SCOPES[flavour]
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise SetupError("property Scopes must be a list of strings or a comma-separated string")
    scopes = tuple(s.strip() for s in items if s.strip())
    return scopes or DEFAULT_SCOPES[flavour]


def parse_properties(props: Mapping[str, Any]) -> Properties:
    """The custom resource's ResourceProperties, validated (raises `SetupError`)."""
    if not isinstance(props, Mapping):
        raise SetupError("ResourceProperties are missing")
    unknown = sorted(set(props) - KNOWN_PROPERTIES)
    if unknown:
        raise SetupError(f"unknown properties: {', '.join(unknown)[:120]}")
    flavour = _text(props, "NylasApi", "v3")
    region = _text(props, "NylasRegion", "us")
    base_url = resolve_base_url(flavour, region, _text(props, "NylasBaseUrl") or None)
    on_delete = _text(props, "OnDelete", "Retain")
    if on_delete not in ("Retain", "Remove"):
        raise SetupError("property OnDelete must be Retain or Remove")
    expires_raw = _text(props, "ExpiresIn", "1209600")
    if not expires_raw.isdigit():
        raise SetupError("property ExpiresIn must be a whole number of seconds")
    nylas_arn = _text(props, "NylasSecretArn")
    azure_arn = _text(props, "AzureSecretArn")
    if not nylas_arn or not azure_arn:
        raise SetupError("properties NylasSecretArn and AzureSecretArn are required")
    spec = SetupSpec(
        flavour="v3" if flavour == "v3" else "beta",
        base_url=base_url,
        tenant=_text(props, "AzureTenant"),
        callback_url=_text(props, "CallbackUrl"),
        scopes=_scopes(props, flavour),
        integration_name=_text(props, "IntegrationName", "teams-connect"),
        expires_in=int(expires_raw),
    )
    return Properties(
        spec=spec,
        region=region,
        nylas_secret_arn=nylas_arn,
        azure_secret_arn=azure_arn,
        on_delete="Remove" if on_delete == "Remove" else "Retain",
        physical_id=physical_resource_id(flavour, region, base_url),
    )


def _webhook(props: Mapping[str, Any]) -> WebhookSpec | None:
    url, arn = _text(props, "WebhookUrl"), _text(props, "WebhookSecretArn")
    if not url and not arn:
        return None
    return WebhookSpec(url=url, secret_arn=arn)


@dataclass
class _Vault:
    """Loads credentials and remembers their values, to redact anything that is reported."""

    secrets: tuple[str, ...] = field(default=())

    def load(self, nylas_arn: str, azure_arn: str | None) -> Credentials:
        credentials = load_credentials(nylas_arn, azure_arn)
        self.secrets = (*self.secrets, *credentials.secret_values())
        return credentials

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


def _safely[T](work: Callable[[_Vault], T]) -> T:
    vault = _Vault()
    try:
        return work(vault)
    except SetupError as exc:
        raise CustomResourceError(vault.redact(str(exc))) from None
    except Exception as exc:
        logger.error("unexpected error:\n%s", vault.redact("".join(traceback.format_exception(exc))))
        raise CustomResourceError(
            f"unexpected {type(exc).__name__} (details in the function's log)"
        ) from None


def _log(report: SetupReport) -> None:
    for line in report.lines():
        logger.info("%s", line)


def _ensure(event: Mapping[str, Any], vault: _Vault, *, push_secret: bool) -> str:
    props = parse_properties(event.get("ResourceProperties") or {})
    credentials = vault.load(props.nylas_secret_arn, props.azure_secret_arn)
    report = ensure_nylas_side(props.spec, credentials, push_secret=push_secret)
    _log(report)
    webhook = _webhook(event.get("ResourceProperties") or {})
    if webhook is not None:  # v3: the grant-notification destination + its secret (setup/webhook.py)
        import boto3

        store = SecretsManagerStore(boto3.client("secretsmanager"))
        _log(ensure_webhook_side(props.spec, credentials, webhook, store))
    helper.Data.update(
        {
            "Flavour": props.spec.flavour,
            "BaseUrl": props.spec.base_url,
            "Changed": str(report.changed).lower(),
        }
    )
    return props.physical_id


@helper.create
def create(event: Mapping[str, Any], context: Any) -> str:
    return _safely(lambda vault: _ensure(event, vault, push_secret=False))


@helper.update
def update(event: Mapping[str, Any], context: Any) -> str:
    def work(vault: _Vault) -> str:
        physical_id = _ensure(event, vault, push_secret=True)
        _drop_old_callback(event, physical_id, vault)
        return physical_id

    return _safely(work)


def _drop_old_callback(event: Mapping[str, Any], physical_id: str, vault: _Vault) -> None:
    """Same target, new callback URL: remove the old callback registration (best effort). A changed
    target is a replacement instead, and the old one is cleaned up by CloudFormation's Delete."""
    try:
        old = parse_properties(event.get("OldResourceProperties") or {})
        new = parse_properties(event.get("ResourceProperties") or {})
    except SetupError:
        return
    if old.physical_id != physical_id or old.spec.callback_url == new.spec.callback_url:
        return
    try:
        credentials = vault.load(old.nylas_secret_arn, None)
        _log(teardown_nylas_side(old.spec, credentials, on_delete="Retain"))
    except SetupError as exc:
        logger.warning("old callback URI left registered: %s", vault.redact(str(exc)))


@helper.delete
def delete(event: Mapping[str, Any], context: Any) -> None:
    physical_id = str(event.get("PhysicalResourceId") or "")
    if not physical_id.startswith("nylas-"):
        logger.info(
            "Delete of %s: not created by this function (a failed Create), nothing to undo", physical_id
        )
        return None
    try:
        props = parse_properties(event.get("ResourceProperties") or {})
    except SetupError as exc:
        logger.warning("Delete of %s: properties unusable (%s), nothing undone", physical_id, exc)
        return None

    def work(vault: _Vault) -> None:
        credentials = vault.load(props.nylas_secret_arn, None)
        _log(teardown_nylas_side(props.spec, credentials, on_delete=props.on_delete))
        webhook = _webhook(event.get("ResourceProperties") or {})
        if webhook is not None:  # nothing else will answer at this URL
            _log(teardown_webhook_side(props.spec, credentials, webhook.url))

    if props.on_delete == "Remove":
        _safely(work)
        return None
    try:
        _safely(work)
    except CustomResourceError as exc:
        logger.warning("Delete of %s (OnDelete Retain) is best effort; left as is: %s", physical_id, exc)
    return None


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    helper(event, context)
