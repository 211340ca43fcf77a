"""Teams meetings on a user's stored grant: create (idempotent), read, update, delete.

Calls per use case (usual path):
- create: 1 GetItem (the grant) + the idempotency record (Powertools: a conditional PutItem, then
  an UpdateItem with the answer) when an `Idempotency-Key` is given + 1 Nylas `POST …/events`.
- get: 1 GetItem + 1 Nylas GET; update: 1 GetItem + GET + PUT; delete: 1 GetItem + GET + DELETE
  (the GET proves the event is one teams-connect created: other calendar events are not ours).

Every meeting carries `metadata.key1` = a tag (derived from the user and the Idempotency-Key, or
random) and `metadata.key2` = "teams-connect". A create whose request may have reached Nylas but
got no answer (timeout, 5xx) looks for its tag before answering, so a retry never leaves a second
meeting. An event that came back without a Teams link (personal or unlicensed Microsoft accounts:
Microsoft silently ignores the Teams request) is read once more, then deleted, and the grant
record's `teams` turns `unavailable`; later creates answer 422 at once, without touching the
calendar, until the user connects again. A Nylas 401 for the grant turns the record `expired`.
"""

from __future__ import annotations

import hashlib
import secrets as _secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from teams_connect.adapters.nylas.events import AmbiguousCreate, EventsApi, GrantExpired
from teams_connect.adapters.secrets import SecretsProvider
from teams_connect.adapters.store.grants import GrantRecord, GrantStore
from teams_connect.config import Settings
from teams_connect.errors import (
    ConnectError,
    NotConnected,
    NotFound,
    ReauthRequired,
    TeamsUnavailable,
    UnsupportedFlavour,
    UpstreamUnavailable,
)
from teams_connect.observability import logger
from teams_connect.rules import security
from teams_connect.rules.meeting_input import (
    check_idempotency_key,
    check_meeting_id,
    check_span,
    parse_create,
    parse_update,
)

TAG_KEY = "key1"  # Nylas indexes metadata key1..key5 only: metadata_pair filters need one of them
OWNER_KEY = "key2"
OWNER_VALUE = "teams-connect"
TEAMS_PROVIDER = "Microsoft Teams"
TEAMS_URL_PREFIX = "https://teams.microsoft.com/"
_UNUSABLE_STATUSES = frozenset({"expired", "revoked"})


def iso_utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_tag(user_id: str, idempotency_key: str | None) -> str:
    """The event's metadata tag: stable for one user + Idempotency-Key, random otherwise."""
    if idempotency_key is None:
        return "tc1." + _secrets.token_hex(20)
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()
    return "tc1." + digest[:40]


def teams_url(event: dict[str, Any]) -> str | None:
    conferencing = event.get("conferencing")
    if not isinstance(conferencing, dict) or conferencing.get("provider") != TEAMS_PROVIDER:
        return None
    details = conferencing.get("details")
    url = details.get("url") if isinstance(details, dict) else None
    if isinstance(url, str) and url.startswith(TEAMS_URL_PREFIX) and len(url) <= 4096:
        return url
    return None


def is_ours(event: dict[str, Any]) -> bool:
    metadata = event.get("metadata")
    return isinstance(metadata, dict) and metadata.get(OWNER_KEY) == OWNER_VALUE


def meeting_json(event: dict[str, Any], organizer_fallback: str) -> dict[str, Any]:
    when = event.get("when") if isinstance(event.get("when"), dict) else {}
    assert isinstance(when, dict)
    start, end = when.get("start_time"), when.get("end_time")
    organizer = event.get("organizer") if isinstance(event.get("organizer"), dict) else {}
    assert isinstance(organizer, dict)
    participants = []
    for item in event.get("participants") or []:
        if isinstance(item, dict) and isinstance(item.get("email"), str):
            entry = {"email": item["email"]}
            if isinstance(item.get("name"), str) and item["name"]:
                entry["name"] = item["name"]
            participants.append(entry)
    return {
        "meeting_id": event["id"],
        "join_url": teams_url(event),
        "title": event.get("title") if isinstance(event.get("title"), str) else "",
        "start": iso_utc(start) if isinstance(start, int) else None,
        "end": iso_utc(end) if isinstance(end, int) else None,
        "participants": participants,
        "organizer_email": organizer.get("email") or organizer_fallback,
    }


