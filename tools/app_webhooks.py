"""Operate the app webhooks (docs/lifecycle.md, "App webhooks") from a terminal.

    python -m tools.app_webhooks show-secret --secret-arn <AppWebhookSecretArn>
    python -m tools.app_webhooks rotate --secret-arn <AppWebhookSecretArn> [--overlap-hours 24]
    python -m tools.app_webhooks redrive --stack-name <stack> [--dry-run]
    python -m tools.app_webhooks redrive --queue-url <AppWebhookQueue URL> \\
        --dead-letter-url <AppWebhookDeadLetters URL> [--dead-letter-url <AppWebhookRuleDeadLetters URL>]

AWS credentials and region from boto3's default chain (AWS_PROFILE, AWS_REGION; AWS_ENDPOINT_URL for
a local moto). `show-secret` and `rotate` print the receiver's `whsec_` secret on stdout: run them
where that is fine. Exit 0 on success, 1 on an AWS error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GROUP_ID = "lifecycle"  # template.yaml, AppWebhookRule's SqsParameters
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRET_LENGTH = 44  # as the stack generates it: valid base64 of a 33-byte key
DEFAULT_OVERLAP_HOURS = 24


def new_secret() -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(SECRET_LENGTH))


def whsec(secret: str) -> str:
    return secret if secret.startswith("whsec_") else "whsec_" + secret


def read_secret(client: Any, arn: str) -> dict[str, Any]:
    value = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    if not isinstance(value, dict) or not isinstance(value.get("secret"), str):
        raise ValueError("the secret is not the app webhook secret ({'secret': ...})")
    return value


def rotate(client: Any, arn: str, *, overlap_hours: float, now: float | None = None) -> str:
    """New current secret; the current one keeps signing until now + overlap. Returns the new whsec_."""
    current = read_secret(client, arn)
    fresh = new_secret()
    until = int((time.time() if now is None else now) + overlap_hours * 3600)
    value = {"secret": fresh, "previous_secret": current["secret"], "previous_valid_until": until}
    client.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    return whsec(fresh)


@dataclass(frozen=True)
class Moved:
    queue_url: str
    count: int


def redrive(
    client: Any, *, queue_url: str, dead_letter_urls: Sequence[str], dry_run: bool = False
) -> list[Moved]:
    """Move every message of the dead-letter queues back to the delivery queue, oldest first; a message
    is deleted from its dead-letter queue only after the delivery queue took it."""
    moved: list[Moved] = []
    for url in dead_letter_urls:
        if dry_run:
            attributes = client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            moved.append(Moved(url, int(attributes["Attributes"]["ApproximateNumberOfMessages"])))
            continue
        count = 0
        while True:
            messages = (
                client.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=1
                ).get("Messages")
                or []
            )
            if not messages:
                break
            for message in messages:
                client.send_message(
                    QueueUrl=queue_url,
                    MessageBody=message["Body"],
                    MessageGroupId=GROUP_ID,
                    # Within SQS's 5-minute window a second run does not queue the same dead letter twice.
                    MessageDeduplicationId=f"redrive-{message['MessageId']}"[:128],
                )
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                count += 1
        moved.append(Moved(url, count))
    return moved


def stack_queues(cloudformation: Any, stack_name: str) -> tuple[str, list[str]]:
    """The delivery queue and the two dead-letter queues of a deployed stack (their URLs)."""

    def url(logical_id: str) -> str:
        found = cloudformation.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        return str(found["StackResourceDetail"]["PhysicalResourceId"])

    return url("AppWebhookQueue"), [url("AppWebhookDeadLetters"), url("AppWebhookRuleDeadLetters")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.app_webhooks", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show-secret", help="print the receiver's whsec_ secret")
    show.add_argument("--secret-arn", required=True)
    rot = commands.add_parser("rotate", help="new signing secret; the old one keeps signing for the overlap")
    rot.add_argument("--secret-arn", required=True)
    rot.add_argument("--overlap-hours", type=float, default=DEFAULT_OVERLAP_HOURS)
    red = commands.add_parser("redrive", help="move the dead letters back to the delivery queue")
    red.add_argument("--stack-name")
    red.add_argument("--queue-url")
    red.add_argument("--dead-letter-url", action="append", default=[])
    red.add_argument("--dry-run", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, *, session: Any = None) -> int:
    args = build_parser().parse_args(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    aws = session or boto3.session.Session()
    try:
        if args.command == "show-secret":
            print(whsec(read_secret(aws.client("secretsmanager"), args.secret_arn)["secret"]))
        elif args.command == "rotate":
            if not 0 < args.overlap_hours <= 24 * 30:
                print("--overlap-hours must be more than 0 and at most 720", file=sys.stderr)
                return 2
            fresh = rotate(aws.client("secretsmanager"), args.secret_arn, overlap_hours=args.overlap_hours)
            print(fresh)
            print(f"the previous secret keeps signing for {args.overlap_hours:g} h", file=sys.stderr)
        else:
            if args.stack_name:
                queue_url, dead_letters = stack_queues(aws.client("cloudformation"), args.stack_name)
            elif args.queue_url and args.dead_letter_url:
                queue_url, dead_letters = args.queue_url, list(args.dead_letter_url)
            else:
                print("give --stack-name, or --queue-url and --dead-letter-url", file=sys.stderr)
                return 2
            for moved in redrive(
                aws.client("sqs"), queue_url=queue_url, dead_letter_urls=dead_letters, dry_run=args.dry_run
            ):
                verb = "holds" if args.dry_run else "moved"
                print(f"{moved.queue_url}: {verb} {moved.count} message(s)")
    except (BotoCoreError, ClientError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
