"""`python -m local.run` (`make run`): the whole system locally until Ctrl-C.

Environment: NYLAS_API (v3 | beta, default v3); ports TC_GATEWAY_PORT (3000), TC_DEMO_PORT (8000),
TC_EMULATOR_PORT (4010), TC_MOTO_PORT (4566), 0 = any free port; TC_HOST (127.0.0.1);
TC_API_KEY (the local backend API key, default local-dev-api-key); TC_READY_FILE (optional: once
everything serves, the URLs are written there as JSON, so that a caller using port 0 learns them);
TC_APP_WEBHOOK_CLOCK_SCALE (how much faster the app webhook retries run, default 1440: 24 h in 1 min).
TC_SCHEDULE_MAX_SECONDS (the longest local interval of a scheduled function, default 15: the revoke
sweeper's rate(5 minutes) runs every 15 s; 0 = only on demand, `POST <control>/_local/sweep`).

The stack's clock (local/clock.py) is installed first, before anything binds `time.time`, so that
`POST <control>/_local/clock` moves the time of every part at once.
"""

from __future__ import annotations

from local import clock

clock.install()  # before the modules below (and the handlers, moto, the emulator) bind time.time

import base64  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402

import httpx  # noqa: E402

from local.app_webhooks import DEFAULT_CLOCK_SCALE  # noqa: E402
from local.aws import DEFAULT_LOCAL_API_KEY  # noqa: E402
from local.scheduler import max_interval_from_env  # noqa: E402
from local.stack import Stack, start_stack  # noqa: E402


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise SystemExit(f"{name} must be a port number (0-65535), not {raw!r}")
    return int(raw)


def connect_script_tag(gateway_url: str) -> str:
    """The `<script>` tag an embedding page uses, from what the gateway really serves: the versioned
    (immutable) URL and its Subresource Integrity hash (docs/api.md, "Embed it in your app")."""
    try:
        answer = httpx.get(
            f"{gateway_url}/connect/v1/connect.js", headers={"accept-encoding": "identity"}, timeout=10
        )
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        return f"(connect.js not served: {type(exc).__name__})"
    version = answer.headers.get("etag", "").strip('"')
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(answer.content).digest()).decode("ascii")
    return (
        f'<script src="{gateway_url}/connect/v1/connect.js?v={version}"\n'
        f'          integrity="{integrity}" crossorigin="anonymous"></script>'
    )


def _scale_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 86400:
        raise SystemExit(f"{name} must be an integer from 1 to 86400, not {raw!r}")
    return int(raw)


