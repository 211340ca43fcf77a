"""Local Nylas emulator: a stateful stand-in for Nylas (v3 hosted OAuth + beta Integrations) with a
clickable consent page and a control API. See README.md in this directory.

Public API: ``create_app(config) -> Starlette``, ``EmulatorConfig``, ``serve_in_thread(config, port=0)``.
"""

from .app import create_app
from .config import EmulatorConfig
from .server import RunningServer, serve_in_thread

__all__ = ["EmulatorConfig", "RunningServer", "create_app", "serve_in_thread"]