def nylas_event_body(request: dict[str, Any], tag: str) -> dict[str, Any]:
    when: dict[str, Any] = {"start_time": request["start"], "end_time": request["end"]}
    if "timezone" in request:
        when["start_timezone"] = when["end_timezone"] = request["timezone"]
    body: dict[str, Any] = {
        "title": request["title"],
        "when": when,
        "busy": True,
        "conferencing": {"provider": TEAMS_PROVIDER, "autocreate": {}},
        "metadata": {TAG_KEY: tag, OWNER_KEY: OWNER_VALUE},
    }
    if "description" in request:
        body["description"] = request["description"]
    if request.get("participants"):
        body["participants"] = request["participants"]
    return body


class Meetings:
    def __init__(
        self,
        settings: Settings,
        grants: GrantStore,
        secrets: SecretsProvider,
        events: EventsApi | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.grants = grants
        self.secrets = secrets
        self._events = events
        self._clock = clock

    @property
    def events(self) -> EventsApi:
        if self._events is None:
            raise UnsupportedFlavour()
        return self._events

    def now(self) -> int:
        return int(self._clock())

    # --- checks before any I/O but the API keys -------------------------------------------------------
    def admit(self, authorization: str | None) -> None:
        """Bearer API key (401), then the flavour: beta deployments have no meetings (400)."""
        self.secrets.authenticate(authorization)  # re-reads on a mismatch, like the flow (review 3, G5)
        if self.settings.nylas_api != "v3":
            raise UnsupportedFlavour()

    def prepare_create(self, user_id: str, body: object, idempotency_key: str | None) -> dict[str, Any]:
        security.check_user_id(user_id)
        check_idempotency_key(idempotency_key)
        return parse_create(body)

    # --- use cases -----------------------------------------------------------------------------------
    def create(
        self,
        user_id: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        *,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """`request` is a `prepare_create` result. Not idempotent by itself: see MeetingsCreate."""
        record = self._usable_grant(user_id)
        if record.teams == "unavailable":
            raise TeamsUnavailable()
        tag = create_tag(user_id, idempotency_key)
        keyed = idempotency_key is not None
        with self._watch_grant(record):
            found = None
            if keyed and tag in record.ambiguous_tags:
                # An earlier attempt with this key may have created the event: look before creating.
                found = self.events.find_tagged(record.grant_id, TAG_KEY, tag, deadline=deadline)
                logger.info("retry of an unanswered create", extra={"found": found is not None})
            if found is not None:
                event = found
            else:
                event = self._post_or_find(record, nylas_event_body(request, tag), tag, keyed, deadline)
            if tag in record.ambiguous_tags:
                self.grants.forget_ambiguous_create(record.user_id, record.grant_id, tag)
            url = teams_url(event)
            if url is None:
                # The link may come a little later ("once the meeting exists"): one more read.
                event = self.events.get(record.grant_id, event["id"], deadline=deadline)
                url = teams_url(event)
            if url is None:
                self._discard(record, event["id"], deadline)
        if record.teams != "available":
            self.grants.set_teams(record.user_id, record.grant_id, "available", now=self.now())
        logger.info("meeting created", extra={"user": security.hash_prefix(record.user_id)})
        return meeting_json(event, record.email)

    def get(self, user_id: str, meeting_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        record = self._usable_grant(user_id)
        with self._watch_grant(record):
            event = self._our_event(record, meeting_id, deadline)
        return meeting_json(event, record.email)

    def update(
        self, user_id: str, meeting_id: str, body: object, *, deadline: float | None = None
    ) -> dict[str, Any]:
        changes = parse_update(body)
        record = self._usable_grant(user_id)
        with self._watch_grant(record):
            event = self._our_event(record, meeting_id, deadline)
            put: dict[str, Any] = {}
            if "start" in changes or "end" in changes:
                when = event.get("when") if isinstance(event.get("when"), dict) else {}
                assert isinstance(when, dict)
                start = changes.get("start", when.get("start_time"))
                end = changes.get("end", when.get("end_time"))
                if not isinstance(start, int) or not isinstance(end, int):
                    raise NotFound("This meeting is not a timed meeting.")
                check_span(start, end)
                put["when"] = {
                    key: value for key, value in when.items() if key in ("start_timezone", "end_timezone")
                } | {"start_time": start, "end_time": end}
            for name in ("title", "description", "participants"):
                if name in changes:
                    put[name] = changes[name]
            updated = self.events.update(record.grant_id, meeting_id, put, deadline=deadline)
        return meeting_json(updated, record.email)

    def delete(self, user_id: str, meeting_id: str, *, deadline: float | None = None) -> None:
        record = self._usable_grant(user_id)
        with self._watch_grant(record):
            self._our_event(record, meeting_id, deadline)
            self.events.delete(record.grant_id, meeting_id, deadline=deadline)
        logger.info("meeting deleted", extra={"user": security.hash_prefix(record.user_id)})

    # --- helpers -------------------------------------------------------------------------------------
    def _usable_grant(self, user_id: str) -> GrantRecord:
        record = self.grants.get(security.check_user_id(user_id))
        if record is None:
            raise NotConnected()
        if record.status in _UNUSABLE_STATUSES:
            raise ReauthRequired()
        return record

    @contextmanager
    def _watch_grant(self, record: GrantRecord) -> Iterator[None]:
        """A Nylas 401 for the grant turns the record `expired` (the stream publishes the event)."""
        try:
            yield
        except GrantExpired:
            logger.warning("Nylas says the grant is no longer valid: marking it expired")
            self.grants.mark_expired(record.user_id, record.grant_id, now=self.now())
            raise

    def _our_event(self, record: GrantRecord, meeting_id: str, deadline: float | None) -> dict[str, Any]:
        event = self.events.get(record.grant_id, check_meeting_id(meeting_id), deadline=deadline)
        if not is_ours(event):
            raise NotFound("No such meeting.")  # a calendar event teams-connect did not create
        return event

    def _post_or_find(
        self, record: GrantRecord, body: dict[str, Any], tag: str, keyed: bool, deadline: float | None
    ) -> dict[str, Any]:
        try:
            return self.events.create(record.grant_id, body, deadline=deadline)
        except AmbiguousCreate:
            logger.warning("the create may have reached Nylas: looking for its tag")
        found = None
        try:
            found = self.events.find_tagged(record.grant_id, TAG_KEY, tag, deadline=deadline)
        except ReauthRequired:
            raise
        except ConnectError:
            pass
        if found is not None:
            logger.info("the unanswered create had succeeded: using that event")
            return found
        # Not seen (yet): Nylas may still be creating it. A retry with the same key looks first.
        if keyed:
            self.grants.note_ambiguous_create(record.user_id, record.grant_id, tag)
        raise UpstreamUnavailable()

    def _discard(self, record: GrantRecord, event_id: str, deadline: float | None) -> NoReturn:
        """No Teams link: delete the event again, remember the account cannot host Teams, 422."""
        logger.warning("event created without a Teams link: the account cannot host Teams meetings")
        try:
            self.events.delete(record.grant_id, event_id, deadline=deadline)
        except NotFound:
            pass
        except ConnectError:
            logger.error("could not delete the event that has no Teams link")
            raise
        self.grants.set_teams(record.user_id, record.grant_id, "unavailable", now=self.now())
        raise TeamsUnavailable()


def build_meetings(settings: Settings, *, clock: Callable[[], float] = time.time) -> Meetings:
    """The container's clients, once, at init: DynamoDB, Secrets Manager, and (v3) the Nylas HTTP
    stack. A beta deployment builds no Nylas client: every route answers `unsupported_flavour`."""
    from teams_connect.adapters.secrets import secrets_client
    from teams_connect.adapters.store.base import dynamodb_client

    client = dynamodb_client()
    secrets_client()
    secrets = SecretsProvider(settings)
    events: EventsApi | None = None
    if settings.nylas_api == "v3":
        from teams_connect.adapters.nylas.http import NylasHttp

        http = NylasHttp(settings.nylas_base_url, read_timeout=settings.nylas_read_timeout)
        events = EventsApi(http, secrets)
    return Meetings(
        settings,
        GrantStore(settings.grants_table, settings.sessions_table, client),
        secrets,
        events,
        clock=clock,
    )
