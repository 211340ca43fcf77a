"""Walk the connect flow over HTTP the way a browser does, one `httpx.Client` (cookie jar) per browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.support.stack_process import StackUrls


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self._in_form = True
            self.action = attr.get("action", "")
            self.method = attr.get("method", "get").lower()
        elif self._in_form and tag == "input" and attr.get("name") and attr.get("type") != "submit":
            self.fields[attr["name"]] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


@dataclass(frozen=True)
class ConsentForm:
    url: str
    fields: dict[str, str]


def parse_consent_form(page_url: str, html: str) -> ConsentForm:
    parser = _FormParser()
    parser.feed(html)
    assert parser.action is not None, "no form on the consent page"
    assert parser.method == "post"
    assert "email" in parser.fields
    return ConsentForm(url=urljoin(page_url, parser.action), fields=parser.fields)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


@dataclass
class FlowResult:
    session_id: str
    connect_url: str
    callback_url: str | None = None
    final: httpx.Response | None = None
    trace: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        assert self.final is not None
        return str(self.final.headers.get("location", ""))


class Browser:
    """A cookie jar and the steps of the flow, without following redirects implicitly."""

    def __init__(self, stack: StackUrls, *, timeout: float = 15.0) -> None:
        self.stack = stack
        self.timeout = timeout
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_session(self, user_id: str, **extra: object) -> dict[str, str]:
        body: dict[str, object] = {"user_id": user_id, "return_to": f"{self.stack.demo}/return", **extra}
        body = {k: v for k, v in body.items() if v is not None}
        response = httpx.post(
            f"{self.stack.gateway}/v1/sessions",
            json=body,
            headers={"authorization": f"Bearer {self.stack.api_key}"},
            timeout=self.timeout,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def start(self, connect_url: str) -> httpx.Response:
        return self.http.get(connect_url)

    def to_consent_page(self, nylas_url: str) -> tuple[str, httpx.Response]:
        """Follow the emulator's redirects until its consent page."""
        url = nylas_url
        for _ in range(5):
            response = self.http.get(url)
            if response.status_code in (301, 302, 303, 307):
                url = urljoin(url, response.headers["location"])
                continue
            return url, response
        raise AssertionError("too many redirects before the consent page")

    def consent(self, nylas_url: str, *, email: str, decision: str) -> str:
        page_url, page = self.to_consent_page(nylas_url)
        assert page.status_code == 200, page.text
        form = parse_consent_form(page_url, page.text)
        response = self.http.post(form.url, data={**form.fields, "email": email, "decision": decision})
        assert response.status_code in (302, 303), response.text
        return urljoin(form.url, response.headers["location"])

    def run(self, user_id: str, *, email: str, decision: str = "allow", **extra: object) -> FlowResult:
        session = self.create_session(user_id, **extra)
        result = FlowResult(session_id=session["session_id"], connect_url=session["connect_url"])
        started = self.start(session["connect_url"])
        assert started.status_code == 302, started.text
        result.callback_url = self.consent(started.headers["location"], email=email, decision=decision)
        result.final = self.http.get(result.callback_url)
        return result
