"""The demo page that plays the SaaS app in front of the local stack (see local/demo/app.py)."""

from local.demo.app import EventLog, WebhookInbox, create_app

__all__ = ["EventLog", "WebhookInbox", "create_app"]
