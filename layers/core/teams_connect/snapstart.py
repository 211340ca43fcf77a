"""Lambda SnapStart (template parameter `SnapStart`): what must differ per restored environment.

With SnapStart, init runs once when a version is published and every execution environment is
restored from that memory snapshot. So init must open no connection (a test imports every handler
with sockets forbidden) and any user-space randomness frozen in the snapshot must be re-seeded:

- Python's `random` (a Mersenne Twister seeded once, at import, from `os.urandom`): every clone would
  replay the same sequence. tenacity's jittered backoff uses it, so clones would retry Nylas in
  lockstep. `after_restore` re-seeds it from the kernel, which Lambda re-seeds per restore.
- `secrets` / `os.urandom` (state, PKCE verifier, binding cookie, X-Ray ids) read the kernel at each
  call: nothing to do.

The hooks come from `snapshot_restore_py`, which the managed Python runtime pre-installs; it is
imported only under SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`), and hooks must be
registered at init by a module the handler imports (`teams_connect.http.apigw` does it).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

SNAPSHOT_INIT = "snap-start"
_registered = False


def after_restore() -> None:
    """Re-seed what the snapshot froze (runs in each restored environment, before its first event)."""
    random.seed(os.urandom(32))


def register_hooks(
    environ: Mapping[str, str] = os.environ,
    registrar: Callable[[Callable[..., Any]], Any] | None = None,
) -> bool:
    """Register `after_restore` when this init is SnapStart's (once per process); True when it was."""
    global _registered
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAPSHOT_INIT:
        return False
    if _registered:
        return True
    if registrar is None:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]

        registrar = register_after_restore
    registrar(after_restore)
    _registered = True
    return True
