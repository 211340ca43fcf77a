"""Run the emulator in a background thread (tests, ``make run``)."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from .app import create_app
from .config import EmulatorConfig
from .state import Store


@dataclass
class RunningServer:
    """A started emulator. ``url`` is the public base URL (``config.base_url``); ``stop()`` shuts it down."""

    url: str
    port: int
    config: EmulatorConfig
    store: Store
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving; requests still in flight (e.g. held by a delay fault) are cut off."""
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout)


def serve_in_thread(config: EmulatorConfig, port: int = 0, *, log_level: str = "warning") -> RunningServer:
    """Start the emulator on ``config.host`` in a daemon thread and return once it accepts connections.

    ``port=0`` picks a free port (tests); pass e.g. ``config.port`` to use a fixed one. The socket is bound
    before the app is built, so with ``config.public_url=None`` the URLs the emulator hands out use the real
    port. The returned ``RunningServer`` has ``.url`` (public base URL, no trailing slash), ``.port``,
    ``.config`` (with the bound port), ``.store`` (the live state, for white-box checks) and ``.stop()``.
    Raises ``RuntimeError`` if the server does not start within 10 seconds.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # proto=IPPROTO_TCP matters: only then does asyncio set TCP_NODELAY on accepted sockets (else +40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, port))
    sock.listen(128)
    bound = dataclasses.replace(config, port=int(sock.getsockname()[1]))
    store = Store()
    app = create_app(bound, store=store)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"nylas-emulator-{bound.port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the Nylas emulator did not start")
        time.sleep(0.01)
    return RunningServer(
        url=bound.base_url, port=bound.port, config=bound, store=store, _server=server, _thread=thread
    )
