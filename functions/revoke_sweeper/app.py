"""Scheduled: revoke at Nylas every grant in the REVOKE# outbox that is due
(teams_connect.domain.revocations).

Lean: no HTTP resolver; the DynamoDB client, the secrets provider and the Nylas HTTP client are created
once per container. Each run takes at most `SWEEP_LIMIT` entries and stops before the Lambda deadline;
a failed revoke is postponed with backoff and retried by a later run until Nylas confirms.

Never silent (security review 3, G1): every run emits `RevokeFailed` (failed attempts) and
`OutboxOldestDueAge` (seconds the oldest due entry has waited), both alarmed in the template, and a run
that cannot read the Nylas secret fails its invocation (the Lambda `Errors` metric, alarmed too).
"""

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.domain.revocations import Revoker
from teams_connect.observability import logger, metrics

SWEEP_LIMIT = 50
MARGIN_SECONDS = 5.0
REVOKE_FAILED = "RevokeFailed"
OUTBOX_OLDEST_DUE_AGE = "OutboxOldestDueAge"

flow = build_flow(get_settings())
revoker = Revoker(flow.grants, flow.nylas)


class SecretUnreadable(RuntimeError):
    """The sweep cannot read the Nylas secret: nothing can be revoked until that is fixed."""


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    report = revoker.sweep(limit=SWEEP_LIMIT, deadline=time.monotonic() + max(budget, 1.0))
    metrics.add_metric(name=REVOKE_FAILED, unit=MetricUnit.Count, value=report.failed)
    metrics.add_metric(name=OUTBOX_OLDEST_DUE_AGE, unit=MetricUnit.Seconds, value=report.oldest_due_age)
    logger.info(
        "revoke sweep",
        extra={
            "revoked": report.revoked,
            "kept": report.kept,
            "failed": report.failed,
            "oldest_due_age": report.oldest_due_age,
        },
    )
    if report.secret_unreadable:
        raise SecretUnreadable("the Nylas secret could not be read (see the log): no grant can be revoked")
    return {"revoked": report.revoked, "kept": report.kept, "failed": report.failed}
