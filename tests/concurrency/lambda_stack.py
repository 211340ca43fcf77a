"""The local stack (`python -m local.run`) with Lambda's concurrency model, for the concurrency suite.

Lambda never hands one execution environment two events at once. The local gateway
(`local.gateway`) runs handlers on several threads of one process at once, and Powertools' event
handler keeps the current event in a *class* attribute (`BaseRouter.current_event`, set by every
`resolve()`), shared by every resolver in the process. Under parallel load a handler can therefore
read another request's event: seen here with 60 parallel flows, one user_id got six sessions and
five other users none (the same with one module import per "container"). That is an artefact of
the local gateway, not of the product (one event per environment in Lambda), and it should be fixed
in `local/gateway.py` (reported). Until then this module runs the same stack with every invocation
serialised process-wide (one event at a time, as in one Lambda environment). The HTTP layer, moto
and the emulator stay concurrent; the database-level race of concurrent consumes is covered in
tests/unit/test_store.py on in-process moto, and moto server's atomicity by `local.aws`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.stack_process import ROOT, StackUrls, _wait_until_up, free_port

_INVOKE_LOCK = threading.Lock()


def install() -> None:
    """Make `local.gateway.create_app` run one event at a time in this process."""
    import local.gateway as gateway

    class OneEventAtATimeLoader(gateway.ModuleHandlerLoader):
        def __call__(self, route: Any) -> Any:
            handler = super().__call__(route)

            def invoke(event: Any, context: Any) -> Any:
                with _INVOKE_LOCK:
                    return handler(event, context)

            return invoke

    gateway.ModuleHandlerLoader = OneEventAtATimeLoader  # type: ignore[misc]


@contextmanager
def running_lambda_like_stack(flavour: str) -> Iterator[StackUrls]:
    """`tests.support.stack_process.running_stack`, with `install()` applied in the subprocess."""
    ports = {name: free_port() for name in ("gateway", "emulator", "demo", "moto")}
    env = {
        **os.environ,
        "NYLAS_API": flavour,
        "TC_GATEWAY_PORT": str(ports["gateway"]),
        "TC_EMULATOR_PORT": str(ports["emulator"]),
        "TC_DEMO_PORT": str(ports["demo"]),
        "TC_MOTO_PORT": str(ports["moto"]),
        "PYTHONUNBUFFERED": "1",
    }
    (ROOT / "test-results").mkdir(exist_ok=True)
    log_path = Path(ROOT / "test-results" / f"stack-concurrency-{flavour}-{ports['gateway']}.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.concurrency.lambda_stack"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        urls = StackUrls(
            flavour=flavour,
            gateway=f"http://127.0.0.1:{ports['gateway']}",
            emulator=f"http://127.0.0.1:{ports['emulator']}",
            demo=f"http://127.0.0.1:{ports['demo']}",
            moto=f"http://127.0.0.1:{ports['moto']}",
        )
        try:
            for url in (urls.gateway + "/connect/start", urls.demo + "/"):
                _wait_until_up(url, proc, deadline=time.monotonic() + 60)
            yield urls
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    install()
    from local.run import main

    sys.exit(main())
