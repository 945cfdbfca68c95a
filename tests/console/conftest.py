"""The operator console over real HTTP: the harness's live gateway (Cliniko emulator behind it) on both storage
backends, an operator added through the same use case the CLI calls, and a browser-like client that keeps cookies
and sends each form's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.storage.store import Store
from gateway.usecases.operators import add_operator
from tests.gateway.conftest import (
    Harness,
    harness,  # noqa: F401  (the fixture, shared)
    run_sync,
)

EMAIL = "ops@clinic.example"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def add_operator_to(h: Harness, email: str = EMAIL, password: str = PASSWORD) -> None:
    async def go() -> None:
        store = await Store.open(h.database_url, h.keyring)
        try:
            await add_operator(store, email, password)
        finally:
            await store.close()

    run_sync(go())


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Console:
    """A browser without JavaScript: cookies kept, redirects not followed (tests look at them), forms posted."""

    def __init__(self, h: Harness, host: str | None = None) -> None:
        headers = {"host": host} if host else {}
        self.http = httpx.Client(base_url=h.base_url, timeout=60, headers=headers)
        self.h = h
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        r = self.http.get(path, **kwargs)
        if r.status_code == 200 and "_csrf" in r.text:
            self.csrf = csrf_of(r.text)
        return r

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None) -> httpx.Response:
        body = {"_csrf": self.csrf if csrf is None else csrf, **(data or {})}
        r = self.http.post(path, data=body)
        if r.status_code < 300 and "_csrf" in r.text:
            self.csrf = csrf_of(r.text)
        return r

    def sign_in(self, email: str = EMAIL, password: str = PASSWORD) -> httpx.Response:
        self.get("/console/sign-in")
        return self.post("/console/sign-in", {"email": email, "password": password})

    @property
    def session_token(self) -> str:
        """The `egw_console` cookie's value, e.g. to hand a signed-in session to a real browser (Path=/console)."""
        token = self.http.cookies.get("egw_console", path="/console")
        assert token, "not signed in"
        return str(token)

    def close(self) -> None:
        self.http.close()


def signed_in(h: Harness) -> Console:
    """A new operator, signed in (the overview is not loaded: its health checks are cached for 30 s)."""
    add_operator_to(h)
    c = Console(h)
    r = c.sign_in()
    assert r.status_code == 303, r.text
    c.get("/console/trace")  # the session's CSRF token, from a page that asks no EMR anything
    return c


@pytest.fixture
def console(harness: Harness) -> Iterator[Console]:  # noqa: F811
    """Signed in as an operator."""
    c = signed_in(harness)
    c.get("/console")
    try:
        yield c
    finally:
        c.close()


def tagged(html: str, testid: str) -> list[str]:
    """The opening tags carrying data-testid=`testid`."""
    return re.findall(rf'<[^>]*data-testid="{re.escape(testid)}"[^>]*>', html)


def attr(tag: str, name: str) -> str:
    found = re.search(rf'{re.escape(name)}="([^"]*)"', tag)
    assert found, f"no {name} in {tag}"
    return found.group(1)
