"""The demo page that plays the SaaS app in front of the local stack (see local/demo/app.py)."""

from local.demo.app import EventLog, create_app

__all__ = ["EventLog", "create_app"]
