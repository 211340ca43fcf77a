"""The demo page that plays the SaaS app in front of the local stack (see local/demo/app.py)."""

from local.demo.app import create_app

__all__ = ["create_app"]
