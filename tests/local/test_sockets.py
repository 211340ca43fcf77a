"""The local servers answer without Nagle's delay: asyncio (under uvicorn) sets TCP_NODELAY only on
accepted sockets whose `proto` is TCP, and `bind_socket` made its listeners with proto 0, which every
accepted connection inherits. uvicorn writes a response's headers and body separately, so on a reused
connection the body waited for the client's delayed ACK: +40 ms per call (`make bench`: the second
PutEvents of a grant_events container to the local EventBridge took 44 ms, the first 8 ms)."""

from __future__ import annotations

import asyncio.base_events
import socket

from local.stack import bind_socket


def test_accepted_connections_get_tcp_nodelay_from_asyncio() -> None:
    listener = bind_socket("127.0.0.1", 0)
    client = socket.create_connection(listener.getsockname()[:2])
    conn, _ = listener.accept()
    try:
        assert conn.proto == socket.IPPROTO_TCP
        # what asyncio's socket transport does with it (private, not in typeshed)
        asyncio.base_events._set_nodelay(conn)  # type: ignore[attr-defined]
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for sock in (conn, client, listener):
            sock.close()
