"""`GET /v1/grants`: one page of grants, as `GET /v1/grants/{user_id}` shows each, and a signed
cursor to the next (teams_connect.rules.listing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from teams_connect.adapters.store.listing import GrantListing
from teams_connect.config import Settings
from teams_connect.domain.flow import effective_record, grant_json
from teams_connect.errors import ServerError
from teams_connect.observability import logger
from teams_connect.rules.listing import make_cursor, parse_list_query


class GrantLister:
    def __init__(self, settings: Settings, listing: GrantListing, cursor_key: Callable[[], bytes]) -> None:
        self.settings = settings
        self.listing = listing
        self.cursor_key = cursor_key

    def list(self, params: dict[str, str]) -> dict[str, Any]:
        key = self.cursor_key()
        query = parse_list_query(params, key)
        records, more = self.listing.page(
            status=query.status, email=query.email, after=query.after, limit=query.limit
        )
        grants = []
        for record in records:
            shown = effective_record(record, self.settings)
            # The deployment may require more scopes than when the record was written: shown as
            # GET /v1/grants/{user_id} shows it, and left out of a status filter it no longer matches.
            if query.status is None or shown.status == query.status:
                grants.append(grant_json(shown))
        next_cursor = make_cursor(query, records[-1].user_id, key) if more and records else None
        return {"grants": grants, "next_cursor": next_cursor}


def cursor_key_reader(settings: Settings) -> Callable[[], bytes]:
    """The stack's cursor key (`ListingCursorSecret`, JSON {"key"}), cached like every secret."""
    from teams_connect.adapters.secrets import get_json_secret

    def read() -> bytes:
        stored = get_json_secret(settings.listing_cursor_secret_arn, max_age=settings.secrets_max_age)
        value = stored.get("key")
        if not isinstance(value, str) or len(value) < 32:
            logger.error("listing cursor secret lacks a key of at least 32 characters")
            raise ServerError()
        return value.encode("utf-8")

    return read


def build_lister(settings: Settings) -> GrantLister:
    return GrantLister(settings, GrantListing(settings.grants_table), cursor_key_reader(settings))
