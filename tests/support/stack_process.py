"""The local stack (`python -m local.run`, what `make run` starts) in a subprocess, for tests.

Each flavour gets its own process: the handlers read their configuration once per "container", exactly
as in Lambda, so two flavours cannot share one interpreter.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[2]
LOCAL_API_KEY = "local-dev-api-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class StackUrls:
    flavour: str
    gateway: str
    emulator: str
    demo: str
    moto: str
    api_key: str = LOCAL_API_KEY

    def dynamodb(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "dynamodb",
            endpoint_url=self.moto,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"local stack exited early with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"local stack did not answer at {url}")


@contextmanager
def running_stack(flavour: str) -> Iterator[StackUrls]:
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
    log = open(ROOT / "test-results" / f"stack-{flavour}-{ports['gateway']}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    urls = StackUrls(
        flavour=flavour,
        gateway=f"http://127.0.0.1:{ports['gateway']}",
        emulator=f"http://127.0.0.1:{ports['emulator']}",
        demo=f"http://127.0.0.1:{ports['demo']}",
        moto=f"http://127.0.0.1:{ports['moto']}",
    )
    try:
        deadline = time.monotonic() + 60
        for url in (urls.gateway + "/connect/start", urls.demo + "/"):
            _wait_until_up(url, proc, deadline)
        yield urls
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
