"""SnapStart safety: init opens no socket, and restored clones do not share `random`'s state."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from teams_connect import snapstart

from .test_cold_imports import ENV, HTTP_FUNCTIONS, ROOT

# Every way a module could open a connection or send while it is imported: stream sockets, name
# resolution, connects, sends. The AWS clients are pointed at a local endpoint so that a call would
# try. One exception: with Tracing: Active the X-Ray SDK creates (but does not use) its UDP emitter's
# datagram socket at init; a datagram socket has no connection to lose in a snapshot.
NO_SOCKET_PROBE = """
import importlib.util, json, socket, sys

def refuse(*args, **kwargs):
    raise AssertionError("network I/O during init")

original_init = socket.socket.__init__

def datagram_only(self, family=-1, type=-1, proto=-1, fileno=None):
    if type != socket.SOCK_DGRAM or fileno is not None:
        refuse()
    original_init(self, family, type, proto, fileno)

socket.socket.__init__ = datagram_only
socket.socket.sendto = refuse
socket.socket.send = refuse
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"ok": callable(module.lambda_handler)}))
"""


def _run(source: str, folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        **ENV,
        "PYTHONPATH": str(ROOT / "layers" / "core"),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own probe
        [sys.executable, "-c", source, str(folder / "app.py")],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
    )


@pytest.mark.parametrize("function", HTTP_FUNCTIONS)
@pytest.mark.parametrize(("flavour", "traced"), [("v3", False), ("beta", False), ("v3", True)])
def test_no_socket_opens_while_a_handler_module_imports(function: str, flavour: str, traced: bool) -> None:
    env = {"NYLAS_API": flavour, "POWERTOOLS_TRACE_DISABLED": "false" if traced else "true"}
    if traced:  # Tracing: Active, as in Lambda (the X-Ray SDK is loaded and patches)
        env["LAMBDA_TASK_ROOT"] = str(ROOT / "functions" / function)
    result = _run(NO_SOCKET_PROBE, ROOT / "functions" / function, **env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True}


def test_the_socket_guard_bites(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\nlambda_handler = print\n",
        encoding="utf-8",
    )
    result = _run(NO_SOCKET_PROBE, tmp_path)
    assert result.returncode != 0
    assert "network I/O during init" in result.stderr


# --- after-restore hook -----------------------------------------------------------------------------
FAKE_RUNTIME = """
registered = []

def register_after_restore(func, *args, **kwargs):
    registered.append(func)
"""
HOOK_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from snapshot_restore_py import registered
print(json.dumps([f"{f.__module__}.{f.__qualname__}" for f in registered]))
"""


@pytest.mark.parametrize("function", ["connect_start", "connect_callback", "create_session"])
def test_a_snapstart_init_registers_the_reseed_hook(function: str, tmp_path: Path) -> None:
    (tmp_path / "snapshot_restore_py.py").write_text(FAKE_RUNTIME, encoding="utf-8")
    path = f"{ROOT / 'layers' / 'core'}{os.pathsep}{tmp_path}"
    folder = ROOT / "functions" / function
    result = _run(HOOK_PROBE, folder, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start", PYTHONPATH=path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["teams_connect.snapstart.after_restore"]
    # Without SnapStart the runtime's module is not even imported (it does not exist outside it).
    plain = _run(HOOK_PROBE.replace("from snapshot_restore_py import registered", "registered = []"), folder)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert "snapshot_restore_py" not in plain.stdout


def test_register_hooks_only_under_snapstart() -> None:
    calls: list[object] = []
    assert snapstart.register_hooks({}, registrar=calls.append) is False
    assert snapstart.register_hooks({"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}, calls.append) is False
    assert calls == []


def _clone_draws(reseed: bool) -> list[list[float]]:
    """Two environments restored from one snapshot: both start from the same frozen `random` state.
    (Not os.fork: CPython re-seeds `random` in a forked child, a snapshot restore does not.)"""
    frozen = random.getstate()
    draws: list[list[float]] = []
    try:
        for _ in range(2):
            random.setstate(frozen)  # the restore
            if reseed:
                snapstart.after_restore()
            draws.append([random.random() for _ in range(4)])
    finally:
        random.seed()
    return draws


def test_clones_share_random_without_the_hook_and_differ_with_it() -> None:
    first, second = _clone_draws(reseed=False)
    assert first == second  # what SnapStart would do to tenacity's jitter
    first, second = _clone_draws(reseed=True)
    assert first != second
