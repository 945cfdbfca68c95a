"""README screenshots of the operator console, taken by headless Chromium from a live gateway and the Cliniko
emulator (nothing faked: the state is made by booking in the emulator, polling and delivering webhooks).

    python -m tests.browser.screenshots [--out docs/screenshots]

Writes console-overview.png and console-location.png (1280x800)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy import update

from gateway.crypto import Keyring
from gateway.storage.migrate import upgrade
from gateway.storage.store import Store
from gateway.storage.tables import locations, sync_state
from tests.browser.support import chromium_path, launch, sign_in
from tests.console.conftest import add_operator_to
from tests.console.test_actions import _deliver
from tests.console.test_pages import set_credentials, subscribe
from tests.gateway.conftest import Harness, run_sync, running_harness
from tests.sync.support import ClinicScreens, Sync, day_ahead, local
from tests.webhooks.receiver import Answer, Receiver

NAMES = ("North Clinic", "South Clinic")


def _rename(h: Harness) -> None:
    async def go() -> None:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.begin() as conn:
                for site, name in zip(h.sites, NAMES, strict=False):
                    await conn.execute(update(locations).where(locations.c.id == site.location_id).values(name=name))
        finally:
            await store.close()

    run_sync(go())


def _poll_now(h: Harness, sync: Sync) -> None:
    """One poll of every location, as the worker runs it, without waiting for the next one to fall due."""

    async def due() -> None:
        store = await Store.open(h.database_url, h.keyring)
        try:
            async with store.engine.begin() as conn:
                await conn.execute(update(sync_state).values(next_poll_at=datetime.now(UTC)))
        finally:
            await store.close()

    run_sync(due())
    sync.tick()


def _stage(h: Harness, receiver: Receiver) -> None:
    """A morning's work: North books and reschedules, one delivery fails for good; South's API key was revoked."""
    _rename(h)
    add_operator_to(h)
    subscribe(h, receiver.url)
    sync = Sync(h, poll_seconds=None, emr_rate_limits={})  # as production polls: the EMR's own rate limits
    sync.tick()
    clinic = ClinicScreens(h)
    try:
        first = clinic.book(local(day_ahead(), 9))
        clinic.book(local(day_ahead(), 11))
        _poll_now(h, sync)
        clinic.move(first, local(day_ahead(), 15))
        clinic.book(local(day_ahead(3), 10))
    finally:
        clinic.close()
    set_credentials(h, 1, api_key="revoked-key-au1")
    _poll_now(h, sync)
    receiver.script.append(Answer(status=500, body=b"database down"))
    _deliver(h)


def take(out: Path) -> list[Path]:
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'egw.db'}"
        upgrade(database_url)
        overrides = {"webhook_allowed_subnets": ("127.0.0.0/8",), "emr_rate_limits": {}}  # the EMRs' own limits
        receiver = Receiver().start()
        try:
            with running_harness("cliniko", database_url, Keyring.generate(), overrides) as h:
                _stage(h, receiver)
                with sync_playwright() as playwright:
                    browser = launch(playwright, executable)
                    try:
                        page = browser.new_page(viewport={"width": 1280, "height": 800})
                        sign_in(page, h.base_url)
                        shots = [out / "console-overview.png", out / "console-location.png"]
                        page.screenshot(path=shots[0])
                        page.get_by_test_id("location-link").first.click()
                        page.wait_for_url(f"{h.base_url}/console/locations/*")
                        page.screenshot(path=shots[1])
                    finally:
                        browser.close()
        finally:
            receiver.stop()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="where the PNGs go")
    args = parser.parse_args(argv)
    for shot in take(args.out):
        print(f"{shot}  {shot.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
