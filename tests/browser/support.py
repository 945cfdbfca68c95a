"""What the browser tests share with the screenshot script: where Chromium is, how to launch it, the axe-core check,
signing in through the form, and running the real CLI against a harness's database."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

from tests.console.conftest import EMAIL, PASSWORD
from tests.gateway.conftest import Harness

CHROMIUM_ENV = "EGW_TEST_CHROMIUM"  # another Chromium binary; default: Debian's /usr/bin/chromium
REQUIRE_ENV = "EGW_TEST_REQUIRE_BROWSER"
SKIP_REASON = (
    "no Chromium (apt-get install chromium, or point EGW_TEST_CHROMIUM at one): browser tests skipped; "
    "set EGW_TEST_REQUIRE_BROWSER=1 to make this a failure"
)
SERIOUS = ("serious", "critical")


def chromium_path() -> str | None:
    """Debian's `chromium` (never a browser Playwright downloads itself: only registries are reachable here)."""
    wanted = os.environ.get(CHROMIUM_ENV, "").strip()
    if wanted:
        return wanted if Path(wanted).is_file() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def launch(playwright: Playwright, executable: str) -> Browser:
    # --no-sandbox: CI and developers run as root, where Chromium refuses its sandbox.
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])


@cache
def _axe_source() -> str:
    """axe-core as vendored by the `axe-playwright-python` package from PyPI (MPL-2.0; the version is in the file's
    first line, e.g. `axe v4.12.1`): no npm install, no download at test time."""
    package = importlib.import_module("axe_playwright_python")  # an import tests/packaging sees; untyped, so by name
    return (resources.files(package) / "axe.min.js").read_text(encoding="utf-8")


def axe_version() -> str:
    first = _axe_source().split("\n", 1)[0]
    return first.removeprefix("/*! axe ").strip()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as shown now (WCAG 2.x A and AA, and axe's best practices). axe is
    evaluated by the DevTools protocol, which the console's CSP (no script at all) does not govern."""
    page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return found


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        targets = ", ".join(str(node["target"]) for node in v["nodes"][:5])
        lines.append(f"{v['impact']}: {v['id']} — {v['help']} ({len(v['nodes'])} node(s): {targets})")
    return "\n".join(lines)


def assert_accessible(page: Page) -> list[dict[str, Any]]:
    """No axe violation with impact serious or critical; returns the lesser ones (moderate, minor) for the record."""
    violations = axe_violations(page)
    serious = [v for v in violations if v.get("impact") in SERIOUS]
    assert not serious, f"axe-core {axe_version()} on {page.url}:\n{describe(serious)}"
    return violations


def sign_in(page: Page, base_url: str, email: str = EMAIL, password: str = PASSWORD) -> None:
    """Through the sign-in form, as an operator does."""
    page.goto(f"{base_url}/console/sign-in")
    page.get_by_test_id("sign-in-email").fill(email)
    page.get_by_test_id("sign-in-password").fill(password)
    page.get_by_test_id("sign-in-submit").click()
    page.wait_for_url(f"{base_url}/console")


def run_cli(h: Harness, master_key: str, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`emr-gateway ARGV…` in its own process, on the harness's database with its master key."""
    env = {**os.environ, "EGW_DATABASE_URL": h.database_url, "EGW_MASTER_KEY": master_key}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
