"""One TLS context per container, shared by its httpx clients.

httpx builds a TLS context for every client it creates: certifi's CA bundle is read and parsed each
time (≈ 45 ms of a cold start here). The callback holds two clients (Nylas, and Microsoft for the
mailbox's tenant), so it paid that twice. This is the context httpx would build itself
(`httpx.create_ssl_context()`: certifi's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), built
once; an `ssl.SSLContext` may be shared by clients and threads.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()
