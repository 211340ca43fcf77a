"""Hostile input at the backend API (`POST /v1/sessions`, `GET`/`DELETE /v1/grants/{user_id}`).

TM1 (no flow without a server-minted session, hence no session without the API key), TM8 (open
redirects in `return_to`), TM11 (control characters), TM14 (nothing echoed), TM7 (no upstream call).
Every case: the status, no Location off the allow-list (client hook), no write, no upstream call.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.harness import Guard
from tests.support.stack_process import StackUrls

KEY = "local-dev-api-key"  # tests/support/stack_process.LOCAL_API_KEY
ROUTES = [("POST", "/v1/sessions"), ("GET", "/v1/grants/u-1"), ("DELETE", "/v1/grants/u-1")]

BAD_AUTH: dict[str, dict[str, str]] = {
    "missing": {},
    "empty": {"authorization": ""},
    "scheme-only": {"authorization": "Bearer"},
    "key-prefix": {"authorization": f"Bearer {KEY[:-1]}"},
    "key-suffix": {"authorization": f"Bearer {KEY}x"},
    "key-and-extra-token": {"authorization": f"Bearer {KEY} {KEY}"},
    "key-uppercased": {"authorization": f"Bearer {KEY.upper()}"},
    "key-without-scheme": {"authorization": KEY},
    "basic-scheme": {"authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()},
    "token-scheme": {"authorization": f"Token {KEY}"},
    "bearer-tab": {"authorization": f"Bearer\t{KEY}"},
    "bearer-comma": {"authorization": f"Bearer,{KEY}"},
    "scheme-glued": {"authorization": f"Bearer{KEY}"},
    "other-header-x-api-key": {"x-api-key": KEY},
    "other-header-proxy-authorization": {"proxy-authorization": f"Bearer {KEY}"},
    "cookie": {"cookie": f"authorization=Bearer {KEY}"},
    "non-ascii": {"authorization": "Bearer кл\u044e\u0447"},
}
# RFC 7235: the scheme is case-insensitive and `1*SP` may separate it from the credentials.
TOLERATED_AUTH = {
    "lowercase-scheme": {"authorization": f"bearer {KEY}"},
    "uppercase-scheme": {"authorization": f"BEARER {KEY}"},
    "extra-spaces": {"authorization": f"Bearer   {KEY}"},
}


def _send(http: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = json.dumps({"user_id": harness.unique("u")}) if method == "POST" else None
    all_headers = {"content-type": "application/json", **headers}
    encoded = [(k.encode(), v.encode("utf-8")) for k, v in all_headers.items()]
    return http.request(method, path, content=body, headers=encoded)


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("case", sorted(BAD_AUTH))
def test_wrong_or_missing_api_key_is_401(
    http: httpx.Client, guard: Guard, method: str, path: str, case: str
) -> None:
    guard.arm()
    response = _send(http, method, path, BAD_AUTH[case])
    assert response.status_code == 401, response.text
    assert response.json() == {"error": {"code": "unauthorized", "message": "Missing or invalid API key."}}
    assert KEY not in response.text
    guard.assert_untouched()
    harness.record("api_key", "TM1")


@pytest.mark.parametrize("case", sorted(TOLERATED_AUTH))
def test_scheme_case_and_extra_spaces_are_tolerated_as_rfc_7235_allows(
    http: httpx.Client, guard: Guard, case: str
) -> None:
    guard.arm()
    response = _send(http, "GET", "/v1/grants/nobody-" + case, TOLERATED_AUTH[case])
    assert response.status_code == 404, response.text  # authenticated; no such grant
    guard.assert_untouched()
    harness.record("api_key", "TM1")


# --------------------------------------------------------------------------- return_to (TM8)

RETURN_TO_ATTACKS: dict[str, str] = {
    "javascript": "javascript:alert(document.domain)//{demo}/return",
    "javascript-upper": "JaVaScRiPt:alert(1)",
    "data": "data:text/html,<script>alert(1)</script>",
    "file": "file:///etc/passwd",
    "vbscript": "vbscript:msgbox(1)",
    "ftp": "ftp://{host}/return",
    "other-host": "https://evil.example/return",
    "https-on-allowed-http-entry": "https://{host}/return",
    "userinfo": "http://{host}@evil.example/return",
    "userinfo-allowed-at-evil": "https://allowed@evil.example/return",
    "userinfo-evil-at-allowed": "http://evil.example@{host}/return",
    "userinfo-encoded-at": "http://{host}%40evil.example/return",
    "protocol-relative": "//evil.example/return",
    "protocol-relative-backslash": "/\\evil.example/return",
    "backslashes": "http:\\\\evil.example\\return",
    "backslash-in-path": "{demo}\\@evil.example/return",
    "backslash-host": "http://{host}\\.evil.example/return",
    "scheme-without-slashes": "http:{host}/return",
    "scheme-one-slash": "http:/{host}/return",
    "triple-slash": "http:///evil.example/return",
    "relative-path": "/return",
    "empty": "",
    "only-spaces": "   ",
    "leading-space": " {demo}/return",
    "trailing-space": "{demo}/return ",
    "cr-lf": "{demo}/return\r\nSet-Cookie: x=1",
    "lf": "{demo}/return\nLocation: https://evil.example",
    "tab-in-scheme": "ht\ttp://{host}/return",
    "tab-in-host": "http://127.0.0.1\t.evil.example:{port}/return",
    "nul": "{demo}/return\x00.evil.example",
    "encoded-cr-lf": "{demo}/return%0d%0aSet-Cookie:%20x=1",
    "encoded-nul": "{demo}/return%00",
    "encoded-slash-host": "http://{host}%2f@evil.example/return",
    "encoded-dot-dot": "{demo}/return/%2e%2e/admin",
    "encoded-slash-traversal": "{demo}/return/..%2fadmin",
    "double-encoded-traversal": "{demo}/return/%252e%252e/admin",
    "bad-escape": "{demo}/return/%zz",
    "path-traversal": "{demo}/return/../admin",
    "path-traversal-at-end": "{demo}/return/..",
    "path-dot": "{demo}/return/./x",
    "path-dot-dot-semicolon": "{demo}/return/..;/admin",
    "path-double-slash": "{demo}/return//evil.example",
    "prefix-without-boundary": "{demo}/returnx",
    "prefix-sibling": "{demo}/return-evil",
    "host-suffix-port-confusion": "http://127.0.0.1:{port}.evil.example/return",
    "host-as-subdomain": "http://127.0.0.1.evil.example:{port}/return",
    "trailing-dot-host": "http://127.0.0.1.:{port}/return",
    "other-loopback-name": "http://localhost:{port}/return",
    "other-port": "http://127.0.0.1:1/return",
    "no-port": "http://127.0.0.1/return",
    "empty-port": "http://127.0.0.1:/return",
    "huge-port": "http://127.0.0.1:99999/return",
    "signed-port": "http://127.0.0.1:+{port}/return",
    "fullwidth-port": "http://127.0.0.1:\uff18\uff10\uff10\uff10/return",
    "unicode-lookalike-host": "http://127.0.0.\u0661:{port}/return",
    "unicode-dot": "http://127\u30020\u30020\u30021:{port}/return",
    "idn-homograph": "https://\u0430pp.example/return",
    "punycode-host": "https://xn--pp-8kc.example/return",
    "decimal-ip": "http://2130706433:{port}/return",
    "octal-ip": "http://0177.0.0.1:{port}/return",
    "hex-ip": "http://0x7f.0.0.1:{port}/return",
    "ipv6-loopback-not-listed": "http://[::1]:{port}/return",
    "ipv6-mapped": "http://[::ffff:127.0.0.1]:{port}/return",
    "ipv6-zone": "http://[::1%25eth0]:{port}/return",
    "ipv6-unclosed": "http://[::1:{port}/return",
    "ipv6-evil": "http://[2001:db8::1]/return",
    "too-long": "{demo}/return?x=" + "a" * 3000,
    "not-a-string-number": 42,  # type: ignore[dict-item]
    "not-a-string-list": ["{demo}/return"],  # type: ignore[dict-item]
    "not-a-string-object": {"url": "{demo}/return"},  # type: ignore[dict-item]
    "null": None,  # type: ignore[dict-item]
}


def _fill(value: Any, stack: StackUrls) -> Any:
    if not isinstance(value, str):
        return [_fill(v, stack) for v in value] if isinstance(value, list) else value
    host_port = stack.demo.split("://", 1)[1]
    return value.format(demo=stack.demo, host=host_port, port=host_port.rsplit(":", 1)[1])


@pytest.mark.parametrize("case", sorted(RETURN_TO_ATTACKS))
def test_return_to_outside_the_allow_list_is_refused(
    stack: StackUrls, http: httpx.Client, guard: Guard, case: str
) -> None:
    return_to = _fill(RETURN_TO_ATTACKS[case], stack)
    guard.arm()
    response = http.post(
        "/v1/sessions",
        json={"user_id": harness.unique("u"), "return_to": return_to},
        headers=harness.api_headers(stack),
    )
    assert response.status_code == 400, (case, response.text)
    assert response.json()["error"]["code"] == "return_to_not_allowed"
    assert "evil" not in response.text
    assert "<script" not in response.text
    guard.assert_untouched()
    harness.record("return_to_open_redirect", "TM8", "TM11")


@pytest.mark.parametrize(
    "suffix", ["", "/", "/done", "/a/b?x=1", "?tab=teams", "#fragment", "/%41"], ids=repr
)
def test_allow_listed_return_to_within_the_prefix_is_accepted(
    stack: StackUrls, http: httpx.Client, suffix: str
) -> None:
    """Decision: a path-prefix match is safe because dot segments (also `%2e`, `..;`), empty
    segments, encoded `/` and `\\` are refused before matching: nothing can normalise out of it."""
    response = http.post(
        "/v1/sessions",
        json={"user_id": harness.unique("u"), "return_to": f"{stack.demo}/return{suffix}"},
        headers=harness.api_headers(stack),
    )
    assert response.status_code == 201, response.text


# --------------------------------------------------------------------------- malformed sessions

DEEP = "[" * 15000 + "]" * 15000
BODIES: dict[str, tuple[str, bytes, int]] = {
    # name: (content type, raw body, expected status)
    "json-bomb-deep-array": ("application/json", DEEP[:16000].encode(), 400),
    "json-bomb-deep-object": ("application/json", ('{"a":' * 2500 + "1" + "}" * 2500).encode(), 400),
    "oversized-body": ("application/json", b'{"user_id":"' + b"a" * 17000 + b'"}', 413),
    "oversized-number-bomb": ("application/json", b'{"user_id":"u","x":' + b"9" * 16000 + b"}", 400),
    "invalid-utf8": ("application/json", b'{"user_id":"\xff\xfe"}', 400),
    "utf16-body": ("application/json", '{"user_id":"u"}'.encode("utf-16"), 400),
    "lone-surrogate-user-id": ("application/json", b'{"user_id":"\\ud800"}', 400),
    "lone-surrogate-login-hint": (
        "application/json",
        b'{"user_id":"u","login_hint":"\\udfff@x.example"}',
        400,
    ),
    "duplicate-keys": ("application/json", b'{"user_id":"a","user_id":"b"}', 400),
    "nan": ("application/json", b'{"user_id":"u","x":NaN}', 400),
    "infinity": ("application/json", b'{"user_id":"u","return_to":Infinity}', 400),
    "trailing-garbage": ("application/json", b'{"user_id":"u"} {}', 400),
    "not-an-object-array": ("application/json", b'["user_id"]', 400),
    "not-an-object-string": ("application/json", b'"user_id"', 400),
    "not-an-object-null": ("application/json", b"null", 400),
    "empty-body": ("application/json", b"", 400),
    "unknown-field": ("application/json", b'{"user_id":"u","admin":true}', 400),
    "unknown-field-script": ("application/json", b'{"user_id":"u","<script>alert(1)</script>":1}', 400),
    "user-id-missing": ("application/json", b"{}", 400),
    "user-id-empty": ("application/json", b'{"user_id":""}', 400),
    "user-id-too-long": ("application/json", b'{"user_id":"' + b"a" * 257 + b'"}', 400),
    "user-id-number": ("application/json", b'{"user_id":1}', 400),
    "user-id-null": ("application/json", b'{"user_id":null}', 400),
    "user-id-list": ("application/json", b'{"user_id":["u"]}', 400),
    "user-id-cr-lf": ("application/json", b'{"user_id":"u\\r\\nx"}', 400),
    "user-id-nul": ("application/json", b'{"user_id":"u\\u0000"}', 400),
    "user-id-c1-control": ("application/json", b'{"user_id":"u\\u0085"}', 400),
    "login-hint-not-email": ("application/json", b'{"user_id":"u","login_hint":"nope"}', 400),
    "login-hint-script": ("application/json", b'{"user_id":"u","login_hint":"<script>@x.example"}', 400),
    "login-hint-trailing-newline": (
        "application/json",
        b'{"user_id":"u","login_hint":"a@x.example\\n"}',
        400,
    ),
    "login-hint-number": ("application/json", b'{"user_id":"u","login_hint":5}', 400),
    "account-id-space": ("application/json", b'{"user_id":"u","account_id":"a b"}', 400),
    "account-id-trailing-newline": ("application/json", b'{"user_id":"u","account_id":"a\\n"}', 400),
    "content-type-missing": ("", b'{"user_id":"u"}', 400),
    "content-type-text": ("text/plain", b'{"user_id":"u"}', 400),
    "content-type-form": ("application/x-www-form-urlencoded", b"user_id=u", 400),
    "content-type-multipart": ("multipart/form-data; boundary=x", b'{"user_id":"u"}', 400),
    "content-type-json-suffix": ("application/json-patch+json", b'{"user_id":"u"}', 400),
    "content-type-xml": ("application/xml", b"<user_id>u</user_id>", 400),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_malformed_session_requests_are_refused_without_a_write(
    stack: StackUrls, http: httpx.Client, guard: Guard, case: str
) -> None:
    content_type, body, status = BODIES[case]
    headers = harness.api_headers(stack)
    if content_type:
        headers["content-type"] = content_type
    guard.arm()
    response = http.post("/v1/sessions", content=body, headers=headers)
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json()["error"]["code"] in ("invalid_request", "payload_too_large")
    guard.assert_untouched()
    harness.record("malformed_body", "TM7", "TM11")


@pytest.mark.parametrize(
    "query",
    ["a=1&a=2", "user_id=x&user_id=y", "%ff=1", "a=%ff", "a&&b", "x=" + "a" * 5000, "&".join(["k=v"] * 30)],
    ids=["dup", "dup-user-id", "bad-utf8-key", "bad-utf8-value", "empty-fields", "huge", "many-fields"],
)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_malformed_query_on_api_routes_is_400(
    stack: StackUrls, http: httpx.Client, guard: Guard, method: str, path: str, query: str
) -> None:
    guard.arm()
    body = json.dumps({"user_id": harness.unique("u")}) if method == "POST" else None
    headers = harness.api_headers(stack, **{"content-type": "application/json"})
    response = http.request(method, f"{path}?{query}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    guard.assert_untouched()
    harness.record("malformed_query", "TM7", "TM11")


# --------------------------------------------------------------------------- grants path user_id

PATH_USER_IDS = {
    "unknown": "nobody-at-all",
    "script": "<script>alert(1)</script>",
    "traversal": "../../v1/sessions",
    "encoded-slash": "a/b",
    "crlf": "u\r\nx-injected: 1",
    "nul": "u\x00",
    "unicode": "\u00fc\u0131\u0307",
    "wildcard": "*",
    "hash-prefix": "USER#other",
    "grant-prefix": "GRANT#x",
    "too-long": "a" * 300,
    "percent": "%",
}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("case", sorted(PATH_USER_IDS))
def test_hostile_user_ids_in_the_grants_path(
    stack: StackUrls, http: httpx.Client, guard: Guard, method: str, case: str
) -> None:
    user_id = PATH_USER_IDS[case]
    guard.arm()
    response = http.request(
        method, "/v1/grants/" + quote(user_id, safe=""), headers=harness.api_headers(stack)
    )
    assert response.status_code in (400, 404), response.text
    if response.headers.get("content-type", "").startswith("application/json"):
        assert response.json()["error"]["code"] in ("invalid_request", "not_found")
    else:  # the local gateway matched no route (a CR/LF in the decoded path): nothing was invoked
        assert response.status_code == 404
    assert "<script" not in response.text
    guard.assert_untouched()
    harness.record("path_user_id", "TM7", "TM11")


@pytest.mark.parametrize("raw", ["%ff", "%c0%af", "%ed%a0%80", "a%"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_invalid_utf8_in_the_grants_path_is_400(
    stack: StackUrls, http: httpx.Client, guard: Guard, method: str, raw: str
) -> None:
    guard.arm()
    url = httpx.URL(stack.gateway).copy_with(raw_path=f"/v1/grants/u{raw}".encode())
    response = http.request(method, url, headers=harness.api_headers(stack))
    assert response.status_code in (400, 404), response.text
    guard.assert_untouched()
    harness.record("path_user_id", "TM7", "TM11")
