"""Shared by tests/faults and tests/concurrency: the emulator's fault API, table inspection, the
subprocess stacks, and the figures written to `test-results/figures-faults.json` at session end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from teams_connect.adapters.store.grants import mailbox_key
from tests.integration.conftest import Emulator
from tests.support.stack_process import StackUrls, running_stack

ROOT = Path(__file__).resolve().parents[2]
FIGURES_PATH = ROOT / "test-results" / "figures-faults.json"
SESSIONS_TABLE = "SessionsTable"  # local stacks name the tables after their template logical ids
GRANTS_TABLE = "GrantsTable"
# Short enough that an injected delay is a timeout without slowing the suite (production: 5000).
READ_TIMEOUT_MS = "500"
NYLAS_CALLS = {
    "v3": ("POST /v3/connect/token", "DELETE /v3/grants/{grant_id}"),
    "beta": ("POST /connect/auth", "GET /connect/grants/{grant_id}", "DELETE /connect/grants/{grant_id}"),
}


# --------------------------------------------------------------------------- figures
class Figures:
    """What the run observed; written once at session finish (by whichever conftest is loaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scenarios: list[dict[str, Any]] = []
        self.concurrency: dict[str, dict[str, Any]] = {}
        self._written = False

    def scenario(self, **fields: Any) -> None:
        with self._lock:
            self.scenarios.append(fields)

    def concurrency_result(self, flavour: str, **fields: Any) -> None:
        with self._lock:
            self.concurrency.setdefault(flavour, {}).update(fields)

    def write(self) -> None:
        with self._lock:
            if self._written or not (self.scenarios or self.concurrency):
                return
            self._written = True
            faults = sorted({f"{s['layer']}: {s['target']}: {s['fault']}" for s in self.scenarios})
            data = {
                "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fault_scenarios_run": len(self.scenarios),
                "faults_injected": faults,
                "scenarios": self.scenarios,
                "concurrency": self.concurrency,
            }
            FIGURES_PATH.parent.mkdir(exist_ok=True)
            FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


FIGURES = Figures()


# --------------------------------------------------------------------------- stacks and emulator
@contextmanager
def fault_ready_stack(flavour: str) -> Iterator[StackUrls]:
    """`running_stack(flavour)` whose handlers wait `READ_TIMEOUT_MS` for Nylas (and Microsoft) per
    attempt."""
    env = {"NYLAS_READ_TIMEOUT_MS": READ_TIMEOUT_MS, "MICROSOFT_READ_TIMEOUT_MS": READ_TIMEOUT_MS}
    with running_stack(flavour, env=env) as urls:
        yield urls


class FaultEmulator(Emulator):
    """The integration suite's emulator helper plus faults without a status (delay, drop)."""

    def inject(self, method: str, path: str, **fault: Any) -> None:
        response = self.http.post("/_emulator/faults", json={"method": method, "path": path, **fault})
        assert response.status_code == 201, response.text

    def reset_calls(self) -> None:
        assert self.http.delete("/_emulator/calls").status_code == 200

    def count(self, route: str) -> int:
        return self.calls().get(route, 0)

    def pending_faults(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_emulator/faults").json()["faults"])


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class GrantItems:
    users: dict[str, dict[str, Any]]  # user_id -> USER# item
    guards: dict[str, dict[str, Any]]  # grant_id -> GRANT# item
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)  # grant_id -> REVOKE# item
    mailboxes: dict[str, dict[str, Any]] = field(default_factory=dict)  # MAILBOX# key -> item

    def mailboxes_of(self, user_id: str) -> list[str]:
        """The MAILBOX# keys whose guard names the user."""
        return sorted(k for k, item in self.mailboxes.items() if item["owner"]["S"] == user_id)

    def for_user(self, user_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The user's USER# item and every GRANT# guard owned by the user."""
        guards = [g for g in self.guards.values() if g["owner"]["S"] == user_id]
        return self.users.get(user_id), guards


def scan_all(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def grant_items(client: Any) -> GrantItems:
    users: dict[str, dict[str, Any]] = {}
    guards: dict[str, dict[str, Any]] = {}
    outbox: dict[str, dict[str, Any]] = {}
    mailboxes: dict[str, dict[str, Any]] = {}
    for item in scan_all(client, GRANTS_TABLE):
        pk = item["pk"]["S"]
        if pk.startswith("USER#"):
            assert pk[5:] not in users
            users[pk[5:]] = item
        elif pk.startswith("REVOKE#"):  # the revoke outbox (issue 9)
            outbox[pk[7:]] = item
        elif pk.startswith("GRANT#"):
            guards[pk[6:]] = item
        elif pk.startswith("MAILBOX#"):
            mailboxes[pk] = item
        elif pk.startswith("LOST#"):  # a lost code exchange's window (the sweeper's): no grant data
            continue
        else:  # the webhook's dedupe markers hold no grant data
            assert pk.startswith("NOTIFICATION#"), pk
    return GrantItems(users, guards, outbox, mailboxes)


def assert_one_consistent_grant(client: Any, user_id: str, email: str) -> str:
    """Exactly one USER# record for the user, exactly one GRANT# guard owned by them, pointing at
    each other, for the expected mailbox. Returns the grant id."""
    items = grant_items(client)
    user, guards = items.for_user(user_id)
    assert user is not None, f"no USER# record for {user_id}"
    assert len(guards) == 1, guards
    grant_id = str(user["grant_id"]["S"])
    assert guards[0]["pk"]["S"] == f"GRANT#{grant_id}"
    assert grant_id not in items.outbox, "the held grant must have no pending revoke"
    assert user["email"]["S"] == email
    assert items.mailboxes_of(user_id) == [mailbox_key(email)], "the mailbox guard must name the user"
    assert user["status"]["S"] == "valid"
    return grant_id


def assert_no_grant(client: Any, user_id: str) -> None:
    items = grant_items(client)
    user, guards = items.for_user(user_id)
    assert user is None
    assert guards == []
    assert items.mailboxes_of(user_id) == []


def session_status(client: Any, session_id: str) -> str:
    item = client.get_item(
        TableName=SESSIONS_TABLE, Key={"session_id": {"S": session_id}}, ConsistentRead=True
    )["Item"]
    return str(item["status"]["S"])


def sessions_of(client: Any, user_id: str) -> list[dict[str, Any]]:
    # Admin-consent flows share the table and have no user (kind = admin_consent).
    return [i for i in scan_all(client, SESSIONS_TABLE) if i.get("user_id", {}).get("S") == user_id]


# --------------------------------------------------------------------------- responses
def redirect_params(response: httpx.Response, return_to: str) -> dict[str, str]:
    """The query of a 302 to `return_to` (each parameter once)."""
    assert response.status_code == 302, (response.status_code, response.text[:300])
    location = response.headers["location"]
    assert location.split("?", 1)[0] == return_to, location
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {k: v[0] for k, v in query.items()}


def assert_error_redirect(response: httpx.Response, return_to: str, code: str) -> None:
    assert redirect_params(response, return_to) == {"status": "error", "error": code}


def assert_error_page(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert f"<small>{code}</small>" in response.text


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == code
