"""Shared pytest configuration (kept minimal; unit fixtures live in tests/unit/conftest.py).

Powertools reads its settings once, when `teams_connect.observability` is first imported, and pytest
imports every suite's modules at collection, before any of their fixtures run: whichever suite is
collected first decides the namespace for the whole run. A Lambda always has them (template Globals);
so must this process. Stacks started by the tests do not inherit them (tests/support/stack_process.py
strips POWERTOOLS_*), so a handler that loses its namespace still fails there.
"""

from __future__ import annotations

import os

for _name, _value in {
    "POWERTOOLS_SERVICE_NAME": "teams-connect",
    "POWERTOOLS_METRICS_NAMESPACE": "TeamsConnectTest",
    "POWERTOOLS_TRACE_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)
