"""The CDN's 403 page is not a session problem; the portal's `Api-Version` is the live one; `observed_settings()`
reports what the account shows about the settings evidence marks uncertain (evidence-2026-11 §5)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.errors import AuthFailed, Rejected, Unavailable
from adapters.simplepractice.adapter import SimplePracticeAdapter
from adapters.simplepractice.emulator import SimplePracticeEmulator
from schemas.commands import AvailabilityQuery
from schemas.verify import SettingCheck
from tests.adapters.simplepractice.conftest import ZONE, Env, booking


def tomorrow(hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(hour), ZoneInfo(ZONE))


async def slots(adapter: SimplePracticeAdapter) -> int:
    [clinician] = await adapter.list_practitioners()
    start = tomorrow(0)
    query = AvailabilityQuery(
        practitioner_id=clinician.id, service_id="90791", start_from=start, start_to=start + dt.timedelta(days=1)
    )
    return len(await adapter.availability(query))


async def observed(adapter: SimplePracticeAdapter) -> dict[str, SettingCheck]:
    return {check.setting: check for check in await adapter.observed_settings()}


# ---------------------------------------------------------------------------------------------- the CDN's 403 page


async def test_the_emulator_answers_the_cdn_block_page(env: Env) -> None:
    await env.control("edge/block")
    raw = await env.http.get(f"{env.base_url}/frontend/offices")
    assert raw.status_code == 403
    assert raw.headers["content-type"].startswith("text/html")
    assert "CloudFront" in raw.headers["server"]
    assert b"The request could not be satisfied" in raw.content


async def test_a_cdn_block_says_signing_in_again_will_not_help(env: Env) -> None:
    adapter = env.adapter()
    command = await booking(adapter, tomorrow())
    await env.control("edge/block")

    with pytest.raises(Unavailable) as caught:
        await adapter.check()
    assert not isinstance(caught.value, AuthFailed)
    assert caught.value.emr_status == 403
    assert "CDN/WAF (CloudFront)" in caught.value.message
    assert "signing in again will not help" in caught.value.message
    assert "sign in to SimplePractice again" not in caught.value.message

    with pytest.raises(Unavailable, match="CloudFront"):
        await adapter.book(command)
    with pytest.raises(Unavailable, match="CloudFront"):
        await slots(env.adapter())
    assert env.emulator.stats().appointments == 0

    await env.control("edge/unblock")
    await adapter.check()


async def test_a_json_api_403_is_still_the_stale_csrf_token(env: Env) -> None:
    _, good = env.emulator.location_config(env.base_url)
    stale = msgspec.json.encode({**msgspec.json.decode(good), "csrf_token": "stale-token-123"})
    adapter = env.adapter(credentials=stale)
    command = await booking(adapter, tomorrow())
    with pytest.raises(AuthFailed, match="CSRF token is stale") as caught:
        await adapter.book(command)
    assert caught.value.emr_status == 403


# ---------------------------------------------------------------------------------------------- Api-Version


async def test_the_portal_is_asked_with_the_live_api_version(env: Env) -> None:
    assert await slots(env.adapter()) > 0
    [portal] = [x for x in env.emulator.exchanges if x.path == "/client-portal-api/slots"]
    assert portal.request_header("api-version") == "2026-05-25"
    frontend = [x for x in env.emulator.exchanges if x.path.startswith("/frontend/")]
    assert {x.request_header("api-version") for x in frontend} == {"2026-05-25"}


async def test_an_api_version_without_evidence_is_refused_by_the_emulator(env: Env) -> None:
    """The refusal names the settings to check in the adapter's own words; SimplePractice's `title` is not quoted
    (its error prose can name a client)."""
    with pytest.raises(Rejected, match="portal_api_version") as caught:
        await slots(env.adapter(portal_api_version="2020-01-01"))
    assert caught.value.emr_status == 400
    with pytest.raises(Rejected, match="api_version") as caught:
        await env.adapter(api_version="2019-06-30").check()
    assert "Api version is not supported" not in f"{caught.value.message} {caught.value.emr_message}"
    raw = await env.http.get(f"{env.base_url}/frontend/offices", headers={"Api-Version": "2019-06-30"})
    assert raw.status_code == 400
    assert raw.json()["errors"][0]["title"] == "Api version is not supported"
    await env.adapter(api_version="2025-03-21").check()  # the version an earlier integrator sent


async def test_an_emulator_checking_presence_only_serves_any_version() -> None:
    from adapters.emulation import ServerThread
    from tests.adapters.simplepractice.conftest import seed

    emulator = SimplePracticeEmulator(seed(), frontend_versions=None, portal_versions=None)
    server = ServerThread(emulator.app())
    base_url = server.start()
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            adapter = Env(emulator, base_url, http).adapter(portal_api_version="2020-01-01", api_version="2019-06-30")
            assert await slots(adapter) > 0
            checks = await observed(adapter)
            assert (checks["api_version"].agrees, checks["portal_api_version"].agrees) == (True, True)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- observed settings


async def test_observed_settings_agree_with_the_emulator_by_default(env: Env) -> None:
    adapter = env.adapter()
    await adapter.book(await booking(adapter, tomorrow()))
    checks = await observed(adapter)
    assert set(checks) == {"api_version", "portal_api_version", "time_zone"}
    assert all(check.agrees is True for check in checks.values()), checks
    assert checks["portal_api_version"].configured == "2026-05-25"
    assert checks["time_zone"].observed in ("offsets -04:00", "offsets -05:00")
    assert all(check.source.startswith("evidence-2026-11 §5") for check in checks.values())


async def test_observed_settings_disagree_with_stale_versions(env: Env) -> None:
    checks = await observed(env.adapter(portal_api_version="2020-01-01"))
    assert checks["portal_api_version"].agrees is False
    assert checks["portal_api_version"].observed == "HTTP 400 instead of JSON:API"
    assert checks["api_version"].agrees is True

    checks = await observed(env.adapter(api_version="2019-06-30"))
    assert checks["api_version"].agrees is False


async def test_observed_zone_disagrees_when_the_location_is_not_in_the_practices_zone(env: Env) -> None:
    assert (await observed(env.adapter()))["time_zone"].agrees is None  # no appointment to look at
    booked = env.adapter()
    await booked.book(await booking(booked, tomorrow()))
    elsewhere = await observed(env.adapter(time_zone="America/Los_Angeles"))
    assert elsewhere["time_zone"].agrees is False
    assert elsewhere["time_zone"].configured == "America/Los_Angeles"
    report = await env.adapter(time_zone="America/Los_Angeles").verify()
    assert not report.ok


async def test_observed_api_version_cannot_be_judged_without_a_session(env: Env) -> None:
    adapter = env.adapter()
    await env.control("session/expire")
    check = (await observed(adapter))["api_version"]
    assert check.agrees is None
    assert check.observed is not None
    assert check.observed.startswith("HTTP 401")
