"""v3 management API (API key): grants, connectors, redirect URIs and events with Teams conferencing."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from .common import (
    DEFAULT_MICROSOFT_SCOPES,
    MICROSOFT,
    PERSONAL_MICROSOFT_DOMAINS,
    config_of,
    require_api_key,
    store_of,
    v3_fail,
    v3_json,
)
from .errors import NylasError
from .state import Connector, Grant, RedirectUri, new_id
from .validation import Fields, is_email, is_http_url, is_tenant, json_object, query_int, query_one
from .webhooks import dispatcher_of

CONNECTOR_PROVIDERS = (
    "google",
    "microsoft",
    "imap",
    "icloud",
    "yahoo",
    "ews",
    "virtual-calendar",
    "zoom",
    "nylas",
)
OAUTH_CONNECTORS = ("google", "microsoft", "zoom", "yahoo")
PLATFORMS = ("web", "desktop", "js", "ios", "android")
PLATFORM_SETTINGS = {
    "js": ("origin",),
    "ios": ("bundle_id",),
    "android": ("package_name", "sha1_certificate_fingerprint"),
}
CONFERENCING_PROVIDERS = (
    "Google Meet",
    "Zoom Meeting",
    "Microsoft Teams",
    "Teams for Business",
    "Skype for Consumer",
    "Skype for Business",
    "WebEx",
    "GoToMeeting",
)
MAX_EPOCH = 253402300799  # 9999-12-31


def _not_found(what: str, type_: str = "not_found_error") -> NylasError:
    return NylasError(404, type_, f"{what} not found")


async def _body(request: Request) -> Fields:
    return Fields(await json_object(request, config_of(request).max_body_bytes, v3_fail), v3_fail)


def _page(request: Request) -> tuple[int, int]:
    limit = query_int(request, "limit", v3_fail, default=10, lo=1, hi=200)
    offset = query_int(request, "offset", v3_fail, default=0, lo=0, hi=10**9)
    assert limit is not None
    assert offset is not None
    return limit, offset


# -- grants ----------------------------------------------------------------------------------------------
def _grant_or_404(request: Request, grant_id: str) -> Grant:
    grant = store_of(request).grants.get(grant_id)
    if grant is None:
        raise _not_found(f"Grant '{grant_id}'", "grant.not_found")
    return grant


async def list_grants(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    limit, offset = _page(request)
    email = query_one(request, "email", v3_fail)
    provider = query_one(request, "provider", v3_fail)
    status = query_one(request, "grant_status", v3_fail)
    if status is not None and status not in ("valid", "invalid"):
        raise v3_fail(400, "grant_status must be 'valid' or 'invalid'")
    sort_by = query_one(request, "sort_by", v3_fail) or "created_at"
    order_by = query_one(request, "order_by", v3_fail) or "desc"
    if sort_by not in ("created_at", "updated_at") or order_by not in ("asc", "desc"):
        raise v3_fail(400, "sort_by must be created_at|updated_at and order_by asc|desc")
    since = query_int(request, "since", v3_fail, default=None, lo=0, hi=MAX_EPOCH)
    before = query_int(request, "before", v3_fail, default=None, lo=0, hi=MAX_EPOCH)
    with store.lock:
        grants = [
            g
            for g in store.grants.values()
            if (email is None or g.email.lower() == email.lower())
            and (provider is None or g.provider == provider)
            and (status is None or g.grant_status == status)
            and (since is None or g.created_at >= since)
            and (before is None or g.created_at <= before)  # OpenAPI: "less than or equal to"
        ]
        grants.sort(key=lambda g: (getattr(g, sort_by), g.id), reverse=order_by == "desc")
        data = [g.to_v3() for g in grants[offset : offset + limit]]
    return v3_json(request, data, limit=limit, offset=offset)


async def get_grant(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        return v3_json(request, _grant_or_404(request, request.path_params["grant_id"]).to_v3())


async def patch_grant(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    fields = await _body(request)
    settings = fields.obj("settings")
    scope = fields.str_list("scope")
    with store.lock:
        grant = _grant_or_404(request, request.path_params["grant_id"])
        if settings is not None:
            grant.settings = dict(settings)  # replaced wholesale
        if scope is not None:
            grant.scope = scope
        grant.updated_at = store.now_int()
        return v3_json(request, grant.to_v3())


async def delete_grant(request: Request) -> Response:
    require_api_key(request)
    grant_id = request.path_params["grant_id"]
    store = store_of(request)
    with store.lock:
        grant = store.grants.get(grant_id)
        if grant is None or not store.delete_grant(grant_id):
            raise _not_found(f"Grant '{grant_id}'", "grant.not_found")
        dispatcher_of(store).emit("grant.deleted", grant)
    return v3_json(request)


# -- connectors ------------------------------------------------------------------------------------------
def _connector_settings(provider: str, settings: Fields | None, *, partial: bool) -> dict[str, Any]:
    if provider not in OAUTH_CONNECTORS:
        return dict(settings.data) if settings is not None else {}
    if settings is None:
        if partial:
            return {}
        raise v3_fail(400, f"settings with client_id and client_secret are required for provider {provider}")
    out: dict[str, Any] = {}
    for key in ("client_id", "client_secret"):
        value = settings.string(key, required=not partial, max_len=512)
        if value is not None:
            out[key] = value
    if provider == MICROSOFT:
        tenant = settings.string("tenant", max_len=64)
        if tenant is not None and not is_tenant(tenant):
            raise v3_fail(400, "settings.tenant must be a tenant GUID, 'common' or 'organizations'")
        if tenant is not None or not partial:
            out["tenant"] = tenant or "common"
    if provider == "google":
        topic = settings.string("topic_name", max_len=512)
        if topic is not None:
            out["topic_name"] = topic
    return out


def _connector_or_404(request: Request) -> Connector:
    provider = request.path_params["provider"]
    connector = store_of(request).connectors.get(provider)
    if connector is None:
        raise _not_found(f"Connector for provider '{provider}'")
    return connector


async def create_connector(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    fields = await _body(request)
    provider = fields.req_string("provider", max_len=64)
    if provider not in CONNECTOR_PROVIDERS:
        raise v3_fail(400, f"provider must be one of {', '.join(CONNECTOR_PROVIDERS)}")
    settings = _connector_settings(provider, fields.sub("settings"), partial=False)
    scope = fields.str_list("scope")
    name = fields.string("name", max_len=256) or f"{provider.capitalize()} connector"
    with store.lock:
        if provider in store.connectors:
            raise v3_fail(400, f"A connector for provider '{provider}' already exists (one per provider)")
        default_scope = DEFAULT_MICROSOFT_SCOPES if provider == MICROSOFT else []
        connector = Connector(
            provider=provider,
            name=name,
            settings=settings,
            scope=scope if scope is not None else list(default_scope),
            created_at=store.now_int(),
        )
        store.connectors[provider] = connector
        return v3_json(request, connector.to_v3(), status=201)


async def list_connectors(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    limit, offset = _page(request)
    with store.lock:
        connectors = sorted(store.connectors.values(), key=lambda c: (c.created_at, c.provider))
        data = [c.to_v3() for c in connectors[offset : offset + limit]]
    return v3_json(request, data, limit=limit, offset=offset)


async def get_connector(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        return v3_json(request, _connector_or_404(request).to_v3())


async def patch_connector(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    fields = await _body(request)
    with store.lock:
        connector = _connector_or_404(request)
        settings = _connector_settings(connector.provider, fields.sub("settings"), partial=True)
        scope = fields.str_list("scope")
        name = fields.string("name", max_len=256)
        credential = fields.string("active_credential_id", max_len=256)
        connector.settings.update(settings)
        if scope is not None:
            connector.scope = scope
        if name is not None:
            connector.name = name
        if credential is not None:
            connector.active_credential_id = credential
        return v3_json(request, connector.to_v3())


async def delete_connector(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    with store.lock:
        connector = _connector_or_404(request)
        del store.connectors[connector.provider]
        # "DELETE stops all grants on that connector at once": they turn invalid (they are not deleted).
        for grant in store.grants.values():
            if grant.provider == connector.provider:
                grant.grant_status = "invalid"
    return v3_json(request)


# -- redirect URIs ---------------------------------------------------------------------------------------
def _redirect_fields(fields: Fields, *, require_platform: bool) -> tuple[str, str, dict[str, Any] | None]:
    url = fields.req_string("url", max_len=2048)
    if not is_http_url(url):
        raise v3_fail(400, "url must be an absolute http(s) URL without a fragment")
    platform = fields.string("platform", required=require_platform, max_len=16) or "web"
    if platform not in PLATFORMS:
        raise v3_fail(400, f"platform must be one of {', '.join(PLATFORMS)}")
    settings_fields = fields.sub("settings")
    needed = PLATFORM_SETTINGS.get(platform)
    if needed is None:
        return url, platform, None
    if settings_fields is None:
        raise v3_fail(400, f"settings ({', '.join(needed)}) are required for platform {platform}")
    settings = {key: settings_fields.req_string(key, max_len=512) for key in needed}
    return url, platform, settings


def _redirect_or_404(request: Request) -> RedirectUri:
    uri_id = request.path_params["id"]
    record = store_of(request).redirect_uris.get(uri_id)
    if record is None:
        raise _not_found(f"Redirect URI '{uri_id}'")
    return record


async def list_redirect_uris(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        data = [r.to_v3() for r in store_of(request).redirect_uris.values()]
    # The OpenAPI gives this list a `success` flag besides `data`; the emulator also sends `request_id`.
    return v3_json(request, data, success=True)


async def create_redirect_uri(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    url, platform, settings = _redirect_fields(await _body(request), require_platform=False)
    with store.lock:
        if any(r.url == url and r.platform == platform for r in store.redirect_uris.values()):
            raise v3_fail(400, "This redirect URI is already registered for this platform")
        record = RedirectUri(id=new_id(), url=url, platform=platform, settings=settings)
        store.redirect_uris[record.id] = record
        return v3_json(request, record.to_v3())


async def get_redirect_uri(request: Request) -> Response:
    require_api_key(request)
    with store_of(request).lock:
        return v3_json(request, _redirect_or_404(request).to_v3())


async def patch_redirect_uri(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    fields = await _body(request)
    with store.lock:
        record = _redirect_or_404(request)
        record.url, record.platform, record.settings = _redirect_fields(fields, require_platform=True)
        return v3_json(request, record.to_v3())


async def delete_redirect_uri(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    with store.lock:
        record = _redirect_or_404(request)
        del store.redirect_uris[record.id]
    return v3_json(request)


# -- events ----------------------------------------------------------------------------------------------
def _usable_grant(request: Request) -> Grant:
    grant = _grant_or_404(request, request.path_params["grant_id"])
    if grant.grant_status != "valid":
        raise NylasError(
            401, "grant.invalid_authentication", "The grant is invalid: the user must re-authenticate"
        )
    return grant


def _calendar_id(request: Request, grant: Grant) -> str:
    calendar_id = query_one(request, "calendar_id", v3_fail)
    if not calendar_id:
        raise v3_fail(400, "Missing required query parameter: calendar_id")
    if len(calendar_id) > 256:
        raise v3_fail(400, "calendar_id is too long")
    if calendar_id == "primary":
        return "AQMk" + hashlib.sha256(grant.id.encode()).hexdigest()[:40]
    return calendar_id


def teams_join_url(event_id: str, grant: Grant) -> str:
    meeting = base64.b32encode(hashlib.sha256(event_id.encode()).digest()).decode().lower().rstrip("=")
    context = f'{{"Tid":"{grant.provider_user_id}","Oid":"{grant.id}"}}'
    return (
        f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{meeting[:48]}%40thread.v2/0"
        f"?context={quote(context, safe='')}"
    )


def _has_calendar_write(grant: Grant) -> bool:
    return any(s.lower().rsplit("/", 1)[-1] == "calendars.readwrite" for s in grant.scope)


def _conferencing(fields: Fields, grant: Grant, event_id: str) -> dict[str, Any] | None:
    """The event's conferencing: explicit details, a Teams autocreate, or ``None`` (none asked for, or
    ``conferencing: {}``). A personal Microsoft account (outlook.com, hotmail.com, live.com, msn.com)
    cannot host Teams meetings: like Microsoft Graph, Nylas then creates the event WITHOUT a meeting and
    without an error (nylas-lifecycle.md §2.4), so the answer simply has no ``conferencing``."""
    conf = fields.sub("conferencing")
    if conf is None or not conf.data:
        return None  # `conferencing: {}` means "no meeting"
    provider = conf.req_string("provider", max_len=64)
    if provider not in CONFERENCING_PROVIDERS:
        raise v3_fail(400, f"conferencing.provider must be one of {', '.join(CONFERENCING_PROVIDERS)}")
    autocreate = conf.sub("autocreate")
    details = conf.sub("details")
    if autocreate is not None and details is not None:
        raise v3_fail(400, "'details' not allowed when auto generating a conference")
    if details is not None:
        url = details.req_string("url", max_len=2048)
        if not is_http_url(url):
            raise v3_fail(400, "conferencing.details.url must be an http(s) URL")
        return {"provider": provider, "details": {"url": url}}
    if autocreate is None:
        raise v3_fail(400, "conferencing needs 'autocreate' or 'details'")
    autocreate.string("conf_grant_id", max_len=256)
    autocreate.obj("conf_settings")
    if provider != "Microsoft Teams":
        raise v3_fail(
            400, f"'{provider}' cannot be auto-created for a {grant.provider} grant in the emulator"
        )
    if is_personal_microsoft(grant.email):
        return None
    return {"provider": "Microsoft Teams", "details": {"url": teams_join_url(event_id, grant)}}


def is_personal_microsoft(email: str) -> bool:
    return email.rsplit("@", 1)[-1].lower() in PERSONAL_MICROSOFT_DOMAINS


def _participants(fields: Fields) -> list[dict[str, str]] | None:
    raw = fields.data.get("participants")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) > 200:
        raise v3_fail(400, "participants must be a list of at most 200 objects")
    out: list[dict[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise v3_fail(400, f"participants[{index}] must be an object")
        part = Fields(item, v3_fail, f"participants[{index}].")
        email = part.req_string("email", max_len=320)
        if not is_email(email):
            raise v3_fail(400, f"participants[{index}].email must be an email address")
        entry = {"email": email, "status": "noreply"}
        for key in ("name", "comment", "phone_number"):
            value = part.string(key, max_len=256)
            if value is not None:
                entry[key] = value
        out.append(entry)
    return out


def _notify(request: Request) -> None:
    notify = query_one(request, "notify_participants", v3_fail)
    if notify is not None and notify not in ("true", "false"):
        raise v3_fail(400, "notify_participants must be true or false")


def _when(fields: Fields, *, required: bool) -> dict[str, Any] | None:
    when = fields.sub("when", required=required)
    if when is None:
        return None
    start = when.integer("start_time", required=True, lo=0, hi=MAX_EPOCH)
    end = when.integer("end_time", required=True, lo=0, hi=MAX_EPOCH)
    assert start is not None
    assert end is not None
    if start >= end:
        raise v3_fail(400, "when.start_time must be before when.end_time")
    out: dict[str, Any] = {"object": "timespan", "start_time": start, "end_time": end}
    for key in ("start_timezone", "end_timezone"):
        tz = when.string(key, max_len=64)
        if tz is not None:
            out[key] = tz
    return out


def _metadata(fields: Fields) -> dict[str, str] | None:
    metadata = fields.str_map("metadata")
    if metadata is not None and len(metadata) > 50:
        raise v3_fail(400, "metadata holds at most 50 pairs")
    return metadata


def _visibility(fields: Fields) -> str | None:
    visibility = fields.string("visibility", max_len=16)
    if visibility is not None and visibility not in ("default", "private", "public"):
        raise v3_fail(400, "visibility must be default, private or public")
    return visibility


def _with_meeting_text(description: str, conferencing: dict[str, Any] | None) -> str:
    """Nylas appends the meeting details to the description."""
    if conferencing is None:
        return description
    join = conferencing["details"]["url"]
    return f"{description}\n\nMicrosoft Teams meeting\nJoin: {join}".lstrip()


def _writable_grant(request: Request) -> Grant:
    grant = _usable_grant(request)
    if not _has_calendar_write(grant):
        raise NylasError(
            403,
            "grant.access_denied",
            "The grant lacks the Calendars.ReadWrite scope needed to write events",
            provider_error={"code": "ErrorAccessDenied", "message": "Access is denied."},
        )
    return grant


async def create_event(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    _notify(request)
    with store.lock:
        grant = _usable_grant(request)
        calendar_id = _calendar_id(request, grant)
    fields = await _body(request)
    when = _when(fields, required=True)
    assert when is not None
    title = fields.string("title", max_len=1024)
    description = fields.string("description", max_len=8192)
    location = fields.string("location", max_len=255)
    busy = fields.boolean("busy")
    visibility = _visibility(fields)
    metadata = _metadata(fields)
    participants = _participants(fields)
    with store.lock:
        grant = _writable_grant(request)
        event_id = new_id().replace("-", "")
        conferencing = _conferencing(fields, grant, event_id)
        now = store.now_int()
        # Every field Nylas always returns on an event (the official SDK's `Event` needs
        # id, grant_id, calendar_id, busy, participants and when; the others are always sent too).
        event: dict[str, Any] = {
            "id": event_id,
            "object": "event",
            "grant_id": grant.id,
            "calendar_id": calendar_id,
            "busy": True if busy is None else busy,
            "created_at": now,
            "updated_at": now,
            "status": "confirmed",
            "read_only": False,
            "hide_participants": False,
            "visibility": visibility or "default",
            "ical_uid": f"{event_id}@nylas-emulator",
            "html_link": f"https://outlook.office365.com/owa/?itemid={event_id}&exvsurl=1&path=/calendar/item",
            "organizer": {"email": grant.email, "name": ""},
            "creator": {"email": grant.email, "name": ""},
            "reminders": {"use_default": True, "overrides": []},
            "when": when,
            "title": title or "",
            "description": _with_meeting_text(description or "", conferencing),
            "participants": participants or [],
            "metadata": metadata or {},
        }
        if location is not None:
            event["location"] = location
        if conferencing is not None:
            event["conferencing"] = conferencing
        store.events.setdefault(grant.id, []).append(event)
        return v3_json(request, event)


def _metadata_pair(request: Request) -> tuple[str, str] | None:
    raw = query_one(request, "metadata_pair", v3_fail)
    if raw is None:
        return None
    key, sep, value = raw.partition(":")
    # Only the five reserved keys are indexed and searchable (Nylas "Metadata").
    if not sep or key not in ("key1", "key2", "key3", "key4", "key5") or not value or len(value) > 500:
        raise v3_fail(400, "metadata_pair must be key1..key5 followed by ':' and a value")
    return key, value


async def list_events(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    limit = query_int(request, "limit", v3_fail, default=50, lo=1, hi=200)
    pair = _metadata_pair(request)
    with store.lock:
        grant = _usable_grant(request)
        calendar_id = _calendar_id(request, grant)
        events = [
            ev
            for ev in store.events.get(grant.id, [])
            if ev["calendar_id"] == calendar_id and (pair is None or ev["metadata"].get(pair[0]) == pair[1])
        ]
        return v3_json(request, events[:limit], next_cursor=None)


def _event_or_404(request: Request, grant: Grant) -> dict[str, Any]:
    """For Microsoft, `calendar_id` is required but not checked against the event's calendar."""
    _calendar_id(request, grant)
    event_id = request.path_params["event_id"]
    for event in store_of(request).events.get(grant.id, []):
        if event["id"] == event_id:
            return event
    raise _not_found(f"Event '{event_id}'")


