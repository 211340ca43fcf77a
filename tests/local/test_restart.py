"""`make run` stopped right after real traffic starts again at once on the same ports (issue 9 item 12).

The servers closed the demo's and the browser's connections on shutdown, which leaves those
connections in TIME_WAIT on the fixed ports for a minute; the listening sockets were bound without
SO_REUSEADDR, so the next start died with "cannot listen on 127.0.0.1:3000: Address already in use".
"""

from __future__ import annotations

import socket

import httpx
from local.aws import free_port, port_is_free
from local.stack import bind_socket

from tests.support.stack_process import running_stack


def _time_wait_on_server_side(port: int) -> None:
    """A connection to a listener on `port` that the server closes first (the server keeps TIME_WAIT)."""
    listener = bind_socket("127.0.0.1", port)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server closes first, as on shutdown
    client.recv(1)
    client.close()
    listener.close()


def test_a_listener_can_be_bound_again_while_its_old_connections_are_in_time_wait() -> None:
    port = free_port()
    _time_wait_on_server_side(port)
    assert port_is_free("127.0.0.1", port)  # moto's pre-check does not count TIME_WAIT
    bind_socket("127.0.0.1", port).close()


def test_the_stack_restarts_on_the_same_ports_right_after_real_traffic() -> None:
    ports = {name: str(free_port()) for name in ("GATEWAY", "EMULATOR", "DEMO", "MOTO")}
    env = {f"TC_{name}_PORT": port for name, port in ports.items()}
    for _ in range(2):
        # The client outlives the stack: its keep-alive connections are still open when the stack
        # stops, so the servers close them first and keep them in TIME_WAIT on the fixed ports.
        with httpx.Client(timeout=10) as client, running_stack("v3", env=env, attempts=1) as stack:
            assert stack.gateway.endswith(f":{ports['GATEWAY']}")
            assert client.get(f"{stack.demo}/").status_code == 200
            created = client.post(
                f"{stack.gateway}/v1/sessions",
                headers={"Authorization": f"Bearer {stack.api_key}"},
                json={"user_id": "restart-user"},
            )
            assert created.status_code == 201
            start = client.get(created.json()["connect_url"])
            assert start.status_code == 302
            assert client.get(f"{stack.emulator}/v3/connect/auth").status_code in (400, 401, 422)
