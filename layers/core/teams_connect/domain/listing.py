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
        # Each grant as GET /v1/grants/{user_id} shows it. The status filter is the index's, i.e. the
        # stored status: after a change of the required scopes (NylasScopes) a stored `valid` grant
        # may show `needs_reauth` (or the other way round) until its next write; it is listed then
        # under its stored status rather than left out of every listing.
        grants = [grant_json(effective_record(record, self.settings)) for record in records]
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
