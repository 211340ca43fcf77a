"""The Powertools Logger / Metrics / Tracer instances shared by every function.

Never enable `log_event`: the raw event holds `code`, `state`, cookies and API keys.

Tracing and cold start: Powertools' `Tracer()` imports the X-Ray SDK (aws_xray_sdk, wrapt) and patches
botocore and httpx, which costs a few hundred milliseconds of init even when tracing is disabled.
So the real Tracer is created only when Powertools would trace: in Lambda unless
`POWERTOOLS_TRACE_DISABLED` is true, which template.yaml sets unless its `Tracing` parameter is
`Active` (the default, PassThrough, loads no X-Ray SDK: docs/performance.md).
Otherwise (the local stack, the tests,
`sam local`, or a deployment that sets POWERTOOLS_TRACE_DISABLED to skip the SDK) Powertools would
create a disabled Tracer anyway; `tracer` is then a no-op stand-in with the same decorators, and the
X-Ray SDK is never imported. Tracing in Lambda is unchanged: same Tracer, same patches, created
at init as before.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "teams-connect")

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)


class TracerLike(Protocol):
    """The part of Powertools' Tracer the functions use."""

    def capture_lambda_handler(
        self,
        lambda_handler: Any = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[..., Any]: ...

    def capture_method(
        self, method: Any = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Any: ...


class NoopTracer:
    """Used when tracing is disabled: the decorators return the function unchanged."""

    def capture_lambda_handler(
        self,
        lambda_handler: Any = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Any:
        return lambda_handler if lambda_handler is not None else _identity

    def capture_method(
        self, method: Any = None, capture_response: bool | None = None, capture_error: bool | None = None
    ) -> Any:
        return method if method is not None else _identity


def _identity[F: Callable[..., Any]](function: F) -> F:
    return function


def tracing_enabled(environ: Any = os.environ) -> bool:
    """Powertools' own rule (Tracer._is_tracer_disabled): off when POWERTOOLS_TRACE_DISABLED is true,
    and outside Lambda (no LAMBDA_TASK_ROOT) or under `sam local` / chalice, where no daemon listens."""
    disabled = str(environ.get("POWERTOOLS_TRACE_DISABLED", "false")).strip().lower()
    if disabled in {"1", "y", "yes", "t", "true", "on"}:
        return False
    return bool(environ.get("LAMBDA_TASK_ROOT")) and not (
        environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE")
    )


def make_tracer() -> TracerLike:
    if not tracing_enabled():
        return NoopTracer()
    from aws_lambda_powertools import Tracer  # imports aws_xray_sdk: only when tracing

    # botocore only: patching every supported library (the default) imports httpx in every function,
    # ~140 ms of cold start for the three that never call Nylas. `trace_httpx()` adds httpx where the
    # Nylas client loads.
    return cast(TracerLike, Tracer(service=SERVICE, patch_modules=["botocore"]))


def trace_httpx() -> None:
    """X-Ray subsegments for the Nylas calls: called by `teams_connect.adapters.nylas.http` when it loads."""
    if tracing_enabled():
        from aws_xray_sdk.core import patch

        patch(["httpx"])


tracer: TracerLike = make_tracer()

CONNECT_STARTED = "ConnectStarted"
CONNECT_SUCCEEDED = "ConnectSucceeded"
CONNECT_FAILED = "ConnectFailed"


def count(metric: str, *, error_code: str | None = None) -> None:
    """Add one to `metric`; a failure carries its contract error code as a dimension."""
    if error_code is not None:
        metrics.add_dimension(name="ErrorCode", value=error_code)
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
