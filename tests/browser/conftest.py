"""A real headless Chromium (Debian's package, driven by Playwright) against the harness's live gateway and Cliniko
emulator. On SQLite only, to keep the run short: the console's HTTP tests (tests/console) cover both backends.

Without Chromium these tests skip, with the reason, unless EGW_TEST_REQUIRE_BROWSER=1 (CI sets it): then they fail."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

from gateway.crypto import Keyring, generate_key
from tests.browser.support import REQUIRE_ENV, SKIP_REASON, chromium_path, launch
from tests.console.conftest import add_operator_to
from tests.gateway.conftest import (
    Harness,
    harness,  # noqa: F401  (the fixture, shared)
)

MASTER_KEY = generate_key("k1")


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """SQLite only (overrides the two-backend fixture): a copy of the migrated template."""
    path = tmp_path / "egw.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def keyring() -> Keyring:
    """The harness's master key, known here so the CLI (another process) opens the same secrets."""
    return Keyring.parse(MASTER_KEY)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an asyncio loop running in this
    thread while it is started, so every `asyncio.run` (async tests, the CLI in-process) would fail after it."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"Chromium is missing but {REQUIRE_ENV}=1: apt-get install chromium")
        pytest.skip(SKIP_REASON)
    with sync_playwright() as playwright:
        launched = launch(playwright, executable)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def operator(harness: Harness) -> Harness:  # noqa: F811
    """The harness, with an operator (tests.console.conftest's EMAIL and PASSWORD) added as the CLI adds one."""
    add_operator_to(harness)
    return harness


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies); every console answer is checked against its CSP in the browser: a
    refused style or script shows up as a console error and fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # "Failed to load resource" is also how Chromium logs a page answered 401/404/422 on purpose: subresources
        # are checked by their responses below instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    def on_response(response: Response) -> None:
        if response.request.resource_type in ("stylesheet", "image", "font", "script") and response.status >= 400:
            errors.append(f"{response.status} for {response.url}")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("response", on_response)
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"the browser reported errors: {errors}"
