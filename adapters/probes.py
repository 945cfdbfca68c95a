"""`locations verify`: read-only probes every adapter runs the same way, plus the adapter's own (`verify_probes`).

Each probe is one question to the live account. A response that no longer decodes is reported with the field path
and the type seen (from `ContractChanged`), another failure with its error class and message (adapter messages are
already free of secrets and patient data); a success with counts at most. Nothing here writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.errors import AdapterError, ContractChanged, RateLimited, Unsupported
from schemas.commands import AppointmentQuery, AvailabilityQuery
from schemas.verify import ProbeResult, ProbeStatus, VerifyReport

if TYPE_CHECKING:
    from adapters.base import EMRAdapter

ProbeFn = Callable[[], Awaitable[str | None]]
WEEK = timedelta(days=7)


class Skip(Exception):
    """A probe with nothing to look at (reported as skipped, not failed)."""


RATE_LIMIT_PATIENCE = 10  # seconds a probe waits once for the EMR's own 429 before it reports it


async def run_probe(name: str, probe: ProbeFn) -> ProbeResult:
    try:
        try:
            detail = await probe()
        except RateLimited as exc:
            if exc.retry_after > RATE_LIMIT_PATIENCE:
                raise
            await asyncio.sleep(exc.retry_after)  # verify runs beside live traffic: wait its turn once
            detail = await probe()
    except Skip as exc:
        return ProbeResult(name=name, status=ProbeStatus.SKIPPED, detail=str(exc))
    except ContractChanged as exc:
        return ProbeResult(
            name=name,
            status=ProbeStatus.FAILED,
            detail="the answer no longer decodes",
            field_path=exc.path,
            seen=exc.problem,
        )
    except Unsupported as exc:
        return ProbeResult(name=name, status=ProbeStatus.SKIPPED, detail=exc.message)
    except AdapterError as exc:
        return ProbeResult(name=name, status=ProbeStatus.FAILED, detail=f"{type(exc).__name__}: {exc.message}")
    return ProbeResult(name=name, status=ProbeStatus.OK, detail=detail)


async def verify(adapter: EMRAdapter[Any, Any], now: datetime | None = None) -> VerifyReport:
    from adapters.base import Capability

    now = now or datetime.now(UTC)
    state: dict[str, list[Any]] = {"practitioners": [], "services": [], "appointments": []}

    async def auth() -> str | None:
        await adapter.check()
        return None

    async def practitioners() -> str:
        state["practitioners"] = await adapter.list_practitioners()
        return f"{len(state['practitioners'])} practitioner(s)"

    async def services() -> str:
        state["services"] = await adapter.list_services()
        linked = sum(1 for s in state["services"] if s.practitioner_ids)
        return f"{len(state['services'])} service(s), {linked} linked to practitioners"

    async def locations() -> str:
        return f"{len(await adapter.list_locations())} location(s)"

    async def appointments() -> str:
        state["appointments"] = await adapter.list_appointments(AppointmentQuery(start_from=now, start_to=now + WEEK))
        return f"{len(state['appointments'])} appointment(s) in the next 7 days"

    async def availability() -> str:
        pair = _bookable_pair(state["practitioners"], state["services"])
        if pair is None:
            raise Skip("no practitioner and service to ask about")
        query = AvailabilityQuery(practitioner_id=pair[0], service_id=pair[1], start_from=now, start_to=now + WEEK)
        return f"{len(await adapter.availability(query))} slot(s) in the next 7 days"

    async def appointment_read() -> str | None:
        listed = state["appointments"]
        if not listed:
            past = AppointmentQuery(start_from=now - 4 * WEEK, start_to=now)
            listed = await adapter.list_appointments(past)
        if not listed:
            raise Skip("no appointment in the last 4 or the next week to read")
        await adapter.get_appointment(listed[0].id)
        return None

    async def change_feed() -> str | None:
        await adapter.changes_since(None)
        return None

    probes: list[tuple[str, ProbeFn]] = [("authentication", auth)]
    if adapter.supports(Capability.CATALOG):
        probes += [("practitioners", practitioners), ("services", services), ("locations", locations)]
    if adapter.supports(Capability.LIST_APPOINTMENTS):
        probes.append(("appointments", appointments))
    if adapter.supports(Capability.AVAILABILITY):
        probes.append(("availability", availability))
    if adapter.supports(Capability.GET_APPOINTMENT):
        probes.append(("appointment read", appointment_read))
    if adapter.supports(Capability.CHANGES_SINCE):
        probes.append(("change feed", change_feed))
    probes += adapter.verify_probes()
    results = [await run_probe(*probes[0])]
    if results[0].status is ProbeStatus.FAILED and results[0].field_path is None:
        # Refused credentials (not an answer that no longer decodes) fail every later question the same way: once.
        skipped = [
            ProbeResult(name=name, status=ProbeStatus.SKIPPED, detail="authentication failed") for name, _ in probes[1:]
        ]
        return VerifyReport(emr=adapter.slug, ok=False, probes=results + skipped, settings=[])
    results += [await run_probe(name, probe) for name, probe in probes[1:]]
    try:
        settings = await adapter.observed_settings()
    except AdapterError as exc:
        results.append(await run_probe("settings evidence", _raise(exc)))
        settings = []
    ok = all(r.status is not ProbeStatus.FAILED for r in results) and all(s.agrees is not False for s in settings)
    return VerifyReport(emr=adapter.slug, ok=ok, probes=results, settings=settings)


def _raise(exc: AdapterError) -> ProbeFn:
    async def probe() -> str | None:
        raise exc

    return probe


def _bookable_pair(practitioners: list[Any], services: list[Any]) -> tuple[str, str] | None:
    known = {p.id for p in practitioners}
    for service in services:
        for practitioner_id in service.practitioner_ids or []:
            if practitioner_id in known:
                return practitioner_id, service.id
    if practitioners and services:
        return practitioners[0].id, services[0].id
    return None
