"""One TLS context per container, shared by its httpx clients, with CA certificates read on demand.

httpx builds a TLS context for every client it creates, and each one reads and parses certifi's
whole CA bundle: about 120 certificates, ≈ 45 ms of a cold start with OpenSSL 3. So:

- one context per container: the callback holds two clients (Nylas, and Microsoft for the mailbox's
  tenant) and paid that twice; an `ssl.SSLContext` may be shared by clients and threads;
- in the built layer, the same bundle as an OpenSSL hashed directory (`certifi-capath/` beside the
  packages, written by `layers/core/build_layer.py`): OpenSSL then reads, at a handshake, only the
  CA certificate that handshake needs, by the hash of its subject name. Same trust store, same
  verification (hostname checked, chain verified to one of certifi's roots).

`SSL_CERT_FILE` / `SSL_CERT_DIR`, when set, win as they do in httpx; without the hashed directory
(the source tree, the local stack) this is the context httpx itself would build.
"""

from __future__ import annotations

import functools
import os
import ssl

# <layer>/python/teams_connect/adapters/tls.py -> <layer>/python/certifi-capath
CA_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "certifi-capath")


@functools.cache
def context() -> ssl.SSLContext:
    operator_choice = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")
    if not operator_choice and os.path.isdir(CA_DIRECTORY):
        return ssl.create_default_context(capath=CA_DIRECTORY)
    import httpx

    return httpx.create_ssl_context()
