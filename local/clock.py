"""The local stack's clock, which a caller can move forward ("time passes"), for every part at once.

`python -m local.run` installs it before anything else is imported: `time.time` then returns the real
time plus an offset that `advance()` (the control route `POST /_local/clock`) only ever increases. The
handlers (their `clock=time.time` defaults bind the installed function), the revoke sweeper, moto and
the Nylas emulator all run in that one process, so AWS and Nylas agree on the time after a jump: a
revoke postponed by an hour falls due, a session expires, Nylas's notifications carry the new time.
Monotonic clocks (timeouts, pauses) are left alone.

Local only: a deployed function's clock is the Lambda host's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_real_time = time.time
_lock = threading.Lock()
_steady = threading.Lock()
_offset = 0.0


def now() -> float:
    """The real time plus the offset (what `time.time` returns once installed)."""
    return _real_time() + _offset


def install() -> None:
    """Make `time.time` this clock (idempotent). Call it before the modules that bind `time.time`."""
    time.time = now


def installed() -> bool:
    return time.time is now


def offset() -> float:
    return _offset


@contextmanager
def steady() -> Iterator[None]:
    """While held, the clock does not jump: time passes between such steps, not inside one. An app
    webhook delivery is signed with the time and verified by the demo against the time (5 minutes of
    tolerance): a jump between the two made the demo refuse it, and the delivery was dead-lettered
    (the fault campaign saw it). A real clock does not leap forward 15 minutes inside a request."""
    with _steady:
        yield


def advance(seconds: float) -> float:
    """Move the clock forward by `seconds` (> 0), once no `steady()` step runs; returns the new offset."""
    global _offset
    if not seconds > 0:
        raise ValueError("the clock only moves forward")
    with _steady, _lock:
        _offset += seconds
        return _offset
