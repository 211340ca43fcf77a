"""Set up (or tear down) the Nylas side of teams-connect from a terminal.

    python -m tools.nylas_setup --flavour v3 --region eu --tenant common \\
        --callback-url https://api.example.com/connect/callback \\
        --nylas-secret-arn arn:aws:secretsmanager:…:secret:teams-connect/nylas-AbCdEf \\
        --azure-secret-arn arn:aws:secretsmanager:…:secret:teams-connect/azure-AbCdEf [--dry-run]

v3 with --webhook-secret-arn (the stack's WebhookSecretArn output): also the grant-notification webhook
at --webhook-url (default $PUBLIC_BASE_URL/nylas/webhooks), its secret stored in that secret;
--rotate-webhook-secret rotates it (POST /v3/webhooks/rotate-secret/{id}).

Credentials come from Secrets Manager through boto3's default credential chain (AWS_PROFILE,
AWS_REGION, AWS_ENDPOINT_URL for a local moto all work). Defaults come from the functions' environment
variable names (NYLAS_API, NYLAS_REGION, NYLAS_BASE_URL, AZURE_TENANT, PUBLIC_BASE_URL, NYLAS_SECRET_ARN,
AZURE_SECRET_ARN, NYLAS_SCOPES, WEBHOOK_SECRET_ARN). One line per action on stdout; errors on stderr;
exit 0 on success, 1 on a setup error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    import teams_connect.setup  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=layers/core
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "core"))

from teams_connect.setup import (
    DEFAULT_SCOPES,
    SecretsManagerStore,
    SetupError,
    SetupReport,
    SetupSpec,
    WebhookSpec,
    ensure,
    ensure_webhook_side,
    load_credentials,
    resolve_base_url,
    teardown,
    teardown_webhook_side,
)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    public = env("PUBLIC_BASE_URL", "").rstrip("/")
    parser = argparse.ArgumentParser(
        prog="python -m tools.nylas_setup",
        description="Create or update the Nylas Microsoft connector (v3) / integration (beta) and register "
        "the callback URI, idempotently. --teardown removes only the callback URI unless --on-delete Remove.",
    )
    parser.add_argument("--flavour", choices=("v3", "beta"), default=env("NYLAS_API") or "v3")
    parser.add_argument("--region", choices=("us", "eu"), default=env("NYLAS_REGION") or "us")
    parser.add_argument("--base-url", default=env("NYLAS_BASE_URL") or None, help="Nylas host override")
    parser.add_argument(
        "--tenant",
        default=env("AZURE_TENANT") or None,
        help="tenant GUID (single tenant), 'common' (multitenant) or 'organizations'",
    )
    parser.add_argument(
        "--callback-url",
        default=f"{public}/connect/callback" if public else None,
        help="this deployment's /connect/callback URL (default: $PUBLIC_BASE_URL/connect/callback)",
    )
    parser.add_argument("--nylas-secret-arn", default=env("NYLAS_SECRET_ARN") or None)
    parser.add_argument("--azure-secret-arn", default=env("AZURE_SECRET_ARN") or None)
    parser.add_argument(
        "--scopes", default=env("NYLAS_SCOPES") or None, help="comma-separated (default: the flavour's list)"
    )
    parser.add_argument("--integration-name", default="teams-connect", help="beta: integration name")
    parser.add_argument("--expires-in", type=int, default=1_209_600, help="beta: JWT lifetime in seconds")
    parser.add_argument("--dry-run", action="store_true", help="read only; print what would change")
    parser.add_argument(
        "--push-secret",
        action="store_true",
        help="re-send the Azure settings with the client secret (after a rotation; it cannot be compared)",
    )
    parser.add_argument(
        "--webhook-url",
        default=f"{public}/nylas/webhooks" if public else None,
        help="v3: this deployment's /nylas/webhooks URL (default: $PUBLIC_BASE_URL/nylas/webhooks)",
    )
    parser.add_argument(
        "--webhook-secret-arn",
        default=env("WEBHOOK_SECRET_ARN") or None,
        help="v3: the secret that receives the webhook secret (stack output WebhookSecretArn)",
    )
    parser.add_argument(
        "--rotate-webhook-secret",
        action="store_true",
        help="v3: rotate the webhook secret and store the new one (the previous one is accepted 1 h more)",
    )
    parser.add_argument(
        "--retire-previous",
        action="store_true",
        help="v3, with --rotate-webhook-secret: do not accept the previous secret at all (after a leak)",
    )
    parser.add_argument(
        "--previous-ttl",
        type=int,
        default=3600,
        help="v3, with --rotate-webhook-secret: seconds the previous secret is still accepted (default 3600)",
    )
    parser.add_argument("--teardown", action="store_true", help="undo: remove our callback URI")
    parser.add_argument(
        "--on-delete",
        choices=("Retain", "Remove"),
        default="Retain",
        help="with --teardown: Remove also deletes the connector/integration (stops every grant!)",
    )
    return parser


def _spec(args: argparse.Namespace) -> SetupSpec:
    scopes: tuple[str, ...] = (
        tuple(s.strip() for s in args.scopes.split(",") if s.strip()) if args.scopes else ()
    )
    return SetupSpec(
        flavour=args.flavour,
        base_url=resolve_base_url(args.flavour, args.region, args.base_url),
        tenant=args.tenant,
        callback_url=args.callback_url,
        scopes=scopes or DEFAULT_SCOPES[args.flavour],
        integration_name=args.integration_name,
        expires_in=args.expires_in,
    )


def _print(report: SetupReport, out: Any) -> None:
    prefix = "(dry run) " if report.dry_run else ""
    print(f"{prefix}Nylas {report.flavour} at {report.base_url}", file=out)
    for line in report.lines():
        print(line, file=out)
    if report.dry_run:
        print("(dry run) nothing was changed" if report.changed else "(dry run) nothing to change", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    required = [
        ("--tenant", args.tenant),
        ("--callback-url", args.callback_url),
        ("--nylas-secret-arn", args.nylas_secret_arn),
    ]
    if not args.teardown:
        required.append(("--azure-secret-arn", args.azure_secret_arn))
    missing = [flag for flag, value in required if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)}")
    try:
        spec = _spec(args)
        if args.teardown:
            report = teardown(
                spec, nylas_secret_arn=args.nylas_secret_arn, on_delete=args.on_delete, dry_run=args.dry_run
            )
        else:
            report = ensure(
                spec,
                nylas_secret_arn=args.nylas_secret_arn,
                azure_secret_arn=args.azure_secret_arn,
                dry_run=args.dry_run,
                push_secret=args.push_secret,
            )
        webhook = _webhook_report(args, spec)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print(report, sys.stdout)
    for line in webhook.lines() if webhook else []:
        print(line, file=sys.stdout)
    return 0


def _webhook_report(args: argparse.Namespace, spec: SetupSpec) -> SetupReport | None:
    """v3 with a webhook secret ARN: the webhook destination (after the connector, never before)."""
    if spec.flavour != "v3" or not args.webhook_secret_arn:
        return None
    if not args.webhook_url:
        raise SetupError("--webhook-url (or PUBLIC_BASE_URL) is needed with --webhook-secret-arn")
    import boto3

    client = boto3.client("secretsmanager")
    credentials = load_credentials(args.nylas_secret_arn, None, client)
    if args.teardown:
        return teardown_webhook_side(spec, credentials, args.webhook_url, dry_run=args.dry_run)
    target = WebhookSpec(url=args.webhook_url, secret_arn=args.webhook_secret_arn)
    return ensure_webhook_side(
        spec,
        credentials,
        target,
        SecretsManagerStore(client),
        dry_run=args.dry_run,
        rotate=args.rotate_webhook_secret,
        retire_previous=args.retire_previous,
        previous_ttl=max(0, args.previous_ttl),
    )


if __name__ == "__main__":
    sys.exit(main())
