"""An expired Jane or SimplePractice session shows on the location's health before a patient finds out."""

from __future__ import annotations

import httpx
import pytest

from gateway.crypto import Keyring
from tests.gateway.conftest import running_harness


def _expire(slug: str, emulator: object, emulator_url: str) -> None:
    if slug == "jane":
        emulator.expire_sessions()  # type: ignore[attr-defined]
    else:
        httpx.post(f"{emulator_url}/_emulator/session/expire").raise_for_status()


@pytest.mark.parametrize("slug", ["jane", "simplepractice"])
def test_expired_session_is_emr_auth_failed_on_health_and_on_a_booking_read(
    slug: str, database_url: str, keyring: Keyring
) -> None:
    with running_harness(slug, database_url, keyring) as h:
        with h.client() as c:
            assert c.get("/v1/health").json()["status"] == "ok"
        _expire(slug, h.emulator, h.emulator_url)
        with h.client() as c:
            health = c.get("/v1/health", params={"fresh": "true"}).json()
            assert health["status"] == "emr_auth_failed"
            assert "session" in health["detail"].lower()
            r = c.get("/v1/patients", params={"email": "jane.citizen@example.com"})  # asks the EMR (no cache)
            assert r.status_code == 502
            assert r.json()["code"] == "emr_auth_failed"
