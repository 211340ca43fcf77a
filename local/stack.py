"""The whole system on this machine: moto, the Nylas emulator, the gateway (template.yaml's routes with
the real handlers) and the demo SaaS page. `python -m local.run` (make run) and the tests start it.

    with start_stack(nylas_api="beta", gateway_port=0, ...) as stack:
        auth = {"authorization": f"Bearer {stack.api_key}"}
        httpx.post(stack.gateway_url + "/v1/sessions", headers=auth, json={"user_id": "u1"})

Grant lifecycle: the grants table's stream in moto is polled (local/streams.py) into the real
`grant_events` handler, whose EventBridge client is pointed at a local stand-in (local/eventbridge.py)
that delivers to the demo app (`GET <demo>/events`). The Nylas webhook destination is created only
once the gateway serves `/nylas/webhooks` (the emulator runs the challenge during the create call).

Scheduled functions (template.yaml's `Schedule` events, e.g. the revoke sweeper) run on a compressed
interval (local/scheduler.py); the stack's control API (local/control.py, `control_url`) runs one now,
moves the clock (under `python -m local.run`) and injects AWS faults (local/aws_faults.py).

The functions' environment is resolved from template.yaml (`Globals.Function.Environment`) with local
parameter values and written into os.environ (handlers read their configuration from there, once per
"container", i.e. per process); `stop()` restores the previous environment.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn

from local.app_webhooks import DEFAULT_CLOCK_SCALE, LocalQueues
from local.aws import (
    DEFAULT_LOCAL_API_KEY,
    LOCAL_NYLAS_SECRET,
    local_aws_environment,
    start_local_aws,
)
from local.aws import client as aws_client  # moto's endpoint with the fake credentials
from local.aws_faults import FaultBook
from local.demo.app import WebhookInbox
from local.eventbridge import LocalEventBridge
from local.gateway import API_ID, ModuleHandlerLoader, create_app, make_context
from local.scheduler import DEFAULT_MAX_INTERVAL, Scheduler, schedules
from local.template import LOCAL_PSEUDO_PARAMETERS, Route, Template, function_environment, load_template

LOG = logging.getLogger("local.stack")


@dataclass
class Stack:
    nylas_api: str
    gateway_url: str
    emulator_url: str
    demo_url: str
    moto_url: str
    api_key: str
    environment: dict[str, str]
    table_names: dict[str, str]
    secret_arns: dict[str, str]
    eventbridge: LocalEventBridge | None = None
    eventbridge_url: str = ""
    webhook_secret_arn: str = ""
    control_url: str = ""
    scheduler: Scheduler | None = None
    faults: FaultBook | None = None
    # App webhooks (docs/lifecycle.md): the receiver's whsec_ secret, the queues, the demo's inbox.
    app_webhook_secret: str = ""
    app_webhook_queues: LocalQueues | None = None
    webhook_inbox: WebhookInbox | None = None
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def callback_url(self) -> str:
        return f"{self.gateway_url}/connect/callback"

    def stop(self) -> None:
        """Stop everything that was started, last first; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception:
                LOG.exception("error while stopping the local stack")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- uvicorn in a thread


@dataclass
class ServedApp:
    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0 = a free port): the URL is known before the app starts.

    SO_REUSEADDR: connections of the previous run that the server closed linger in TIME_WAIT for a
    minute; without it a restart right after using the demo died with "Address already in use". (On
    Linux it still refuses a port that another socket is listening on.)

    IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on accepted sockets whose `proto` says TCP,
    and a socket made with proto 0 passes 0 on to them. Without it uvicorn's responses (headers, then
    body) met Nagle and the client's delayed ACK: +40 ms on every reused connection (`make bench`:
    grant_events' second PutEvents to the local EventBridge took 44 ms, its first 8 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc}") from exc
    sock.listen(128)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_app(app: Any, sock: socket.socket, *, name: str, timeout: float = 10.0) -> ServedApp:
    """Run `app` with uvicorn in a daemon thread on an already bound socket; returns once it serves."""
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{name}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{name} did not start on {socket_url(sock)}")
        time.sleep(0.02)
    return ServedApp(server, thread, sock)


