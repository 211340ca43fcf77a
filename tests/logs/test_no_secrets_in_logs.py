"""Every log line of complete flows (both flavours; allow, deny and error paths) is free of secrets.

The stack subprocess writes all its output (handlers, gateway, emulator, moto) to
`StackUrls.log` (test-results/stack-*.log). We run the flows, collect the sensitive values they
actually used (API key, Nylas and Azure secrets, session ids, states, codes, cookie values, PKCE
verifiers, the id_token the emulator issued) and search the whole log for each of them.
"""

from __future__ import annotations

import re
import time
from urllib.parse import unquote

import httpx
from local.aws import LOCAL_AZURE_SECRET, LOCAL_NYLAS_SECRET
from local.nylas_emulator.v3_auth import make_id_token

from tests.adversarial import harness
from tests.adversarial.fixtures import CheckedBrowser
from tests.support.stack_process import StackUrls

JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")
TOKEN_KEYS_RE = re.compile(
    r"\"(access_token|refresh_token|id_token|code_verifier|client_secret)\"\s*:\s*\"[^\"]"
)


def _id_tokens(stack: StackUrls, grant_id: str, email: str, t0: float, t1: float) -> set[str]:
    """The id_token the emulator signed for this exchange: its claims are known except `iat`."""
    tokens = set()
    for iat in range(int(t0) - 2, int(t1) + 3):
        claims = {
            "iss": stack.emulator,
            "aud": LOCAL_NYLAS_SECRET["client_id"],
            "sub": grant_id,
            "email": email,
            "provider": "microsoft",
            "iat": iat,
            "exp": iat + 3600,
        }
        tokens.add(make_id_token(claims, LOCAL_NYLAS_SECRET["api_key"]))
    return tokens


def test_no_secret_appears_in_any_log_line(stack: StackUrls, emulator: harness.Emulator) -> None:
    secrets: dict[str, str] = {
        "backend api key": stack.api_key,
        "nylas api key": LOCAL_NYLAS_SECRET["api_key"],
        "nylas client secret": LOCAL_NYLAS_SECRET["client_secret"],
        "azure client secret": LOCAL_AZURE_SECRET["client_secret"],
    }
    ddb = harness.ddb(stack)
    sessions_table = harness.table_name(stack, "Sessions")

    def flow(decision: str, *, return_to: bool = True) -> None:
        with CheckedBrowser(stack) as b:
            user, email = harness.unique("log"), harness.mailbox()
            extra: dict[str, object] = {"login_hint": email}
            if not return_to:
                extra["return_to"] = None
            session = b.create_session(user, **extra)
            secrets[f"session id {user}"] = session["session_id"]
            started = b.start(session["connect_url"])
            for name, value in harness.iter_set_cookies(started):
                secrets[f"cookie {name}"] = value
            item = ddb.get_item(TableName=sessions_table, Key={"session_id": {"S": session["session_id"]}})
            secrets[f"pkce verifier {user}"] = item["Item"]["code_verifier"]["S"]
            callback = b.consent(started.headers["location"], email=email, decision=decision)
            query = harness.query_of(callback)
            secrets[f"state {user}"] = query["state"][0]
            if "code" in query:
                secrets[f"code {user}"] = query["code"][0]
            t0 = time.time()
            done = b.http.get(callback)
            t1 = time.time()
            assert done.status_code in (200, 302, 403), done.text
            if decision == "allow" and stack.flavour == "v3":
                grant = httpx.get(
                    f"{stack.gateway}/v1/grants/{user}", headers=harness.api_headers(stack)
                ).json()
                for i, token in enumerate(_id_tokens(stack, grant["grant_id"], email, t0, t1)):
                    secrets[f"id_token candidate {i}"] = token
                # The meetings API on this grant: a create (retried with its key), a read, a cancel.
                api = harness.api_headers(stack, **{"idempotency-key": harness.unique("key")})
                meeting = {
                    "title": "Log scan",
                    "start": "2031-01-01T10:00:00Z",
                    "end": "2031-01-01T11:00:00Z",
                }
                for _ in range(2):
                    created = httpx.post(
                        f"{stack.gateway}/v1/users/{user}/meetings", json=meeting, headers=api
                    )
                    assert created.status_code == 201, created.text
                path = f"{stack.gateway}/v1/users/{user}/meetings/{created.json()['meeting_id']}"
                assert httpx.get(path, headers=harness.api_headers(stack)).status_code == 200
                assert httpx.delete(path, headers=harness.api_headers(stack)).status_code == 204
            # Error paths: a replay by another browser, then a disconnect.
            with CheckedBrowser(stack) as other:
                other.http.get(callback)
            httpx.delete(f"{stack.gateway}/v1/grants/{user}", headers=harness.api_headers(stack))

    flow("allow")
    flow("deny")
    flow("allow", return_to=False)
    # Rejected API calls with a wrong key that contains the real one.
    httpx.get(f"{stack.gateway}/v1/grants/x", headers={"authorization": f"Bearer {stack.api_key}x"})

    time.sleep(0.3)  # the subprocess's output is unbuffered; give the pipe a moment
    full = harness.stack_log_path(stack).read_text(errors="replace")
    # `make run` prints the *local* API key in its start-up banner on purpose (a developer aid of
    # local/run.py, not a log line of the service): scan what comes after the banner.
    banner_end = "Ctrl-C stops everything."
    assert banner_end in full
    log = full.split(banner_end, 1)[1]
    assert "flow started" in log  # the handlers' lines are captured
    assert "flow completed" in log
    if stack.flavour == "v3":
        assert "meeting created" in log
    decoded = unquote(log)
    leaked = sorted(name for name, value in secrets.items() if value and (value in log or value in decoded))
    assert leaked == [], f"secrets in the stack log: {leaked}"
    assert not JWT_RE.search(log), "a JWT (id_token) appears in the log"
    assert not TOKEN_KEYS_RE.search(log), "a token-bearing JSON key with a value appears in the log"
    harness.record("log_secret_scan", "TM14", n=len(secrets))
