"""Shared machinery of the hostile-input suites (tests/adversarial, tests/properties, tests/logs).

- One local stack per flavour for the whole pytest session, shared by the three suites (started on
  first use, stopped at session end), so the suites cost two stack start-ups, not six.
- `Guard`: snapshots both DynamoDB tables and the emulator's call counters before a hostile request
  and compares after: "nothing was written", "no upstream call was made".
- `check_location`: every `Location` seen by a `client()` must lead to Nylas (the emulator) or to the
  allow-listed return URL; anything else fails the test at once (an httpx response hook).
- `FIGURES`: hostile inputs tried per category and the threats (security.md §2) covered, written to
  `test-results/figures-security.json` at session finish.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.stack_process import StackUrls, running_stack

ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ("v3", "beta")
THREATS = tuple(f"TM{i}" for i in range(1, 17))
# The return URL allow-list of the local stack is `<demo>/return` (local/stack.py).
RETURN_PATH = "/return"
SECRET_QUERY_PARAMS = frozenset(
    {"code", "state", "grant_id", "email", "access_token", "id_token", "refresh_token", "session"}
)


# --------------------------------------------------------------------------- stacks


class _Stacks:
    def __init__(self) -> None:
        self._exit = contextlib.ExitStack()
        self._urls: dict[str, StackUrls] = {}
        self._lock = threading.Lock()

    def get(self, flavour: str) -> StackUrls:
        with self._lock:
            if flavour not in self._urls:
                self._urls[flavour] = self._exit.enter_context(running_stack(flavour))
            return self._urls[flavour]

    def close(self) -> None:
        with self._lock:
            self._urls.clear()
            self._exit.close()
            self._exit = contextlib.ExitStack()


STACKS = _Stacks()


def stack_log_path(stack: StackUrls) -> Path:
    """Where `running_stack` writes the subprocess's stdout and stderr."""
    assert stack.log is not None, "a stack started by running_stack"
    return stack.log


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    by_category: Counter[str] = field(default_factory=Counter)
    threats: set[str] = field(default_factory=set)
    by_threat: Counter[str] = field(default_factory=Counter)
    locations_checked: int = 0

    def record(self, category: str, *threats: str, n: int = 1) -> None:
        unknown = set(threats) - set(THREATS)
        assert not unknown, unknown
        self.by_category[category] += n
        for threat in threats:
            self.threats.add(threat)
            self.by_threat[threat] += n

    def as_json(self) -> dict[str, Any]:
        covered = sorted(self.threats, key=lambda t: int(t[2:]))
        return {
            "hostile_inputs_total": sum(self.by_category.values()),
            "hostile_inputs_by_category": dict(sorted(self.by_category.items())),
            "threats_total": len(THREATS),
            "threats_covered": len(covered),
            "threats_covered_ids": covered,
            "threats_not_covered_ids": [t for t in THREATS if t not in self.threats],
            "hostile_inputs_by_threat": {t: self.by_threat[t] for t in covered},
            "location_headers_checked": self.locations_checked,
            "flavours": list(FLAVOURS),
        }

    def write(self, path: Path | None = None) -> Path:
        target = path or ROOT / "test-results" / "figures-security.json"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return target


FIGURES = Figures()


def record(category: str, *threats: str, n: int = 1) -> None:
    FIGURES.record(category, *threats, n=n)


def session_finish() -> None:
    """Called from each suite's `pytest_sessionfinish` (idempotent)."""
    if FIGURES.by_category:
        FIGURES.write()
    STACKS.close()


# --------------------------------------------------------------------------- Location allow-list


def allowed_location(stack: StackUrls, location: str, *, sent_by: str | None = None) -> bool:
    """A Location of ours may lead only to Nylas (here the emulator) or to the allow-listed return
    URL, and a return redirect never carries a secret (code, state, grant id, email, tokens).
    Nylas's own Locations (`sent_by` the emulator) lead to its pages or to our exact callback."""
    parts = urlsplit(location)
    origin = f"{parts.scheme}://{parts.netloc}"
    if "\r" in location or "\n" in location or "\\" in location:
        return False
    if origin == stack.emulator:
        return True
    if sent_by == stack.emulator:
        # Nylas's callback, or (the emulator also plays Microsoft Entra) the admin-consent callback.
        return origin == stack.gateway and parts.path in (
            "/connect/callback",
            "/connect/admin-consent/callback",
        )
    if origin == stack.demo and (parts.path == RETURN_PATH or parts.path.startswith(RETURN_PATH + "/")):
        leaked = SECRET_QUERY_PARAMS & set(parse_qs(parts.query, keep_blank_values=True))
        return not leaked and not parts.fragment
    return False


def check_location(stack: StackUrls, response: httpx.Response) -> None:
    location = response.headers.get("location")
    if location is None:
        return
    FIGURES.locations_checked += 1
    sent_by = f"{response.url.scheme}://{response.url.netloc.decode()}"
    assert allowed_location(stack, location, sent_by=sent_by), (
        f"Location outside the allow-list: {location!r}"
    )


def client(stack: StackUrls, **kwargs: Any) -> httpx.Client:
    """A client that never follows redirects and checks every Location it sees."""

    def hook(response: httpx.Response) -> None:
        check_location(stack, response)

    return httpx.Client(timeout=20.0, follow_redirects=False, event_hooks={"response": [hook]}, **kwargs)


