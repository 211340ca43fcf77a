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

Not a confused deputy: whoever may invoke this function must not be able to point it (and the secrets
it reads with its own role) elsewhere, nor change what it sets up. So the target and the policy come
from the function's own environment, set by the template from the same parameters: flavour
(`NYLAS_API`), region, base URL, the two secret ARNs, the callback (`PUBLIC_BASE_URL`), the stack
(`STACK_ID`), and (security review 3, G2) the tenant (`AZURE_TENANT`), the scopes (`NYLAS_SCOPES`),
the integration name and lifetime (`NYLAS_INTEGRATION_NAME`, `NYLAS_EXPIRES_IN`; defaults
`teams-connect`, 1209600) and what a Delete does (`NYLAS_ON_DELETE`, never the event's `OnDelete`).
A Create or Update whose properties name anything else is refused (FAILED, nothing called). A Delete,
or the old properties of an Update, may name a previous flavour or region, but only Nylas's own host
for it, always the configured secrets, and only a callback URL this function registered itself (the
configured one, or one it recorded in the webhook secret as `registered_callback_urls`). An event
whose `ResponseURL` is not CloudFormation's presigned S3 URL gets no answer at all.

Invoking this function is administering the Nylas application: grant `lambda:InvokeFunction` on it to
CloudFormation only (docs/security.md).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
    from teams_connect.setup.models import default_base_url
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


# CloudFormation answers to a presigned URL of its own bucket, e.g.
# https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/… (or …s3.us-east-1.…).
_RESPONSE_HOST = re.compile(
    r"^cloudformation-custom-resource-response-[a-z0-9-]{2,40}"
    r"\.s3(?:[.-][a-z0-9-]{2,30})?\.amazonaws\.com(?:\.cn)?\Z"
)


def is_cloudformation_response_url(url: object) -> bool:
    """`https://cloudformation-custom-resource-response-<region>.s3…amazonaws.com/<path>?<signature>`."""
    if not isinstance(url, str) or len(url) > 8192 or not url.isascii():
        return False
    parts = urlsplit(url)
    if parts.scheme != "https" or "@" in parts.netloc or parts.port is not None or parts.fragment:
        return False
    query = parse_qs(parts.query)
    signed = "X-Amz-Signature" in query or "Signature" in query
    return bool(_RESPONSE_HOST.match(parts.hostname or "")) and len(parts.path) > 1 and signed


@dataclass(frozen=True)
class Configured:
    """The target as the template configured it (the function's environment)."""

    flavour: str
    region: str
    base_url: str
    nylas_secret_arn: str
    azure_secret_arn: str
    callback_url: str
    stack_id: str
    webhook_url: str = ""
    webhook_secret_arn: str = ""
    tenant: str = "common"
    scopes: tuple[str, ...] = ()
    integration_name: str = "teams-connect"
    expires_in: int = 1209600
    on_delete: OnDelete = "Retain"


def configured(env: Mapping[str, str] | None = None) -> Configured:
    e = os.environ if env is None else env
    missing = [
        name
        for name in ("NYLAS_SECRET_ARN", "AZURE_SECRET_ARN", "PUBLIC_BASE_URL", "STACK_ID")
        if not e.get(name, "").strip()
    ]
    if missing:
        raise SetupError(f"the function's environment lacks {', '.join(missing)}")
    flavour = e.get("NYLAS_API", "").strip() or "v3"
    region = e.get("NYLAS_REGION", "").strip() or "us"
    on_delete = e.get("NYLAS_ON_DELETE", "").strip() or "Retain"
    expires_in = e.get("NYLAS_EXPIRES_IN", "").strip() or "1209600"
    if on_delete not in ("Retain", "Remove") or not expires_in.isdigit():
        raise SetupError("the function's NYLAS_ON_DELETE or NYLAS_EXPIRES_IN is not valid")
    return Configured(
        flavour=flavour,
        region=region,
        base_url=resolve_base_url(flavour, region, e.get("NYLAS_BASE_URL", "").strip() or None),
        nylas_secret_arn=e["NYLAS_SECRET_ARN"].strip(),
        azure_secret_arn=e["AZURE_SECRET_ARN"].strip(),
        callback_url=e["PUBLIC_BASE_URL"].strip().rstrip("/") + "/connect/callback",
        stack_id=e["STACK_ID"].strip(),
        webhook_url=e["PUBLIC_BASE_URL"].strip().rstrip("/") + "/nylas/webhooks",
        webhook_secret_arn=e.get("WEBHOOK_SECRET_ARN", "").strip(),
        tenant=e.get("AZURE_TENANT", "").strip() or "common",
        scopes=_scopes({"Scopes": e.get("NYLAS_SCOPES", "")}, flavour),
        integration_name=e.get("NYLAS_INTEGRATION_NAME", "").strip() or "teams-connect",
        expires_in=int(expires_in),
        on_delete="Remove" if on_delete == "Remove" else "Retain",
    )


def check_current(props: Properties, conf: Configured) -> None:
    """A Create or Update: every target property must be the configured one."""
    differ = [
        name
        for name, given, expected in (
            ("NylasApi", props.spec.flavour, conf.flavour),
            ("NylasRegion", props.region, conf.region),
            ("NylasBaseUrl", props.spec.base_url, conf.base_url),
            ("NylasSecretArn", props.nylas_secret_arn, conf.nylas_secret_arn),
            ("AzureSecretArn", props.azure_secret_arn, conf.azure_secret_arn),
            ("CallbackUrl", props.spec.callback_url, conf.callback_url),
            ("AzureTenant", props.spec.tenant.lower(), conf.tenant.lower()),
            ("Scopes", props.spec.scopes, conf.scopes),
            ("IntegrationName", props.spec.integration_name, conf.integration_name),
            ("ExpiresIn", props.spec.expires_in, conf.expires_in),
            ("OnDelete", props.on_delete, conf.on_delete),
        )
        if given != expected
    ]
    if differ:
        raise SetupError(f"properties differ from the function's configuration: {', '.join(differ)}")


def check_previous(props: Properties, conf: Configured, registered: tuple[str, ...] = ()) -> None:
    """A Delete or an Update's old properties: a previous flavour or region is fine, but the secrets
    go only to the configured host or to Nylas's own host for that flavour and region, and only a
    callback this function registered (`registered`, or the configured one) is ever unregistered."""
    official = default_base_url(props.spec.flavour, props.region)
    differ = [
        name
        for name, ok in (
            ("NylasBaseUrl", props.spec.base_url in (conf.base_url, official)),
            ("NylasSecretArn", props.nylas_secret_arn == conf.nylas_secret_arn),
            ("AzureSecretArn", props.azure_secret_arn == conf.azure_secret_arn),
            ("CallbackUrl", props.spec.callback_url in (conf.callback_url, *registered)),
        )
        if not ok
    ]
    if differ:
        raise SetupError(f"properties differ from the function's configuration: {', '.join(differ)}")


def check_stack(event: Mapping[str, Any], conf: Configured) -> None:
    if event.get("StackId") != conf.stack_id:
        raise SetupError("the request is not from this function's stack")


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


def _webhook(props: Mapping[str, Any], conf: Configured) -> WebhookSpec | None:
    """The webhook destination, only ever the configured one: a forged URL would have Nylas send
    grant notifications elsewhere, a forged ARN would have its secret written elsewhere."""
    url, arn = _text(props, "WebhookUrl"), _text(props, "WebhookSecretArn")
    if not url and not arn:
        return None
    differ = [
        name
        for name, given, expected in (
            ("WebhookUrl", url, conf.webhook_url),
            ("WebhookSecretArn", arn, conf.webhook_secret_arn),
        )
        if given != expected
    ]
    if differ:
        raise SetupError(f"properties differ from the function's configuration: {', '.join(differ)}")
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
    conf = configured()
    check_stack(event, conf)
    props = parse_properties(event.get("ResourceProperties") or {})
    check_current(props, conf)
    webhook = _webhook(event.get("ResourceProperties") or {}, conf)
    credentials = vault.load(props.nylas_secret_arn, props.azure_secret_arn)
    report = ensure_nylas_side(props.spec, credentials, push_secret=push_secret)
    _log(report)
    if webhook is not None:  # v3: the grant-notification destination + its secret (setup/webhook.py)
        _log(ensure_webhook_side(props.spec, credentials, webhook, _secret_store()))
    _remember_callback(conf, props.spec.callback_url)
    helper.Data.update(
        {
            "Flavour": props.spec.flavour,
            "BaseUrl": props.spec.base_url,
            "Changed": str(report.changed).lower(),
        }
    )
    return props.physical_id


def _secret_store() -> SecretsManagerStore:
    import boto3

    return SecretsManagerStore(boto3.client("secretsmanager"))


REGISTERED_KEY = "registered_callback_urls"
MAX_REGISTERED = 10


def registered_callbacks(conf: Configured) -> tuple[str, ...]:
    """The callback URLs this function registered before (kept in the stack's webhook secret)."""
    if not conf.webhook_secret_arn:
        return ()
    try:
        found = _secret_store().read(conf.webhook_secret_arn).get(REGISTERED_KEY)
    except SetupError as exc:
        logger.warning("registered callbacks unreadable: %s", exc)
        return ()
    return tuple(u for u in found if isinstance(u, str)) if isinstance(found, list) else ()


def _remember_callback(conf: Configured, url: str) -> None:
    """Record `url` as registered by this function (the newest last), so that a later Update or Delete
    may unregister it, and nothing else. Best effort: without the record the old URI stays registered."""
    if not conf.webhook_secret_arn:
        return
    try:
        store = _secret_store()
        value = store.read(conf.webhook_secret_arn)
        known = [u for u in value.get(REGISTERED_KEY) or [] if isinstance(u, str) and u != url]
        value[REGISTERED_KEY] = [*known, url][-MAX_REGISTERED:]
        store.write(conf.webhook_secret_arn, value)
    except SetupError as exc:
        logger.warning("callback not recorded as ours: %s", exc)


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
        conf = configured()
        check_previous(old, conf, registered_callbacks(conf))
    except SetupError as exc:
        logger.warning("old callback URI left as is: %s", exc)
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
        conf = configured()
        check_stack(event, conf)
        props = parse_properties(event.get("ResourceProperties") or {})
        check_previous(props, conf, registered_callbacks(conf))
        webhook = _webhook(event.get("ResourceProperties") or {}, conf)
    except SetupError as exc:
        logger.warning("Delete of %s: properties unusable (%s), nothing undone", physical_id, exc)
        return None

    # What a Delete does is the stack's parameter (the function's environment), never the event's.
    on_delete = conf.on_delete

    def work(vault: _Vault) -> None:
        credentials = vault.load(props.nylas_secret_arn, None)
        _log(teardown_nylas_side(props.spec, credentials, on_delete=on_delete))
        if webhook is not None:  # nothing else will answer at this URL
            _log(teardown_webhook_side(props.spec, credentials, webhook.url))

    if on_delete == "Remove":
        _safely(work)
        return None
    try:
        _safely(work)
    except CustomResourceError as exc:
        logger.warning("Delete of %s (OnDelete Retain) is best effort; left as is: %s", physical_id, exc)
    return None


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    if not isinstance(event, dict) or not is_cloudformation_response_url(event.get("ResponseURL")):
        # Not CloudFormation's request: no answer is sent anywhere and nothing is done.
        logger.error("refused: the ResponseURL is not a CloudFormation presigned S3 URL")
        return
    helper(event, context)