# --------------------------------------------------------------------------- the Nylas side


def setup_nylas_side(
    *,
    nylas_api: str,
    nylas_base_url: str,
    callback_url: str,
    secret_arns: Mapping[str, str],
    moto_url: str,
    tenant: str = "common",
) -> list[str]:
    """Set up the Nylas side (here: the emulator) with the same code as the deploy-time custom resource
    and `python -m tools.nylas_setup`: v3 → Microsoft connector + callback URI; beta → Microsoft
    integration. Credentials are read from (local) Secrets Manager. Returns the report's lines.
    """
    _ensure_layer_on_path()
    from teams_connect.setup import DEFAULT_SCOPES, SetupSpec, ensure

    secretsmanager = aws_client("secretsmanager", moto_url)
    flavour: Literal["v3", "beta"] = "beta" if nylas_api == "beta" else "v3"
    spec = SetupSpec(
        flavour=flavour,
        base_url=nylas_base_url,
        tenant=tenant,
        callback_url=callback_url,
        scopes=DEFAULT_SCOPES[flavour],
        integration_name="teams-connect (local)",
    )
    report = ensure(
        spec,
        nylas_secret_arn=secret_arns["NylasSecretArn"],
        azure_secret_arn=secret_arns["AzureSecretArn"],
        client=secretsmanager,
    )
    return list(report.lines())


def setup_webhook(
    *,
    nylas_base_url: str,
    webhook_url: str,
    webhook_secret_arn: str,
    secret_arns: Mapping[str, str],
    moto_url: str,
    tenant: str = "common",
) -> list[str]:
    """v3: the grant-notification webhook at `webhook_url` (which must already serve the challenge),
    its secret stored in the stack's webhook secret: the same code as the custom resource."""
    _ensure_layer_on_path()
    from teams_connect.setup import (
        DEFAULT_SCOPES,
        SecretsManagerStore,
        SetupSpec,
        WebhookSpec,
        ensure_webhook_side,
        load_credentials,
    )

    secretsmanager = aws_client("secretsmanager", moto_url)
    spec = SetupSpec(
        flavour="v3",
        base_url=nylas_base_url,
        tenant=tenant,
        callback_url=webhook_url,
        scopes=DEFAULT_SCOPES["v3"],
    )
    credentials = load_credentials(secret_arns["NylasSecretArn"], None, secretsmanager)
    report = ensure_webhook_side(
        spec,
        credentials,
        WebhookSpec(url=webhook_url, secret_arn=webhook_secret_arn),
        SecretsManagerStore(secretsmanager),
    )
    return list(report.lines())


def _start_grant_events(moto_url: str, template: Template, table: str) -> Callable[[], None]:
    """The stream → `functions/grant_events` mapping, locally (one invocation at a time, as Lambda)."""
    return _start_stream(moto_url, template, table, "GrantEventsFunction", "functions/grant_events/")


def _start_session_events(moto_url: str, template: Template, table: str) -> Callable[[], None]:
    """The sessions table's stream → `functions/session_events` (Connect Failed, Tenant Admin Consented)."""
    return _start_stream(moto_url, template, table, "SessionEventsFunction", "functions/session_events/")


def _start_stream(
    moto_url: str, template: Template, table: str, logical_id: str, code_uri: str
) -> Callable[[], None]:
    from local.streams import StreamPoller
    from local.template import stream_filters

    route = Route(
        method="",
        path="",
        function_logical_id=logical_id,
        code_uri=code_uri,
        handler="app.lambda_handler",
        timeout=30,
    )
    handler = ModuleHandlerLoader()(route)
    poller = StreamPoller(
        moto_url,
        table,
        # Its own "environment", as in Lambda: a stream batch never waits for (or blocks) the HTTP
        # functions' one-at-a-time lock. The batches themselves run one at a time (one poller thread).
        handler,
        lambda: make_context(route),
        filters=stream_filters(template, logical_id),
    ).start()
    return poller.stop


