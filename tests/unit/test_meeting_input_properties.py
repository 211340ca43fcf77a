"""Properties of the meetings API's input checks (hypothesis): every RFC 3339 time with an offset
parses to the instant it names, whatever the offset; a time without one never parses; a valid
create body always normalises, and any unknown field or reversed span is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teams_connect.errors import InvalidRequest
from teams_connect.rules.meeting_input import EARLIEST, LATEST, MAX_DURATION_SECONDS, parse_create, parse_time

INSTANTS = st.integers(min_value=EARLIEST + 86400, max_value=LATEST - 86400)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)


def rfc3339(epoch: int, offset_minutes: int, *, fraction: str = "", zulu: bool = False) -> str:
    zone = timezone(timedelta(minutes=offset_minutes))
    local = datetime.fromtimestamp(epoch, UTC).astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + fraction
    if zulu and offset_minutes == 0:
        return text + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    minutes = abs(offset_minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@settings(max_examples=200, deadline=None)
@given(INSTANTS, OFFSETS, st.sampled_from(["", ".5", ".123456789"]), st.booleans())
def test_any_offset_names_the_same_instant(epoch: int, offset: int, fraction: str, zulu: bool) -> None:
    assert parse_time(rfc3339(epoch, offset, fraction=fraction, zulu=zulu), "start") == epoch


@settings(max_examples=100, deadline=None)
@given(INSTANTS)
def test_a_time_without_offset_is_refused(epoch: int) -> None:
    naive = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    with pytest.raises(InvalidRequest):
        parse_time(naive, "start")


@settings(max_examples=150, deadline=None)
@given(
    INSTANTS,
    st.integers(min_value=1, max_value=MAX_DURATION_SECONDS),
    OFFSETS,
    st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and t.isprintable()),
)
def test_valid_bodies_normalise(epoch: int, duration: int, offset: int, title: str) -> None:
    body = {"title": title, "start": rfc3339(epoch, offset), "end": rfc3339(epoch + duration, offset)}
    assert parse_create(body) == {"title": title, "start": epoch, "end": epoch + duration, "participants": []}


@settings(max_examples=100, deadline=None)
@given(INSTANTS, st.integers(min_value=0, max_value=3 * 86400), st.text(min_size=1, max_size=20))
def test_reversed_spans_and_unknown_fields_are_refused(epoch: int, back: int, field: str) -> None:
    body: dict[str, Any] = {"title": "t", "start": rfc3339(epoch, 0), "end": rfc3339(epoch - back, 0)}
    with pytest.raises(InvalidRequest):
        parse_create(body)
    if field not in ("title", "start", "end", "description", "participants", "timezone"):
        ok = {"title": "t", "start": rfc3339(epoch, 0), "end": rfc3339(epoch + 60, 0), field: "x"}
        with pytest.raises(InvalidRequest):
            parse_create(ok)
