from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teams_connect.config import parse_allowed_return_urls
from teams_connect.errors import InvalidRequest, ReturnToNotAllowed, SessionInvalid, Unauthorized
from teams_connect.rules import query, security

ALLOWED = parse_allowed_return_urls(
    "https://allowed.example/app,https://allowed.example:8443/x/,http://127.0.0.1:8000/,http://localhost/cb"
)


def test_pkce_challenge_matches_the_nylas_documented_vector() -> None:
    assert security.pkce_challenge("nylas") == (
        "ZTk2YmY2Njg2YTNjMzUxMGU5ZTkyN2RiNzA2OWNiMWNiYTliOTliMDIyZjQ5NDgzYTZjZTMyNzA4MDllNjhhMg"
    )


def test_code_verifier_is_64_unreserved_characters_and_unique() -> None:
    verifiers = {security.new_code_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{64}", v) for v in verifiers)


def test_state_embeds_the_session_id_and_256_random_bits() -> None:
    sid = security.new_session_id()
    states = {security.new_state(sid) for _ in range(50)}
    assert len(states) == 50
    for state in states:
        assert security.STATE_RE.match(state)
        assert len(state) == 87 <= 256
        assert security.session_id_from_state(state) == sid


@pytest.mark.parametrize(
    "bad", ["", "x", "a" * 43, "a" * 43 + ".", "a" * 43 + "." + "b" * 42, "a" * 43 + ".b" * 43]
)
def test_malformed_state_is_session_invalid(bad: str) -> None:
    with pytest.raises(SessionInvalid):
        security.check_state(bad)


def test_cookie_name_is_per_flow_and_host_prefixed_on_https() -> None:
    h = security.sha256_hex("some.state")
    assert security.cookie_name(h, secure=True) == "__Host-tc_" + h[:8]
    assert security.cookie_name(h, secure=False) == "tc_" + h[:8]


def test_find_cookie_reads_v2_cookies_and_refuses_duplicates() -> None:
    assert security.find_cookie(["a=1", "tc_x=nonce"], "tc_x") == "nonce"
    assert security.find_cookie(["a=1; tc_x=nonce"], "tc_x") == "nonce"
    assert security.find_cookie(["tc_x=1", "tc_x=2"], "tc_x") is None
    assert security.find_cookie([], "tc_x") is None


def test_parse_query_rejects_duplicates_and_garbage() -> None:
    assert query.parse_query("a=1&b=%20x") == {"a": "1", "b": " x"}
    assert query.parse_query("") == {}
    for raw in [
        "a=1&a=2",
        "a=1&&b=2",
        "a",
        "a=%ff",
        "&".join(f"k{i}=v" for i in range(30)),
        "a=" + "x" * 5000,
    ]:
        with pytest.raises(InvalidRequest):
            query.parse_query(raw)
    with pytest.raises(SessionInvalid):
        query.parse_query("state=1&state=2", SessionInvalid)


def test_bearer_check_accepts_every_configured_key_and_nothing_else() -> None:
    keys = ("key-one-0123456789", "key-two-0123456789")
    security.authenticate_bearer("Bearer key-one-0123456789", keys)
    security.authenticate_bearer("bearer key-two-0123456789", keys)
    for header in [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic key-one-0123456789",
        "Bearer key-one-012345678",
        "key-one",
    ]:
        with pytest.raises(Unauthorized):
            security.authenticate_bearer(header, keys)
    with pytest.raises(Unauthorized):
        security.authenticate_bearer("Bearer x", ())


@pytest.mark.parametrize(
    "url",
    [
        "https://allowed.example/app",
        "https://allowed.example/app/",
        "https://allowed.example/app/settings?x=1&y=2",
        "https://allowed.example/app#frag",
        "https://ALLOWED.example/app",
        "https://allowed.example:443/app",
        "https://allowed.example:8443/x/y",
        "http://127.0.0.1:8000/anything",
        "http://localhost/cb?z=1",
    ],
)
def test_return_to_allowed(url: str) -> None:
    assert security.validate_return_to(url, ALLOWED) == url


HOSTILE = [
    "javascript:alert(1)",
    "JavaScript:alert(1)//https://allowed.example/app",
    "data:text/html,<script>alert(1)</script>",
    "//evil.com",
    "//allowed.example/app",
    "///evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\evil.com",
    "https:\\\\evil.com",
    "https://allowed.example\\@evil.com/app",
    "https://allowed.example@evil.com/app",
    "https://user:pw@allowed.example/app",
    "https://allowed.example.evil.com/app",
    "https://evil.com/allowed.example/app",
    "https://allowed.example/application",
    "https://allowed.example/ap",
    "https://allowed.example/app/../admin",
    "https://allowed.example/app/%2e%2e/admin",
    "https://allowed.example/app/%2E%2E%2Fadmin",
    "https://allowed.example/app%2f..%2fadmin",
    "https://allowed.example/app/..%5cadmin",
    "https://allowed.example//evil.com/app",
    "https:evil.com",
    "https:/evil.com",
    "https:/allowed.example/app",
    "http://allowed.example/app",
    "ftp://allowed.example/app",
    "https://allowed.example:444/app",
    "https://allowed.example:8443/app",
    "https://allowed.example:/app",
    "https://allowed.example:99999/app",
    "https://allowed.example/app\r\nSet-Cookie: x=1",
    "https://allowed.example/app%0d%0aSet-Cookie:x=1",
    "https://allowed.example/app%0aX",
    "https://allowed.example/app\tx",
    "\thttps://allowed.example/app",
    "https://allowed.example/app ",
    " https://allowed.example/app",
    "https://allowed.example/app\x00",
    "https://allowed.example/app%00",
    "https://allowed%2eexample/app",
    "https://%61llowed.example/app",
    "https://allowed.example%2f@evil.com/app",
    "https://allowed.exampl\u0435/app",
    "https://[::1]/app",
    "http://127.0.0.2:8000/",
    "http://evil.com@127.0.0.1:8000/",
    "http://127.0.0.1:8001/",
    "",
    "/relative/path",
    "app",
    "https://",
    "https:///app",
    "https://allowed.example/app/%252e%252e/admin",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_return_to_hostile_corpus_refused(url: str) -> None:
    with pytest.raises(ReturnToNotAllowed):
        security.validate_return_to(url, ALLOWED)


@pytest.mark.parametrize(
    "value", [None, 1, ["https://allowed.example/app"], {"u": 1}, "https://allowed.example/app" * 100]
)
def test_return_to_non_string_or_too_long_refused(value: object) -> None:
    with pytest.raises(ReturnToNotAllowed):
        security.validate_return_to(value, ALLOWED)


ALLOWED_HOSTS = {"allowed.example", "127.0.0.1", "localhost"}
_url_chars = st.sampled_from(
    [*list("abc/.:@\\%?#&=-_ \t\r\n"), "allowed.example", "evil.com", "//", "%2e", "%2f", "@"]
)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.sampled_from(["https://", "http://", "https:", "//", "", "HTTPS://", "https:/", "\\\\"]),
    host=st.sampled_from(
        ["allowed.example", "evil.com", "allowed.example.evil.com", "127.0.0.1:8000", "localhost"]
    ),
    rest=st.lists(_url_chars, max_size=8).map("".join),
)
def test_property_accepted_urls_have_an_allow_listed_host(prefix: str, host: str, rest: str) -> None:
    url = prefix + host + rest
    try:
        accepted = security.validate_return_to(url, ALLOWED)
    except ReturnToNotAllowed:
        return
    parsed = urlsplit(accepted.replace("\\", "/"))
    assert parsed.hostname in ALLOWED_HOSTS
    assert parsed.scheme in ("https", "http")
    assert parsed.username is None
    assert parsed.password is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_property_arbitrary_text_never_crashes_the_validator(text: str) -> None:
    try:
        accepted = security.validate_return_to(text, ALLOWED)
    except ReturnToNotAllowed:
        return
    assert urlsplit(accepted).hostname in ALLOWED_HOSTS


def test_with_status_keeps_the_query_and_fragment() -> None:
    assert security.with_status("https://a.example/x?tab=1#f", {"status": "connected"}) == (
        "https://a.example/x?tab=1&status=connected#f"
    )
    assert security.with_status("https://a.example", {"status": "error", "error": "session_used"}) == (
        "https://a.example/?status=error&error=session_used"
    )


def test_user_id_rules() -> None:
    assert security.check_user_id("u" * 256) == "u" * 256
    assert security.check_user_id("ユーザー/42") == "ユーザー/42"
    for bad in ["", "u" * 257, 42, None, "a\nb", "a\x00b"]:
        with pytest.raises(InvalidRequest):
            security.check_user_id(bad)


# --- regressions found by tests/adversarial and tests/properties -----------------------------------
@pytest.mark.parametrize(
    "pattern", ["SESSION_ID_RE", "STATE_RE", "NONCE_RE", "GRANT_ID_RE", "EMAIL_RE", "ACCOUNT_ID_RE"]
)
def test_patterns_refuse_a_trailing_newline(pattern: str) -> None:
    samples = {
        "SESSION_ID_RE": "A" * 43,
        "NONCE_RE": "A" * 43,
        "STATE_RE": "A" * 43 + "." + "B" * 43,
        "GRANT_ID_RE": "grant-1",
        "EMAIL_RE": "a@contoso.example",
        "ACCOUNT_ID_RE": "acc-1",
    }
    regex = getattr(security, pattern)
    assert regex.match(samples[pattern])
    assert not regex.match(samples[pattern] + "\n")  # `$` would have matched here


def test_state_with_a_trailing_newline_is_session_invalid() -> None:
    with pytest.raises(SessionInvalid):
        security.check_state("A" * 43 + "." + "B" * 43 + "\n")


@pytest.mark.parametrize("value", ["\ud800", "user\udfff", "a\ud83db"])
def test_user_id_with_a_lone_surrogate_is_invalid(value: str) -> None:
    with pytest.raises(InvalidRequest):
        security.check_user_id(value)


def test_email_pattern_refuses_lone_surrogates() -> None:
    assert not security.EMAIL_RE.match("\ud800@contoso.example")
    assert security.EMAIL_RE.match("jos\u00e9@contoso.example")


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1:8000/cb",  # urlsplit raises ValueError: must be a refusal, not a 500
        "http://[::1/cb",
        "http://127.0.0.1:8000/..;/admin",
        "https://allowed.example/app/..;x/admin",
        "https://allowed.example/app/.;/x",
    ],
)
def test_return_to_parser_confusions_are_refused(url: str) -> None:
    with pytest.raises(ReturnToNotAllowed):
        security.validate_return_to(url, ALLOWED)


def test_return_to_with_an_ordinary_path_parameter_is_still_accepted() -> None:
    url = "https://allowed.example/app/page;v=1"
    assert security.validate_return_to(url, ALLOWED) == url


@pytest.mark.parametrize("body", ["[" * 15000, '{"a":' * 2500 + "1" + "}" * 2500])
def test_deeply_nested_json_is_invalid_request_not_a_crash(body: str) -> None:
    from teams_connect.http import apigw, web

    request = apigw.Request("POST", "/v1/sessions", headers={"content-type": "application/json"}, body=body)
    with pytest.raises(InvalidRequest):
        web.parse_json_body(request)