def _start_app_webhook_delivery(
    moto_url: str, template: dict[str, Any], queues: LocalQueues
) -> Callable[[], None]:
    """The app webhook queue → `functions/app_webhook` mapping, locally (one batch at a time)."""
    from local.app_webhooks import FUNCTION_ID, start_delivery
    from local.template import function_property

    route = Route(
        method="",
        path="",
        function_logical_id=FUNCTION_ID,
        code_uri=str(function_property(template, FUNCTION_ID, "CodeUri")),
        handler=str(function_property(template, FUNCTION_ID, "Handler")),
        timeout=int(function_property(template, FUNCTION_ID, "Timeout")),
    )
    return start_delivery(moto_url, template, queues, route, ModuleHandlerLoader()(route)).stop


def _ensure_layer_on_path() -> None:
    layer = str(Path(__file__).resolve().parent.parent / "layers" / "core")
    if layer not in sys.path:
        sys.path.insert(0, layer)


# --------------------------------------------------------------------------- the stack


def _emulator(host: str, port: int) -> tuple[str, Callable[[], None]]:
    """Start the Nylas emulator (local/nylas_emulator) on host:port; returns its URL and a stop()."""
    from local.nylas_emulator.config import EmulatorConfig  # the emulator is optional for importing us
    from local.nylas_emulator.server import serve_in_thread

    config = EmulatorConfig(
        host=host,
        port=port,
        client_id=LOCAL_NYLAS_SECRET["client_id"],
        api_key=LOCAL_NYLAS_SECRET["api_key"],
        client_secret=LOCAL_NYLAS_SECRET["client_secret"],
        public_url=None,  # = http://host:<bound port>
    )
    running = serve_in_thread(config, port=port)
    return str(running.url).rstrip("/"), running.stop


