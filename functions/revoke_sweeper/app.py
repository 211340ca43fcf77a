"""Scheduled: revoke at Nylas every grant in the REVOKE# outbox that is due
(teams_connect.domain.revocations).

Lean: no HTTP resolver; the DynamoDB client, the secrets provider and the Nylas HTTP client are created
once per container. Each run takes at most `SWEEP_LIMIT` entries and stops before the Lambda deadline;
a failed revoke is postponed with backoff and retried by a later run until Nylas confirms.
"""

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from teams_connect.config import get_settings
from teams_connect.domain.flow import build_flow
from teams_connect.domain.revocations import Revoker
from teams_connect.observability import logger

SWEEP_LIMIT = 50
MARGIN_SECONDS = 5.0

flow = build_flow(get_settings())
revoker = Revoker(flow.grants, flow.nylas)


@logger.inject_lambda_context(log_event=False, clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    budget = context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    report = revoker.sweep(limit=SWEEP_LIMIT, deadline=time.monotonic() + max(budget, 1.0))
    logger.info(
        "revoke sweep", extra={"revoked": report.revoked, "kept": report.kept, "failed": report.failed}
    )
    return {"revoked": report.revoked, "kept": report.kept, "failed": report.failed}
