"""The container's one botocore session, shared by its AWS clients (DynamoDB, Secrets Manager).

botocore, not boto3: boto3 adds its resource layer and s3transfer to every cold start. One session,
not one per client: each session loads and parses its own endpoint, partition and default-config
data, about 45 ms of a cold start for the second client alone.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - the first connection encodes its host name with it: import at init
import threading
from typing import Any

import botocore.session

_session: Any = None
_lock = threading.Lock()


def session() -> Any:
    """Created once, on first use (no network call: credentials are resolved per client)."""
    global _session
    if _session is None:
        with _lock:
            if _session is None:
                _session = botocore.session.get_session()
    return _session