def start_stack(
    *,
    nylas_api: str = "v3",
    gateway_port: int = 3000,
    emulator_port: int = 4010,
    moto_port: int = 4566,
    demo_port: int = 8000,
    host: str = "127.0.0.1",
    api_key: str = DEFAULT_LOCAL_API_KEY,
    parameter_overrides: Mapping[str, Any] | None = None,
    grant_events_stream: bool = True,
    schedule_max_seconds: float | None = DEFAULT_MAX_INTERVAL,
    app_webhooks: bool = True,
    app_webhook_clock_scale: int = DEFAULT_CLOCK_SCALE,
    app_webhook_delivery: bool = True,
) -> Stack:
    """Start moto (tables + secrets), the emulator (+ Nylas setup), the gateway and the demo page.

    A port of 0 picks a free one. `parameter_overrides` are extra template parameter values
    (e.g. `{"SessionTtlSeconds": 60}`). `grant_events_stream=False` leaves the grants and sessions
    tables' streams unpolled (the bench invokes `grant_events` itself and counts every AWS call of
    this process). `schedule_max_seconds` is the longest local interval of a scheduled function (the
    revoke sweeper's `rate(5 minutes)` → 15 s); None runs them only on demand
    (`POST <control_url>/_local/sweep`).
    `app_webhooks` points `AppWebhookUrl` at the demo's `/webhooks` (rule → queue → delivery function,
    with the delivery's clock compressed `app_webhook_clock_scale` times); a `parameter_overrides`
    value of `AppWebhookUrl` wins. `app_webhook_delivery=False` leaves the queue unpolled (the bench
    invokes `app_webhook` itself).
    """
    if nylas_api not in ("v3", "beta"):
        raise ValueError(f"nylas_api must be v3 or beta, not {nylas_api!r}")
    template = load_template()
    saved_environ = dict(os.environ)

    def restore_environ() -> None:
        os.environ.clear()
        os.environ.update(saved_environ)

    stops: list[Callable[[], None]] = [restore_environ]
    try:
        # Bound now, served later: the gateway's and the demo's URLs are part of the configuration.
        gateway_sock = bind_socket(host, gateway_port)
        stops.append(gateway_sock.close)
        demo_sock = bind_socket(host, demo_port)
        stops.append(demo_sock.close)
        gateway_url, demo_url = socket_url(gateway_sock), socket_url(demo_sock)

        aws = start_local_aws(host=host, port=moto_port, template=template, api_key=api_key)
        stops.append(aws.stop)
        webhook_secret_arn = str(
            aws.client("secretsmanager").create_secret(Name="teams-connect/local/webhook", SecretString="{}")[
                "ARN"
            ]
        )

        # App webhooks: the stack's own secrets (signing key, listing cursor key) and the queues.
        from local.app_webhooks import create_queues, generated_secret_string

        secretsmanager = aws.client("secretsmanager")
        app_webhook_value = generated_secret_string(template, "AppWebhookSecret")
        app_webhook_secret_arn = str(
            secretsmanager.create_secret(
                Name="teams-connect/local/app-webhook", SecretString=app_webhook_value
            )["ARN"]
        )
        cursor_secret_arn = str(
            secretsmanager.create_secret(
                Name="teams-connect/local/listing-cursor",
                SecretString=generated_secret_string(template, "ListingCursorSecret"),
            )["ARN"]
        )
        queues = create_queues(aws.url, template)

        # The lifecycle events: a local EventBridge whose one target is the demo app's event log.
        from local.demo import EventLog

        event_log = EventLog()
        eventbridge = LocalEventBridge(targets=[event_log.add], faults=aws.faults)
        eventbridge_sock = bind_socket(host, 0)
        stops.append(eventbridge_sock.close)
        served_eventbridge = serve_app(eventbridge.app(), eventbridge_sock, name="eventbridge")
        stops.append(served_eventbridge.stop)

        emulator_url, stop_emulator = _emulator(host, emulator_port)
        stops.append(stop_emulator)

        parameter_values: dict[str, Any] = {
            "NylasApi": nylas_api,
            "NylasRegion": "us",
            "NylasBaseUrl": emulator_url,
            "MicrosoftLoginUrl": emulator_url,  # the emulator also plays Microsoft Entra (admin consent)
            "AzureTenant": "common",
            "AllowedReturnUrls": f"{demo_url}/return",
            "PublicBaseUrl": gateway_url,
            "AppWebhookUrl": f"{demo_url}/webhooks" if app_webhooks else "",
            **aws.secret_arns,
            **(parameter_overrides or {}),
        }
        resolved = {
            **aws.table_names,
            "HttpApi": API_ID,
            "WebhookSecret": webhook_secret_arn,
            # The bus the stack owns (EventBusName left empty): its name, as `Ref` gives it in AWS.
            "LifecycleEventBus": f"{LOCAL_PSEUDO_PARAMETERS['AWS::StackName']}-lifecycle",
            **{
                f"{table}.StreamArn": aws.client("dynamodb").describe_table(TableName=aws.table_names[table])[
                    "Table"
                ]["LatestStreamArn"]
                for table in ("GrantsTable", "SessionsTable")
            },
            "AppWebhookSecret": app_webhook_secret_arn,
            "ListingCursorSecret": cursor_secret_arn,
            **queues.urls,
        }
        environment = {
            **function_environment(template, parameter_values, resolved),
            **local_aws_environment(aws.url),
            # No X-Ray daemon locally.
            "POWERTOOLS_TRACE_DISABLED": "true",
            # botocore's per-service endpoint: the publisher's EventBridge client → the local stand-in.
            "AWS_ENDPOINT_URL_EVENTBRIDGE": socket_url(eventbridge_sock),
            # The app webhook delivery's compressed clock (local/app_webhooks.py).
            "APP_WEBHOOK_CLOCK_SCALE": str(app_webhook_clock_scale),
        }
        eventbridge.bus = environment.get("EVENT_BUS_NAME") or "default"
        # Before anything of the layer is imported here (the setup module, later the handlers):
        # Powertools and the handlers read their configuration once, at import, as in a container.
        os.environ.update(environment)
        for line in setup_nylas_side(
            nylas_api=nylas_api,
            nylas_base_url=emulator_url,
            callback_url=f"{environment['PUBLIC_BASE_URL']}/connect/callback",
            secret_arns=aws.secret_arns,
            moto_url=aws.url,
            tenant=environment["AZURE_TENANT"],
        ):
            LOG.info("nylas setup: %s", line)

        from local.demo import create_app as create_demo_app

        loader = ModuleHandlerLoader()
        gateway = serve_app(create_app(template, loader=loader), gateway_sock, name="gateway")
        stops.append(gateway.stop)
        # Scheduled functions share the gateway's loader: one module (one "container" state) per function.
        scheduler = Scheduler(
            schedules(template),
            loader,
            max_interval=schedule_max_seconds or DEFAULT_MAX_INTERVAL,
            run_on_schedule=schedule_max_seconds is not None,
        )
        control_sock = bind_socket(host, 0)
        stops.append(control_sock.close)
        from local.control import create_control_app

        control = serve_app(create_control_app(scheduler, aws.faults), control_sock, name="control")
        stops.append(control.stop)
        if grant_events_stream:
            stops.append(_start_grant_events(aws.url, template, aws.table_names["GrantsTable"]))
            stops.append(_start_session_events(aws.url, template, aws.table_names["SessionsTable"]))
        if nylas_api == "v3":  # after the gateway serves: Nylas runs the challenge during the create
            for line in setup_webhook(
                nylas_base_url=emulator_url,
                webhook_url=f"{environment['PUBLIC_BASE_URL']}/nylas/webhooks",
                webhook_secret_arn=webhook_secret_arn,
                secret_arns=aws.secret_arns,
                moto_url=aws.url,
                tenant=environment["AZURE_TENANT"],
            ):
                LOG.info("nylas setup: %s", line)
        from local.app_webhooks import RuleTarget, whsec_of

        inbox = WebhookInbox(secret=whsec_of(app_webhook_value))
        if environment.get("APP_WEBHOOK_URL"):  # the template's HasAppWebhook: rule + function
            eventbridge.targets.append(RuleTarget(aws.url, template, queues.urls["AppWebhookQueue"]))
            if app_webhook_delivery:
                stops.append(_start_app_webhook_delivery(aws.url, template, queues))
        demo = serve_app(
            create_demo_app(gateway_url, api_key, demo_url, event_log, webhooks=inbox), demo_sock, name="demo"
        )
        stops.append(demo.stop)
        stops.append(scheduler.start().stop)  # last: the first sweep finds everything serving
    except BaseException:
        for stop in reversed(stops):
            try:
                stop()
            except Exception:
                LOG.exception("error while cleaning up a failed start")
        raise

    return Stack(
        nylas_api=nylas_api,
        gateway_url=gateway_url,
        emulator_url=emulator_url,
        demo_url=demo_url,
        moto_url=aws.url,
        api_key=api_key,
        environment=environment,
        table_names=dict(aws.table_names),
        secret_arns=dict(aws.secret_arns),
        eventbridge=eventbridge,
        eventbridge_url=socket_url(eventbridge_sock),
        webhook_secret_arn=webhook_secret_arn,
        control_url=socket_url(control_sock),
        scheduler=scheduler,
        faults=aws.faults,
        app_webhook_secret=inbox.secret,
        app_webhook_queues=queues,
        webhook_inbox=inbox,
        _stops=stops,
    )