def api_headers(stack: StackUrls, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {stack.api_key}", **extra}


# --------------------------------------------------------------------------- emulator + tables


class Emulator:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def calls(self) -> dict[str, int]:
        return dict(self.http.get("/_emulator/calls").json()["calls"])

    def total_calls(self) -> int:
        return sum(self.calls().values())

    def state(self) -> dict[str, Any]:
        return dict(self.http.get("/_emulator/state").json())

    def close(self) -> None:
        self.http.close()


_DDB: dict[str, Any] = {}


def ddb(stack: StackUrls) -> Any:
    """One DynamoDB client (moto) per stack."""
    if stack.moto not in _DDB:
        _DDB[stack.moto] = stack.dynamodb()
    return _DDB[stack.moto]


_TABLES: dict[str, list[str]] = {}


def tables(stack: StackUrls) -> list[str]:
    if stack.moto not in _TABLES:
        _TABLES[stack.moto] = list(ddb(stack).list_tables()["TableNames"])
    return _TABLES[stack.moto]


def table_name(stack: StackUrls, kind: str) -> str:
    """`Sessions` or `Grants`: the local table whose name contains it."""
    names = [t for t in tables(stack) if kind.lower() in t.lower()]
    assert len(names) == 1, names
    return names[0]


def item_counts(stack: StackUrls) -> dict[str, int]:
    """Live item count of both tables (moto answers DescribeTable from the table itself)."""
    client = ddb(stack)
    return {t: int(client.describe_table(TableName=t)["Table"]["ItemCount"]) for t in tables(stack)}


def scan_tables(stack: StackUrls) -> dict[str, dict[str, Any]]:
    """Every item of both tables, keyed by `<table>:<key>` (slow on moto: use sparingly)."""
    client = ddb(stack)
    items: dict[str, dict[str, Any]] = {}
    for table in tables(stack):
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page["Items"]:
                key = item.get("session_id", item.get("pk", {"S": json.dumps(item, sort_keys=True)}))
                items[f"{table}:{key['S']}"] = item
    return items


@dataclass
class Guard:
    """Before/after: item counts of both tables, the watched items (the flow's session, the
    users' USER# records, their GRANT# owner items) and the emulator's call counters."""

    stack: StackUrls
    emulator: Emulator
    counts: dict[str, int] = field(default_factory=dict)
    watched: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _keys: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def arm(self, *, sessions: tuple[str, ...] = (), users: tuple[str, ...] = ()) -> Guard:
        sessions_table = table_name(self.stack, "Sessions")
        grants_table = table_name(self.stack, "Grants")
        self._keys = [(sessions_table, {"session_id": {"S": s}}) for s in sessions]
        self._keys += [(grants_table, {"pk": {"S": f"USER#{u}"}}) for u in users]
        self.counts = item_counts(self.stack)
        self.watched = self._read()
        self.calls = self.emulator.calls()
        return self

    def _read(self) -> dict[str, dict[str, Any] | None]:
        client = ddb(self.stack)
        found: dict[str, dict[str, Any] | None] = {}
        for table, key in self._keys:
            item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
            found[f"{table}:{next(iter(key.values()))['S']}"] = item
            if item and "grant_id" in item:  # the mailbox-owner guard item of that grant
                owner_key = {"pk": {"S": f"GRANT#{item['grant_id']['S']}"}}
                owner = client.get_item(TableName=table, Key=owner_key, ConsistentRead=True).get("Item")
                found[f"{table}:GRANT#{item['grant_id']['S']}"] = owner
        return found

    def upstream_calls(self) -> dict[str, int]:
        now = self.emulator.calls()
        return {k: v - self.calls.get(k, 0) for k, v in now.items() if v != self.calls.get(k, 0)}

    def changed(self) -> dict[str, int]:
        """Item-count differences per table (inserts and deletes anywhere)."""
        after = item_counts(self.stack)
        return {
            t: after.get(t, 0) - self.counts.get(t, 0) for t in after if after.get(t) != self.counts.get(t)
        }

    def changed_watched(self) -> list[str]:
        after = self._read()
        return sorted(k for k in set(after) | set(self.watched) if after.get(k) != self.watched.get(k))

    def assert_untouched(self, *, upstream: dict[str, int] | None = None) -> None:
        """No item added or removed in either table, no watched item changed, and upstream calls
        exactly `upstream` (default: none)."""
        assert self.changed() == {}, "hostile input added or removed stored items"
        assert self.changed_watched() == [], "hostile input changed a watched item"
        assert self.upstream_calls() == (upstream or {}), "unexpected upstream calls"


# --------------------------------------------------------------------------- flows


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mailbox() -> str:
    return f"{unique('m')}@contoso.example"


def fake_token() -> str:
    return secrets.token_urlsafe(32)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


@dataclass
class Started:
    """A flow started in `browser` (cookie set), consented at the emulator, callback not yet called."""

    user_id: str
    email: str
    session_id: str
    callback_url: str
    cookie_name: str
    cookie_value: str

    @property
    def query(self) -> str:
        return urlsplit(self.callback_url).query

    @property
    def state(self) -> str:
        return query_of(self.callback_url)["state"][0]


def iter_set_cookies(response: httpx.Response) -> Iterator[tuple[str, str]]:
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        yield name.strip(), rest.split(";", 1)[0]
