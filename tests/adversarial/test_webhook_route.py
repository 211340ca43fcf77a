"""Hostile input at `GET|POST /nylas/webhooks` through the local stack: forged, missing or replayed
signatures, oversized, compressed-bomb and malformed bodies, odd methods and queries. Every case: a
4xx (never a 5xx, never a traceback), nothing written, no upstream call."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import time

import httpx
import pytest

from tests.adversarial import harness
from tests.adversarial.harness import Guard

PATH = "/nylas/webhooks"


def notification(grant_id: str = "any-grant") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "type": "grant.expired",
            "source": "/nylas/system",
            "id": harness.unique("n"),
            "time": int(time.time()) + 60,
            "data": {"object": {"grant_id": grant_id, "email": "x@contoso.example"}},
        }
    ).encode()


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


BODY = notification()
SIGNATURES: dict[str, dict[str, str]] = {
    "missing": {},
    "empty": {"x-nylas-signature": ""},
    "zeros": {"x-nylas-signature": "0" * 64},
    "guessed-secret": {"x-nylas-signature": sign(b"secret", BODY)},
    "empty-secret": {"x-nylas-signature": sign(b"", BODY)},
    "mock-webhook-secret": {"x-nylas-signature": sign(b"mock-webhook-secret", BODY)},  # Nylas's test secret
    "sha1-length": {"x-nylas-signature": hashlib.sha1(BODY).hexdigest()},  # noqa: S324 - a wrong digest on purpose
    "sha256-of-body": {"x-nylas-signature": hashlib.sha256(BODY).hexdigest()},
    "base64": {"x-nylas-signature": base64.b64encode(hashlib.sha256(BODY).digest()).decode()},
    "non-hex": {"x-nylas-signature": "z" * 64},
    "very-long": {"x-nylas-signature": "a" * 8000},
    "other-header": {"x-signature": sign(b"secret", BODY)},
}


@pytest.mark.parametrize("case", sorted(SIGNATURES))
def test_wrong_signatures_are_401_and_change_nothing(http: httpx.Client, guard: Guard, case: str) -> None:
    guard.arm()
    answer = http.post(PATH, content=BODY, headers={"content-type": "application/json", **SIGNATURES[case]})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"
    guard.assert_untouched()
    harness.record("webhook signature", "TM7", "TM14")


BODIES: dict[str, tuple[bytes, dict[str, str]]] = {
    "oversized": (b"{" + b" " * (1024 * 1024 + 10) + b"}", {}),
    "gzip-bomb": (gzip.compress(b"[" * (16 * 1024 * 1024)), {"content-encoding": "gzip"}),
    "binary": (bytes(range(256)) * 10, {"content-type": "application/octet-stream"}),
    "deep-json": (b"[" * 100000, {}),
    "not-json": (b"hello", {}),
    "form": (b"id=1&type=grant.expired", {"content-type": "application/x-www-form-urlencoded"}),
    "empty": (b"", {}),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_hostile_bodies_are_4xx_never_5xx(http: httpx.Client, guard: Guard, case: str) -> None:
    body, headers = BODIES[case]
    guard.arm()
    answer = http.post(
        PATH,
        content=body,
        headers={"content-type": "application/json", "x-nylas-signature": "0" * 64, **headers},
    )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    assert "Traceback" not in answer.text
    guard.assert_untouched()
    harness.record("webhook body", "TM14")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "challenge=",
        "challenge=a&challenge=b",
        "x=1",
        "challenge=%00",
        "challenge=" + "a" * 5000,
        "challenge",
    ],
)
def test_odd_challenges_are_400(http: httpx.Client, guard: Guard, query: str) -> None:
    guard.arm()
    answer = http.get(f"{PATH}?{query}" if query else PATH)
    assert answer.status_code == 400, answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"
    guard.assert_untouched()
    harness.record("webhook challenge", "TM14")


def test_a_challenge_is_echoed_as_plain_text_only(http: httpx.Client) -> None:
    # Security review 3, G9: markup is never echoed on the service's origin; a token is, sandboxed.
    assert http.get(PATH, params={"challenge": "<script>alert(1)</script>"}).status_code == 400
    answer = http.get(PATH, params={"challenge": "tok_3n-a.b~C"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert answer.text == "tok_3n-a.b~C"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_not_routed(http: httpx.Client, guard: Guard, method: str) -> None:
    guard.arm()
    answer = http.request(method, PATH, content=BODY)
    assert answer.status_code == 404
    guard.assert_untouched()
