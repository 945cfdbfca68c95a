"""Lists never stop at 50 records: `/frontend` shows no `links.next` and no total (evidence-2026-11 §5.2), so the
adapter keeps paging while a page is full. The emulator serves that shape by default."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.errors import ContractChanged
from schemas.commands import AppointmentQuery
from schemas.patients import PatientQuery
from tests.adapters.simplepractice.conftest import ZONE, Env

MANY = 120  # three pages of at most 50


def pages_asked(env: Env, path: str) -> list[str]:
    return [query.get("page[number]", "") for query in env.requests("GET", path)]


def bodies(env: Env, path: str) -> list[dict[str, object]]:
    return [msgspec.json.decode(x.response_body) for x in env.emulator.exchanges if x.path == path]


async def john(env: Env) -> str:
    [found] = await env.adapter().find_patients(PatientQuery(email="john@example.com"))
    return found.id


def soon(days: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.today() + dt.timedelta(days=days), dt.time(0), ZoneInfo(ZONE))


async def test_the_emulator_serves_full_pages_without_links_or_total(env: Env) -> None:
    env.add_clients(MANY, last_name="Doe", updated=dt.datetime.now(dt.UTC))
    asked = await env.http.get(
        f"{env.base_url}/frontend/clients",
        params={"page[size]": "100"},
        headers={"Accept": "application/vnd.api+json", "Api-Version": "2026-05-25",
                 "Cookie": msgspec.json.decode(env.emulator.location_config(env.base_url)[1])["session_cookie"]},
    )  # fmt: skip
    body = asked.json()
    assert len(body["data"]) == 50  # the largest page SimplePractice serves
    assert "links" not in body
    assert "meta" not in body


async def test_appointments_are_read_past_the_first_page(env: Env) -> None:
    first = soon(10)
    ids = env.add_appointments(MANY, client_id=await john(env), first=first)
    listed = await env.adapter().list_appointments(
        AppointmentQuery(start_from=first, start_to=first + dt.timedelta(days=6))
    )
    assert sorted(a.id for a in listed) == sorted(ids)
    assert pages_asked(env, "/frontend/appointments") == ["1", "2", "3"]
    assert all("links" not in body for body in bodies(env, "/frontend/appointments"))


async def test_client_search_is_read_past_the_first_page(env: Env) -> None:
    added = env.add_clients(MANY, last_name="Doe", updated=dt.datetime.now(dt.UTC))
    found = await env.adapter().find_patients(PatientQuery(last_name="Doe"))
    assert {p.id for p in found} == {*added, await john(env)}
    searches = [q for q in env.requests("GET", "/frontend/clients") if q.get("filter[search]") == "Doe"]
    assert [q["page[number]"] for q in searches] == ["1", "2", "3"]


async def test_the_change_feed_is_read_past_the_first_page(env: Env) -> None:
    adapter = env.adapter()
    patient = await john(env)
    start = await adapter.changes_since(None)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    clients = env.add_clients(MANY, last_name="Lee", updated=later)
    # Every half hour from 12 hours ago: all inside the near window (a day back to two days ahead), read whole.
    first = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=12)
    appointments = env.add_appointments(MANY // 2, client_id=patient, first=first, updated=later)
    appointments += env.add_appointments(
        MANY // 2, client_id=patient, first=first + dt.timedelta(minutes=30), updated=later
    )
    env.emulator.traffic.exchanges.clear()

    changes = await adapter.changes_since(start.cursor)

    assert set(clients) <= {p.id for p in changes.patients}
    assert set(appointments) <= {a.id for a in changes.appointments}
    assert pages_asked(env, "/frontend/clients") == ["1", "2", "3"]
    assert pages_asked(env, "/frontend/appointments") == ["1", "2", "3", "1"]  # the near window, one far slice
    assert changes.cursor.startswith((later + dt.timedelta(seconds=MANY - 1)).strftime("%Y-%m-%dT%H:%M:%SZ|"))


async def test_links_next_is_still_followed(env: Env) -> None:
    env.emulator.next_links = True
    added = env.add_clients(MANY, last_name="Doe", updated=dt.datetime.now(dt.UTC))
    found = await env.adapter().find_patients(PatientQuery(last_name="Doe"))
    assert {p.id for p in found} >= set(added)
    served = bodies(env, "/frontend/clients")
    assert ["links" in body for body in served[-3:]] == [True, True, False]


async def test_a_calendar_answered_whole_is_read_in_one_request(env: Env) -> None:
    env.emulator.calendar_unpaged = True
    first = soon(10)
    ids = env.add_appointments(MANY, client_id=await john(env), first=first)
    listed = await env.adapter().list_appointments(
        AppointmentQuery(start_from=first, start_to=first + dt.timedelta(days=6))
    )
    assert sorted(a.id for a in listed) == sorted(ids)
    assert pages_asked(env, "/frontend/appointments") == ["1"]


class IgnoresPageNumber(httpx.AsyncBaseTransport):
    """Between the adapter and the emulator: drops `page[number]`, as a server that does not page by number would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        kept = [(k, v) for k, v in request.url.params.multi_items() if k != "page[number]"]
        request.url = request.url.copy_with(params=kept)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_list_that_repeats_a_full_page_is_a_contract_change_not_a_short_list(env: Env) -> None:
    async with httpx.AsyncClient(transport=IgnoresPageNumber(), timeout=5) as http:
        adapter = env.adapter(http=http)
        assert [p.last_name for p in await adapter.find_patients(PatientQuery(last_name="Doe"))] == ["Doe"]
        env.add_clients(MANY, last_name="Doe", updated=dt.datetime.now(dt.UTC))
        with pytest.raises(ContractChanged) as caught:
            await adapter.find_patients(PatientQuery(last_name="Doe"))
    assert caught.value.path == "page[number]"
