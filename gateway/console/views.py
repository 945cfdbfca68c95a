"""What each console page shows, gathered from the use cases and storage (the route handlers stay thin): the
overview's row per location, a location's page, an endpoint's delivery log. Counts, ids, states and class names;
no patient data (that is the trace page's alone)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import msgspec

from adapters.base import Capability
from adapters.registry import get_adapter_class
from gateway.console.charts import Chart, hourly_chart
from gateway.location_health import check_location, ghl_health
from gateway.runtime import Runtime
from gateway.storage import activity, console_reads
from gateway.storage import ghl_destination as ghl_db
from gateway.storage.activity import RunRecord
from gateway.storage.ghl_destination import PushRecord
from gateway.storage.records import ApiKeyRecord, LocationRecord
from gateway.storage.webhooks import DEAD, FAILED, DeliveryRecord, EndpointRecord, WebhookStore
from gateway.times import now_utc
from gateway.usecases import keys as key_usecases
from schemas.health import EMRStatus, GhlHealth, GhlStatus, LocationHealth

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"
DELIVERY_STATES = ("pending", "delivering", "succeeded", "failed", "dead")


class Light(msgspec.Struct, frozen=True, kw_only=True):
    """A traffic light with its words: colour is never the only signal."""

    color: str
    label: str
    reason: str | None = None


class Budget(msgspec.Struct, frozen=True, kw_only=True):
    used: int  # EMR requests change detection sent in the last hour
    per_hour: int | None  # what the EMR account's tightest sustained limit allows an hour; None: unpaced
    share: float  # the part of it polls aim at (EGW_POLL_BUDGET_SHARE)

    @property
    def percent(self) -> float | None:
        return 100.0 * self.used / self.per_hour if self.per_hour else None


class EndpointSummary(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: EndpointRecord
    counts: dict[str, int]  # deliveries by state

    @property
    def dead(self) -> int:
        return self.counts.get(DEAD, 0)

    @property
    def failing(self) -> int:
        return self.counts.get(FAILED, 0)


class WebhooksSummary(msgspec.Struct, frozen=True, kw_only=True):
    enabled: int
    disabled: int
    dead: int
    failing: int
    light: Light


class LocationRow(msgspec.Struct, frozen=True, kw_only=True):
    location: LocationRecord
    emr_name: str
    health: LocationHealth | None
    light: Light
    budget: Budget
    webhooks: WebhooksSummary
    ghl: GhlHealth | None
    ghl_light: Light
    chart: Chart


class LocationPage(msgspec.Struct, frozen=True, kw_only=True):
    row: LocationRow
    runs: list[RunRecord]
    errors: dict[str, int]  # failed runs by error class, last 24 h
    endpoints: list[EndpointSummary]
    keys: list[ApiKeyRecord]
    pushes: list[PushRecord]  # the latest GoHighLevel pushes
    pollable: bool  # the EMR has a change feed (polls, "Sync now")


class EndpointPage(msgspec.Struct, frozen=True, kw_only=True):
    location: LocationRecord
    summary: EndpointSummary
    deliveries: list[DeliveryRecord]
    state: str | None


def emr_name(slug: str) -> str:
    try:
        return str(get_adapter_class(slug).display_name)
    except KeyError:
        return slug


def pollable(slug: str) -> bool:
    try:
        return Capability.CHANGES_SINCE in get_adapter_class(slug).capabilities
    except KeyError:
        return False


def health_light(health: LocationHealth | None, error: str | None = None) -> Light:
    """Red: the EMR refuses or cannot be reached; amber: it answers but something degrades (a failing poll, a
    changed answer shape); green: all well."""
    if health is None:
        return Light(color=RED, label="check failed", reason=error)
    status = health.status
    if status in (EMRStatus.EMR_AUTH_FAILED, EMRStatus.EMR_UNAVAILABLE, EMRStatus.EMR_ERROR):
        return Light(color=RED, label=status.value, reason=health.detail)
    if status is EMRStatus.EMR_CONTRACT_CHANGED:
        return Light(color=AMBER, label=status.value, reason=health.detail)
    sync = health.sync
    if sync is not None and sync.consecutive_failures > 0:
        reason = f"the last {sync.consecutive_failures} poll(s) failed ({sync.last_error or 'error'})"
        return Light(color=AMBER, label="poll_failing", reason=reason)
    return Light(color=GREEN, label="ok")


def ghl_light(ghl: GhlHealth | None) -> Light:
    if ghl is None:
        return Light(color=GREY, label="not connected")
    if ghl.status is GhlStatus.GHL_AUTH_FAILED:
        return Light(color=RED, label=ghl.status.value, reason=ghl.detail)
    if ghl.status is GhlStatus.DISCONNECTED:
        return Light(color=GREY, label=ghl.status.value, reason="pushes wait for a reconnect")
    if ghl.status is GhlStatus.GHL_RATE_LIMITED:
        return Light(color=AMBER, label=ghl.status.value, reason="paused after GoHighLevel answered 429")
    if ghl.dead:
        return Light(color=AMBER, label="dead_pushes", reason=f"{ghl.dead} push(es) exhausted their retries")
    return Light(color=GREEN, label="ok")


def webhooks_summary(endpoints: list[EndpointSummary]) -> WebhooksSummary:
    enabled = sum(1 for e in endpoints if e.endpoint.enabled)
    disabled = len(endpoints) - enabled
    dead = sum(e.dead for e in endpoints)
    failing = sum(e.failing for e in endpoints)
    if not endpoints:
        light = Light(color=GREY, label="none")
    elif disabled:
        light = Light(color=RED, label="disabled")  # the counts are shown beside the light
    elif dead or failing:
        light = Light(color=AMBER, label="failing")
    else:
        light = Light(color=GREEN, label="ok")
    return WebhooksSummary(enabled=enabled, disabled=disabled, dead=dead, failing=failing, light=light)


def _per_hour(runtime: Runtime, emr: str) -> int | None:
    try:
        cls = get_adapter_class(emr)
    except KeyError:
        return None
    limits = runtime.adapters.pacing.limits_for(cls)
    if not limits:
        return None
    return int(min(limit.per_second for limit in limits) * 3600)


async def _health(runtime: Runtime, location: LocationRecord) -> tuple[LocationHealth | None, str | None]:
    try:
        return await check_location(runtime, location), None
    except Exception as exc:  # a location whose adapter cannot even be built (an EMR no longer installed, …)
        return None, type(exc).__name__


async def _endpoints(runtime: Runtime, locations: list[LocationRecord]) -> dict[str, list[EndpointSummary]]:
    store = WebhookStore(runtime.store)
    counts = await console_reads.delivery_counts(runtime.store, [loc.id for loc in locations])
    found: dict[str, list[EndpointSummary]] = {}
    for location in locations:
        found[location.id] = [
            EndpointSummary(endpoint=endpoint, counts=counts.get(endpoint.id, {}))
            for endpoint in await store.list_endpoints(location.id)
        ]
    return found


async def location_rows(runtime: Runtime, locations: list[LocationRecord], now: datetime) -> list[LocationRow]:
    ids = [loc.id for loc in locations]
    healths = await asyncio.gather(*(_health(runtime, loc) for loc in locations))
    used = await activity.requests_since(runtime.store, ids, now - timedelta(hours=1))
    hours = await activity.hours(runtime.store, ids, now - timedelta(hours=23))
    endpoints = await _endpoints(runtime, locations)
    rows = []
    for location, (health, error) in zip(locations, healths, strict=True):
        ghl = health.ghl if health is not None else await ghl_health(runtime, location.id)
        rows.append(
            LocationRow(
                location=location,
                emr_name=emr_name(location.emr),
                health=health,
                light=health_light(health, error),
                budget=Budget(
                    used=used.get(location.id, 0),
                    per_hour=_per_hour(runtime, location.emr),
                    share=runtime.config.poll_budget_share,
                ),
                webhooks=webhooks_summary(endpoints[location.id]),
                ghl=ghl,
                ghl_light=ghl_light(ghl),
                chart=hourly_chart(hours.get(location.id, []), now, label=location.name),
            )
        )
    return rows


async def overview(runtime: Runtime) -> list[LocationRow]:
    return await location_rows(runtime, await runtime.store.list_locations(), now_utc())


async def location_page(runtime: Runtime, location: LocationRecord) -> LocationPage:
    now = now_utc()
    [row] = await location_rows(runtime, [location], now)
    endpoints = (await _endpoints(runtime, [location]))[location.id]
    return LocationPage(
        row=row,
        runs=await activity.recent_runs(runtime.store, location.id),
        errors=await activity.errors_since(runtime.store, location.id, now - timedelta(hours=24)),
        endpoints=endpoints,
        keys=list(reversed(await key_usecases.list_keys(runtime.store, location.id))),
        pushes=await ghl_db.list_pushes(runtime.store, location.id, limit=10),
        pollable=pollable(location.emr),
    )


async def endpoint_page(
    runtime: Runtime, location: LocationRecord, endpoint_id: str, state: str | None
) -> EndpointPage | None:
    store = WebhookStore(runtime.store)
    endpoint = await store.get_endpoint(location.id, endpoint_id)
    if endpoint is None:
        return None
    deliveries = await store.list_deliveries(location.id, endpoint_id, state=state, limit=100) or []
    counts = await console_reads.delivery_counts(runtime.store, [location.id])
    return EndpointPage(
        location=location,
        summary=EndpointSummary(endpoint=endpoint, counts=counts.get(endpoint_id, {})),
        deliveries=deliveries,
        state=state,
    )