async def get_event(request: Request) -> Response:
    require_api_key(request)
    store = store_of(request)
    with store.lock:
        grant = _usable_grant(request)
        return v3_json(request, _event_or_404(request, grant))


async def update_event(request: Request) -> Response:
    """`PUT`: the fields sent replace theirs (nested objects wholesale); the others stay."""
    require_api_key(request)
    store = store_of(request)
    _notify(request)
    with store.lock:
        grant = _usable_grant(request)
        _event_or_404(request, grant)
    fields = await _body(request)
    when = _when(fields, required=False)
    title = fields.string("title", max_len=1024)
    description = fields.string("description", max_len=8192)
    location = fields.string("location", max_len=255)
    busy = fields.boolean("busy")
    visibility = _visibility(fields)
    metadata = _metadata(fields)
    participants = _participants(fields)
    with store.lock:
        grant = _writable_grant(request)
        event = _event_or_404(request, grant)
        if event.get("read_only"):
            raise v3_fail(400, "This event is read-only")
        if fields.has("conferencing"):
            conferencing = _conferencing(fields, grant, event["id"])
            if conferencing is None:
                event.pop("conferencing", None)
            else:
                event["conferencing"] = conferencing
        for key, value in (
            ("when", when),
            ("title", title),
            ("location", location),
            ("busy", busy),
            ("visibility", visibility),
            ("metadata", metadata),
            ("participants", participants),
        ):
            if value is not None:
                event[key] = value
        if description is not None:
            event["description"] = _with_meeting_text(description, event.get("conferencing"))
        event["updated_at"] = store.now_int()
        return v3_json(request, event)


async def delete_event(request: Request) -> Response:
    """Microsoft deletes events immediately (Google would move them to the trash)."""
    require_api_key(request)
    store = store_of(request)
    _notify(request)
    with store.lock:
        grant = _writable_grant(request)
        event = _event_or_404(request, grant)
        store.events[grant.id].remove(event)
    return v3_json(request)
