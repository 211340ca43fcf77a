"""In-process properties of `teams_connect.rules.security` (cheap: many examples)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teams_connect.config import parse_allowed_return_urls
from teams_connect.errors import InvalidRequest, ReturnToNotAllowed, SessionInvalid, Unauthorized
from teams_connect.rules import query, security
from tests.adversarial import harness

ALLOWED = parse_allowed_return_urls(
    "https://app.example/cb,https://app.example:8443/x/,http://127.0.0.1:8000/return,http://localhost/cb"
)
ALLOWED_HOSTS = {(a.scheme, a.host, a.port) for a in ALLOWED}
CI = settings(max_examples=300, deadline=None, derandomize=True, database=None)

_URL_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "//",
        "/\\",
        "\\\\",
        "javascript:",
        "data:",
        "app.example",
        "127.0.0.1",
        "localhost",
        "evil.example",
        ":8000",
        ":8443",
        ":",
        "@",
        "%40",
        "%2f",
        "%2e",
        "%5c",
        "/cb",
        "/x/",
        "/return",
        "/..",
        "/.",
        "//",
        "?",
        "#",
        "[::1]",
        "\t",
        "\n",
        "\r",
        "\x00",
        " ",
        ".",
        "\u0430",
        "\uff0e",
        "%0d%0a",
        ";",
        "..;",
        "%",
        "%25",
        "xn--",
    ]
)
URLS = st.one_of(
    st.lists(_URL_PIECES, min_size=1, max_size=10).map("".join),
    st.text(max_size=80),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(["https://app.example/cb", "http://127.0.0.1:8000/return"]),
        st.text(max_size=30),
    ),
)


def _normalised_host(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url.replace("\\", "/"))
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


@CI
@given(url=URLS)
def test_validate_return_to_returns_only_allow_listed_hosts(url: str) -> None:
    try:
        accepted = security.validate_return_to(url, ALLOWED)
    except ReturnToNotAllowed:
        harness.record("property_return_to", "TM8")
        return
    assert accepted == url
    assert _normalised_host(accepted) in ALLOWED_HOSTS
    assert not re.search(r"[\x00-\x20\x7f\\]", accepted)
    path = urlsplit(accepted).path
    assert "/../" not in path + "/"
    assert "/./" not in path + "/"
    harness.record("property_return_to", "TM8")


@CI
@given(raw=st.text(max_size=200))
def test_parse_query_either_parses_or_raises_the_given_error(raw: str) -> None:
    try:
        parsed = query.parse_query(raw, SessionInvalid)
    except SessionInvalid:
        harness.record("property_query_parser", "TM7", "TM11")
        return
    assert len(parsed) <= query.MAX_QUERY_FIELDS
    harness.record("property_query_parser", "TM7", "TM11")


@CI
@given(header=st.one_of(st.none(), st.text(max_size=60)))
def test_only_the_exact_key_authenticates(header: str | None) -> None:
    key = "the-one-key-0123456789"
    try:
        security.authenticate_bearer(header, [key])
    except Unauthorized:
        harness.record("property_api_key", "TM1")
        return
    assert header is not None
    scheme, _, rest = header.partition(" ")
    assert scheme.lower() == "bearer"
    assert rest.strip() == key


@CI
@given(value=st.one_of(st.text(max_size=300), st.integers(), st.none()))
def test_check_user_id_accepts_only_encodable_strings_without_controls(value: object) -> None:
    try:
        checked = security.check_user_id(value)
    except InvalidRequest:
        return
    assert isinstance(checked, str)
    checked.encode("utf-8")  # never a lone surrogate: DynamoDB would refuse it
    assert 1 <= len(checked) <= 256


@CI
@given(state=st.text(max_size=100))
def test_check_state_accepts_only_the_exact_shape(state: str) -> None:
    try:
        security.check_state(state)
    except SessionInvalid:
        harness.record("property_state_syntax", "TM2", "TM7")
        return
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}", state)


def test_issued_states_and_session_ids_are_unique_and_well_formed() -> None:
    sessions = [security.new_session_id() for _ in range(2000)]
    assert len(set(sessions)) == len(sessions)
    states = [security.new_state(sessions[i % 10]) for i in range(2000)]
    assert len(set(states)) == len(states)
    for sid in sessions:
        assert security.SESSION_ID_RE.match(sid)
    for state in states:
        assert len(state) <= 256
        assert security.check_state(state) == state
        assert security.session_id_from_state(state) in sessions[:10]
    nonces = {security.new_binding_nonce() for _ in range(2000)}
    assert len(nonces) == 2000


@pytest.mark.parametrize("pattern", ["SESSION_ID_RE", "STATE_RE", "GRANT_ID_RE", "EMAIL_RE", "ACCOUNT_ID_RE"])
def test_no_pattern_accepts_a_trailing_newline(pattern: str) -> None:
    regex = getattr(security, pattern)
    sample = {
        "SESSION_ID_RE": "A" * 43,
        "STATE_RE": "A" * 43 + "." + "B" * 43,
        "GRANT_ID_RE": "grant-1",
        "EMAIL_RE": "a@contoso.example",
        "ACCOUNT_ID_RE": "acc-1",
    }[pattern]
    assert regex.match(sample)
    assert not regex.match(sample + "\n")
