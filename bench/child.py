"""One cold start, run as `python -I -S -B -c <this file's source> <json>` in a fresh interpreter.

`-S`: no site-packages; `sys.path` is exactly what Lambda gives a function: the function's directory
(/var/task), the layer's `python/` (/opt/python) and the runtime's boto3/botocore (/var/runtime).
`-B`: nothing is written at run time, so the only bytecode is the build's (checked-hash) one.

Modes: `handler` imports `app` (module-scope setup included) and, given events, invokes it with the
first (the container's first invocation) and then the second (a warm one, same backend state);
`naive` / `floor` build the reference stacks. Prints one JSON line.
"""

import json
import resource
import sys
import time


class Context:
    function_name = "teams-connect-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:teams-connect-bench"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    log_group_name = "/aws/lambda/teams-connect-bench"
    log_stream_name = "2026/01/01/[$LATEST]bench"

    def __init__(self) -> None:
        self._end = time.monotonic() + 10.0

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def naive() -> None:
    import boto3
    import httpx
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.utilities import parameters

    globals()["_keep"] = (
        boto3.resource("dynamodb"),
        boto3.client("secretsmanager"),
        Logger(),
        Metrics(),
        Tracer(),
        APIGatewayHttpResolver(),
        parameters.SecretsProvider(),
        httpx.Client(),
    )


def floor(services: list[str], with_httpx: bool, with_boto3: bool, asset: str | None = None) -> None:
    keep: list[object] = []
    if asset is not None:  # a static script's own work: read it, gzip it, hash it (ETag, SRI), and
        # the standard library an answer needs (base64 for the gzip body, json for an error, the query)
        import base64
        import gzip
        import hashlib
        import json
        import urllib.parse

        with open(asset, "rb") as script:
            body = script.read()
        keep.append((gzip.compress(body, compresslevel=9, mtime=0), hashlib.sha256(body).hexdigest()))
        keep.append((hashlib.sha384(body).digest(), base64, json, urllib.parse))
    if services:  # the "static" floor (connect.js's route) loads no AWS SDK at all
        import botocore.session

        session = botocore.session.get_session()
        keep.extend(session.create_client(s) for s in services)
    if with_httpx:
        import httpx

        keep.append(httpx.Client())
    if with_boto3:  # what Powertools Idempotency's DynamoDB persistence layer imports by itself
        import boto3
        import boto3.dynamodb.types

        keep.append((boto3, boto3.dynamodb.types.TypeDeserializer))
    globals()["_keep"] = keep


def peak_rss_kb() -> int:
    """This process's peak RSS. /proc's VmHWM, because ru_maxrss survives fork+exec: a child of a
    big parent reports the parent's size (the bench process holds moto and the stack)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.path[:0] = config["path"]
    started = time.perf_counter()
    started_cpu = time.process_time()
    handler = None
    if config["mode"] == "handler":
        import app  # type: ignore[import-not-found]

        handler = app.lambda_handler
    elif config["mode"] == "naive":
        naive()
    else:
        floor(config["services"], config["httpx"], config.get("boto3", False), config.get("asset"))
    init_ms = (time.perf_counter() - started) * 1000
    # CPU time of the init as well: on a shared machine the wall time also counts waiting for a core.
    result: dict[str, object] = {
        "init_ms": init_ms,
        "init_cpu_ms": (time.process_time() - started_cpu) * 1000,
    }
    if handler is not None and config.get("events"):
        first, *later = config["events"]
        loaded = set(sys.modules)
        began = time.perf_counter()
        response = handler(first, Context())
        result["first_ms"] = (time.perf_counter() - began) * 1000
        result["status"] = response.get("statusCode")
        # Modules the first invocation had to import (compiled and executed inside the request).
        result["first_call_imports"] = sorted(set(sys.modules) - loaded)
        if later:  # the same container's second invocation: warm, against the same backend state
            began = time.perf_counter()
            handler(later[0], Context())
            result["second_ms"] = (time.perf_counter() - began) * 1000
    result["maxrss_kb"] = peak_rss_kb()
    # The layer's modules must have been loaded (not the dev venv's): prove where they came from.
    module = sys.modules.get("aws_lambda_powertools")
    result["powertools_from"] = getattr(module, "__file__", None)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


main()
