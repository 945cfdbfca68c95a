"""The use case: push one queued change (or a patient's current state) to a connected GHL location.

A push is a state sync, not a replay of the event: the contact gets the snapshot's fields and tags, a mirrored
appointment gets its current facts. So retries, replays and a backfill converge on the same GHL state, a diff against
what was last written makes an unchanged patient cost no GHL call, and the links make a repeat update rather
than duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import httpx

from adapters import errors as ae
from adapters.errors import AdapterError, AuthFailed, RateLimited
from adapters.ghl.client import GhlClient
from adapters.pacing import RateLimit, paced_client
from gateway.catalog import Catalog
from gateway.ghl.destination.calendars import Calendars, Mirror
from gateway.ghl.destination.contacts import Contacts
from gateway.ghl.destination.errors import PushFailed
from gateway.ghl.destination.settings import CalendarMode, GhlSettings, decode_settings
from gateway.logsafe import log_unexpected
from gateway.runtime import Runtime
from gateway.storage import ghl_destination as db
from gateway.storage import sync as facts_db
from gateway.storage.outbox import decode_event
from gateway.storage.records import LocationRecord
from gateway.sync.detector import appointment_of, current_snapshots
from gateway.sync.snapshots import summarize
from gateway.times import now_utc
from gateway.webhooks.delivery import next_attempt
from schemas.patients import Patient
from schemas.webhooks import AppointmentEventData, AppointmentSummary, PatientSnapshot

log = logging.getLogger("emr_gateway.ghl")

# "100 API requests per 10 seconds ... per resource" and "200,000 API requests per day" (destination.md §1.7),
# kept below both: 9/s with bursts of 10 (at most 100 in any 10 s), and 2/s + 20,000 (at most 192,800 in any day).
GHL_LIMITS = (RateLimit(per_second=9.0, burst=10), RateLimit(per_second=2.0, burst=20_000))
AUTH_PAUSE = timedelta(seconds=60)


def ghl_http(runtime: Runtime, ghl_location_id: str, *, max_wait: float) -> httpx.AsyncClient:
    return paced_client(
        runtime.http, runtime.ghl_budget, f"ghl:{ghl_location_id}", GHL_LIMITS, max_wait=max_wait, emr="GoHighLevel"
    )


class Pusher:
    """One connected location, ready to push."""

    def __init__(
        self, runtime: Runtime, location: LocationRecord, connection: db.ConnectionRecord, client: GhlClient
    ) -> None:
        self.runtime = runtime
        self.location = location
        self.connection = connection
        self.client = client
        self.settings: GhlSettings = decode_settings(connection.settings_json)
        self.contacts = Contacts(runtime.store, client, location.id, location.emr, location.time_zone, self.settings)
        self.calendars = Calendars(runtime.store, client, location.id, self.settings)

    @classmethod
    async def open(cls, runtime: Runtime, location_id: str, *, max_wait: float = 30.0) -> Pusher | None:
        connection = await db.get_connection(runtime.store, location_id)
        location = await runtime.store.get_location(location_id)
        if connection is None or location is None or not connection.enabled:
            return None
        token = await db.get_token(runtime.store, location_id)
        http = ghl_http(runtime, connection.ghl_location_id, max_wait=max_wait)
        client = GhlClient(http, base_url=connection.base_url, token=token, location_id=connection.ghl_location_id)
        return cls(runtime, location, connection, client)

    async def catalog(self) -> Catalog:
        adapter = await self.runtime.adapters.get(self.location)
        return await self.runtime.catalogs.get(self.location.id, adapter)

    async def _patient(self, patient_id: str) -> Patient | None:
        adapter = await self.runtime.adapters.get(self.location)
        found = await adapter.get_patients([patient_id])
        return found[0] if found else None

    async def snapshot(self, patient_id: str, now: datetime) -> PatientSnapshot | None:
        adapter = await self.runtime.adapters.get(self.location)
        found = await current_snapshots(
            self.runtime.store, adapter, self.location, [patient_id], catalog=self.catalog, now=now
        )
        return found.get(patient_id)

    # -- pieces ---------------------------------------------------------------------------------------------------

    async def push_contact(self, patient_id: str, patient: Patient, snapshot: PatientSnapshot, now: datetime) -> bool:
        target = self.contacts.target(patient, snapshot, self.connection.field_ids, now)
        return await self.contacts.push(patient_id, target)

    async def _contact_for_calendar(self, patient_id: str, patient: Patient | None, now: datetime) -> str:
        link = await db.contact_link(self.runtime.store, self.location.id, patient_id)
        if link is not None:
            return link.contact_id
        patient = patient or await self._patient(patient_id)
        if patient is None:
            raise PushFailed("emr_patient_gone", "the EMR no longer has this patient", final=True)
        contact_id, _, _ = await self.contacts.ensure(
            patient_id, self.contacts.target(patient, None, self.connection.field_ids, now)
        )
        return contact_id

    async def push_mirror(self, patient_id: str, mirror: Mirror, patient: Patient | None, now: datetime) -> bool:
        if not self.calendars.wanted(mirror, now):
            return False
        contact_id = None
        if self.settings.calendar_mode is CalendarMode.APPOINTMENTS:
            contact_id = await self._contact_for_calendar(patient_id, patient, now)
        return await self.calendars.push(mirror, contact_id, now)

    async def mirror_of(self, appointment_id: str, summary: AppointmentSummary | None) -> Mirror | None:
        """The appointment's current facts (the event may be older than them), titled with the event's names."""
        async with self.runtime.store.engine.connect() as conn:
            stored = (await facts_db.load_appointments(conn, self.location.id, [appointment_id])).get(appointment_id)
        appointment = appointment_of(appointment_id, stored, self.location) if stored is not None else None
        if appointment is not None:
            names = summary if summary is not None and summary.practitioner_id == appointment.practitioner_id else None
            return Mirror(
                appointment_id=appointment_id,
                status=appointment.status,
                start=appointment.start,
                end=appointment.end,
                practitioner_id=appointment.practitioner_id,
                time_zone=appointment.time_zone,
                title=title_of(names),
            )
        if summary is None:
            return None
        return Mirror(
            appointment_id=appointment_id,
            status=summary.status,
            start=summary.start,
            end=summary.end,
            practitioner_id=summary.practitioner_id,
            time_zone=summary.time_zone,
            title=title_of(summary),
        )

    async def refresh(self, patient_id: str, now: datetime, snapshot: PatientSnapshot | None = None) -> bool:
        """Everything about one patient as it stands now: the contact, then their mirrored appointments."""
        snapshot = snapshot or await self.snapshot(patient_id, now)
        if snapshot is None:
            return False
        changed = await self.push_contact(patient_id, snapshot.patient, snapshot, now)
        if self.settings.calendar_mode is CalendarMode.OFF:
            return changed
        async with self.runtime.store.engine.connect() as conn:
            theirs = (await facts_db.load_patient_appointments(conn, self.location.id, [patient_id])).get(
                patient_id, {}
            )
        catalog = await self.catalog() if theirs else None
        for appointment_id, fact in sorted(theirs.items(), key=lambda item: item[1].start):
            appointment = appointment_of(appointment_id, fact, self.location)
            if appointment is None or catalog is None:
                continue
            summary = summarize(appointment, catalog)
            mirror = await self.mirror_of(appointment_id, summary)
            if mirror is not None:
                changed = await self.push_mirror(patient_id, mirror, snapshot.patient, now) or changed
        return changed

    # -- one queued push ------------------------------------------------------------------------------------------

    async def apply(self, claim: db.PushClaim, now: datetime) -> bool:
        if claim.payload is None:
            return await self.refresh(claim.patient_id, now)
        event = decode_event(claim.payload)
        data = event.data
        if isinstance(data, PatientSnapshot):
            return await self.push_contact(claim.patient_id, data.patient, data, now)
        if isinstance(data, AppointmentEventData):
            mirror = await self.mirror_of(data.appointment.id, data.appointment)
            if mirror is None:
                return False
            return await self.push_mirror(claim.patient_id, mirror, data.patient, now)
        return False


def title_of(summary: AppointmentSummary | None) -> str:
    if summary is None or not summary.service_name:
        return "Appointment"
    if summary.practitioner_name:
        return f"{summary.service_name} with {summary.practitioner_name}"
    return summary.service_name


async def process(runtime: Runtime, pusher: Pusher, claim: db.PushClaim, worker_id: str) -> db.PushOutcome:
    """Runs one claim and records its outcome; never raises for a GHL or EMR failure."""
    now = now_utc()
    before = pusher.client.calls
    config = runtime.config
    try:
        changed = await pusher.apply(claim, now)
        outcome = db.PushOutcome(state=db.PUSHED if changed else db.SKIPPED, calls=pusher.client.calls - before)
        if pusher.connection.status != "ok":
            await db.set_status(runtime.store, pusher.location.id, "ok", None)
    except RateLimited as exc:
        until = now + timedelta(seconds=max(1, exc.retry_after))
        await db.pause(runtime.store, pusher.location.id, until)
        outcome = db.PushOutcome(
            state=db.PENDING,
            calls=pusher.client.calls - before,
            ghl_status=exc.emr_status,
            error_code="ghl_rate_limited",
            error="paused for GoHighLevel's rate limit; nothing is dropped",
            next_attempt_at=until,
            count_attempt=False,
        )
    except (PushFailed, AdapterError) as exc:
        code, message, status, final = failure_of(exc)
        if isinstance(exc, AuthFailed):
            await db.set_status(runtime.store, pusher.location.id, "auth_failed", message)
            await db.pause(runtime.store, pusher.location.id, now + AUTH_PAUSE)
        retry_at = (
            None
            if final
            else next_attempt(claim.attempts + 1, config.webhook_retry_schedule, config.webhook_retry_jitter, None, now)
        )
        outcome = db.PushOutcome(
            state=db.FAILED if retry_at is not None else db.DEAD,
            calls=pusher.client.calls - before,
            ghl_status=status,
            error_code=code,
            error=message,
            next_attempt_at=retry_at,
        )
    await db.finish(runtime.store, claim, worker_id, outcome)
    await db.note_budget(runtime.store, pusher.location.id, pusher.client.daily_remaining)
    return outcome


def failure_of(exc: PushFailed | AdapterError) -> tuple[str, str, int | None, bool]:
    """(code, message, GHL status, final). Adapter messages are the gateway's own words (never GHL's text)."""
    if isinstance(exc, PushFailed):
        return exc.code, exc.message, exc.ghl_status, exc.final
    # The nearest mapped class (as gateway.problems maps errors): AlreadyCancelled is a Rejected, and so on.
    code = next((FAILURE_CODES[c] for c in type(exc).__mro__ if c in FAILURE_CODES), "ghl_error")
    return code, exc.message, exc.emr_status, False


FAILURE_CODES: dict[type[Exception], str] = {
    ae.AuthFailed: "ghl_auth_failed",
    ae.NotFound: "ghl_not_found",
    ae.Rejected: "ghl_rejected",
    ae.Unavailable: "ghl_unavailable",
    ae.Timeout: "ghl_timeout",
    ae.ContractChanged: "ghl_contract_changed",
}


_last_sweep: dict[int, datetime] = {}
SWEEP_EVERY = timedelta(minutes=1)


async def tick(runtime: Runtime, worker_id: str, *, limit: int = 20, concurrency: int = 4) -> int:
    """Claims due pushes and runs them (a few patients at once; one patient never twice at once)."""
    now = now_utc()
    key = id(runtime.store)
    if now - _last_sweep.get(key, now - SWEEP_EVERY) >= SWEEP_EVERY:
        _last_sweep[key] = now
        await db.sweep_lapses(runtime.store, now)
    claims = await db.claim(
        runtime.store, worker_id, now=now, lease_seconds=runtime.config.webhook_lease_seconds, limit=limit
    )
    if not claims:
        return 0
    pushers: dict[str, Pusher | None] = {}
    for claim in claims:
        if claim.location_id not in pushers:
            pushers[claim.location_id] = await Pusher.open(runtime, claim.location_id)
    gate = asyncio.Semaphore(concurrency)

    async def run(claim: db.PushClaim) -> None:
        pusher = pushers[claim.location_id]
        async with gate:
            if pusher is None:  # disconnected since it was queued: kept, pushed again on reconnect or replay
                await db.finish(
                    runtime.store,
                    claim,
                    worker_id,
                    db.PushOutcome(state=db.DEAD, error_code="ghl_disconnected", error="the location was disconnected"),
                )
                return
            try:
                await process(runtime, pusher, claim, worker_id)
            except Exception as exc:  # the class and frames only: a message could quote a patient
                log_unexpected(log, "a GoHighLevel push failed unexpectedly; it is retried after its lease", exc)

    await asyncio.gather(*(run(claim) for claim in claims))
    return len(claims)