def banner(stack: Stack) -> str:
    return "\n".join(
        [
            "",
            f"teams-connect is running locally (Nylas API flavour: {stack.nylas_api})",
            "",
            f"  API gateway (template.yaml routes):  {stack.gateway_url}",
            f"  Demo SaaS app:                        {stack.demo_url}/",
            f"  Nylas emulator (consent page there):  {stack.emulator_url}",
            f"  moto (DynamoDB, Secrets Manager):     {stack.moto_url}",
            f"  Callback URL registered at Nylas:     {stack.callback_url}",
            f"  Local control (sweep, clock, faults): {stack.control_url}/_local/schedules",
            f"  Lifecycle events (demo, live):        {stack.demo_url}/events/live",
            f"  Lifecycle events (JSON):              {stack.demo_url}/events",
            f"  Popup embedding (demo, connect.js):   {stack.demo_url}/popup",
            "",
            f"  Local API key: {stack.api_key}",
            *_app_webhook_lines(stack),
            "",
            "Try it: open the demo page and click 'Connect Microsoft Teams', or:",
            f"  curl -s -X POST {stack.gateway_url}/v1/sessions \\",
            f"       -H 'Authorization: Bearer {stack.api_key}' -H 'Content-Type: application/json' \\",
            f'       -d \'{{"user_id": "demo-user", "return_to": "{stack.demo_url}/return"}}\'',
            "  then open the connect_url it returns in a browser.",
            "",
            "Grant lifecycle (v3): expire a grant as Nylas would, and watch the demo's events page:",
            f"  curl -s -X POST {stack.emulator_url}/_emulator/grants/<grant_id>/status \\",
            "       -H 'Content-Type: application/json' -d '{\"status\": \"invalid\"}'",
            "  then connect again from the demo page: the grant is valid again (Grant Reconnected).",
            "",
            "Embed the popup flow in a page (the script's versioned URL and its SRI hash):",
            f"  {connect_script_tag(stack.gateway_url)}",
            "",
            _schedule_line(stack),
            f"  curl -s -X POST {stack.control_url}/_local/sweep      (run the revoke sweeper now)",
            "",
            "Admin consent: make an organisation require its administrator's approval, then connect as",
            "one of its users from the demo page (e.g. max@contoso.com); click 'Ask your administrator':",
            f"  curl -s -X POST {stack.emulator_url}/_emulator/tenants \\",
            "       -H 'Content-Type: application/json' \\",
            '       -d \'{"domain": "contoso.com", "user_consent": "admin_only"}\'',
            f"  (Microsoft Entra is played by the emulator too: MicrosoftLoginUrl = {stack.emulator_url})",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def _schedule_line(stack: Stack) -> str:
    if stack.scheduler is None:
        return "Scheduled functions: none"
    runs = [
        f"{s['function']} ({s['expression']}) every {s['local_interval_seconds']:g} s"
        if stack.scheduler.run_on_schedule
        else f"{s['function']} ({s['expression']}) on demand only"
        for s in stack.scheduler.describe()
    ]
    return "Scheduled functions, on a compressed schedule: " + ", ".join(runs)


def _app_webhook_lines(stack: Stack) -> list[str]:
    """App webhooks (docs/lifecycle.md): where they go, the signing secret, how to watch retries."""
    url = stack.environment.get("APP_WEBHOOK_URL", "")
    if not url:
        return []
    return [
        "",
        f"  App webhooks (Standard Webhooks) to:  {url}  (deliveries: GET {stack.demo_url}/webhooks)",
        f"  App webhook signing secret:           {stack.app_webhook_secret}",
        "  Refuse the next 3 deliveries and watch the retries (compressed clock: 24 h = 1 min):",
        f"    curl -s -X POST {stack.demo_url}/webhooks/fail -H 'Content-Type: application/json' "
        """-d '{"count": 3, "status": 503}'""",
    ]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call otherwise
    nylas_api = os.environ.get("NYLAS_API", "v3").strip() or "v3"
    if nylas_api not in ("v3", "beta"):
        print(f"NYLAS_API must be v3 or beta, not {nylas_api!r}", file=sys.stderr)
        return 2
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    stack = start_stack(
        nylas_api=nylas_api,
        gateway_port=_int_env("TC_GATEWAY_PORT", 3000),
        emulator_port=_int_env("TC_EMULATOR_PORT", 4010),
        moto_port=_int_env("TC_MOTO_PORT", 4566),
        demo_port=_int_env("TC_DEMO_PORT", 8000),
        host=os.environ.get("TC_HOST", "127.0.0.1"),
        api_key=os.environ.get("TC_API_KEY", "") or DEFAULT_LOCAL_API_KEY,
        # TC_AZURE_TENANT=organizations: a deployment for work or school accounts only.
        parameter_overrides={"AzureTenant": os.environ.get("TC_AZURE_TENANT", "").strip() or "common"},
        schedule_max_seconds=max_interval_from_env(),
        app_webhook_clock_scale=_scale_env("TC_APP_WEBHOOK_CLOCK_SCALE", DEFAULT_CLOCK_SCALE),
    )
    with stack:
        print(banner(stack), flush=True)
        ready_file = os.environ.get("TC_READY_FILE")
        if ready_file:
            urls = {
                "gateway": stack.gateway_url,
                "emulator": stack.emulator_url,
                "demo": stack.demo_url,
                "moto": stack.moto_url,
                "eventbridge": stack.eventbridge_url,
                "control": stack.control_url,
                **(stack.app_webhook_queues.urls if stack.app_webhook_queues else {}),
            }
            partial = Path(ready_file).with_suffix(".partial")
            partial.write_text(json.dumps(urls), encoding="utf-8")
            partial.replace(ready_file)  # atomic: a reader never sees half a file
        while not stop_requested.wait(0.5):
            pass
        print("Stopping...", flush=True)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is stopped and said. Python's own shutdown would then garbage-collect moto's whole
    # in-memory state (every item, stream record and shard iterator): after a load test that took
    # over 15 s, and the caller gave up and killed the process. Nothing is left to finalize.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
