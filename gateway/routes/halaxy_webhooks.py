"""Halaxy's Subscription notifications, per location: check the configured authentication header, re-read, detect.

In Halaxy (Settings > Integrations > Webhooks > Create Webhook) the practice creates one webhook per event — Patient
create/update, Appointment create/update/delete — each with the endpoint URL `<gateway>/halaxy/v1/webhooks/<location
id>` and, as its "Authentication Header", the location's `webhook_secret` credential (sent as the header the
location's `webhook_header` setting names, `Authorization` by default; `Bearer <secret>` is accepted too, as the
laravel-halaxy SDK does). Halaxy signs nothing: that header is the only proof (docs/webhooks). It is checked before
the body is decoded (a `before_request` hook): a missing or wrong header is 401, and nothing is parsed, read or
changed.

A notification is a `history` Bundle naming the changed resource (`notificationEvent[].focus`), never what changed in
it (the topic is an opaque uuid). The gateway re-reads the patient (for an appointment, the appointment and then its
patient) and runs the change detector on them (a targeted sync), so subscribers hear of the change now rather than
at the next poll. At most `MAX_FOCUSES` focuses are handled per notification (each costs a read, a patient read and a
listing of the patient's appointments); the rest (`deferred` in the answer) are left for the poll.

Deletions: an "Appointment deleted" event names an appointment Halaxy no longer has (its read is 404) and that no
`_lastUpdated` search will list again, so the poll never sees it go. The gateway looks up what it stored of that
appointment, re-snapshots its patient, and announces it as `appointment.cancelled` (no reason): it is gone from the
calendar, and a subscriber must not keep it as booked. Every patient a notification re-snapshots is reconciled the
same way: a stored appointment of theirs that is neither cancelled nor listed by Halaxy any more, and whose own read
is 404 (or now another clinic's), is announced cancelled too, so a later notification about the patient catches a
deletion whose own notification was lost or deferred. Halaxy offers no other way to see a deletion (no `_history`
is documented): without its webhook, a deleted appointment stays as last seen.

An EMR failure while re-reading is 503, so the notification can be sent again. The docs say events fire for changes
made in Halaxy's own screens: the gateway's writes are announced by the gateway itself, and polling
(`changes_since`) still catches whatever a lost notification missed, deletions excepted. Whether Halaxy retries a
failed delivery is not documented.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from adapters.errors import NotFound
from adapters.halaxy.adapter import HalaxyAdapter
from adapters.halaxy.settings import HalaxyCredentials, HalaxySettings
from adapters.halaxy.wire import Notification
from gateway.auth import runtime_of
from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.errors import NotFoundError, Unauthorized
from gateway.routes.docs import PROBLEMS, PathId
from gateway.runtime import Runtime
from gateway.storage import sync as db
from gateway.storage.records import LocationRecord
from gateway.sync.detector import GONE, appointment_of, detect
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.appointments import Appointment, AppointmentStatus
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery
from schemas.patients import Patient

Req = Request[Any, Any, State]

# Focuses handled per notification (Halaxy sends one event per notification; a body naming more is unusual). Each
# costs up to 3 EMR requests; the rest are left for the poll.
MAX_FOCUSES = 20
LOCATION_KEY = "halaxy_location"  # request.state: the location whose authentication header was checked


class NotificationOutcome(msgspec.Struct, kw_only=True):
    accepted: bool
    events: int = 0
    reason: str | None = None
    deferred: int = 0  # focuses beyond MAX_FOCUSES, left for the next poll


async def _location(runtime: Runtime, location_id: str) -> tuple[LocationRecord, HalaxySettings, HalaxyCredentials]:
    location = await runtime.store.get_location(location_id)
    if location is None or location.emr != HalaxyAdapter.slug:
        raise NotFoundError("no Halaxy location with this id")
    raw = await runtime.store.get_credentials(location.id)
    settings = msgspec.json.decode(location.settings_json, type=HalaxySettings)
    return location, settings, msgspec.json.decode(raw, type=HalaxyCredentials)


def authentic(secret: str | None, presented: str | None) -> bool:
    """The configured value, as is or after `Bearer `, compared in constant time (as bytes: compare_digest refuses
    str with non-ASCII characters)."""
    if not secret or presented is None:
        return False
    value = presented.strip()
    candidates = [value, value[7:].strip()] if value.lower().startswith("bearer ") else [value]
    return any(hmac.compare_digest(secret.encode(), c.encode()) for c in candidates)


async def _authenticate(request: Req) -> None:
    """Runs before the body is decoded: an unauthenticated sender costs no JSON parsing and no EMR request."""
    runtime = runtime_of(request.app.state)
    location, settings, credentials = await _location(runtime, str(request.path_params["location_id"]))
    if not authentic(credentials.webhook_secret, request.headers.get(settings.webhook_header)):
        raise Unauthorized("the notification's authentication header is missing or wrong")
    setattr(request.state, LOCATION_KEY, location)


def _removed(
    appointment_id: str, fact: db.StoredAppointment, location: LocationRecord, now: datetime
) -> Appointment | None:
    """A stored appointment Halaxy no longer has, as cancelled (None for a row stored before facts were kept)."""
    shown = appointment_of(appointment_id, fact, location)
    if shown is None:
        return None
    stamp = max(now, fact.emr_updated_at) if fact.emr_updated_at is not None else now
    return msgspec.structs.replace(shown, status=AppointmentStatus.CANCELLED, updated_at=stamp)


async def _gone_since(
    adapter: AnyAdapter,
    location: LocationRecord,
    stored: dict[str, dict[str, db.StoredAppointment]],
    listed: set[str],
    vanished: set[str],
    now: datetime,
) -> list[Appointment]:
    """The stored appointments of re-snapshotted patients that Halaxy no longer has: not listed now, and read as not
    found (already, for a notification's own focus; once more here for the others, at most MAX_FOCUSES reads)."""
    out: list[Appointment] = []
    reads = 0
    for theirs in stored.values():
        for appointment_id, fact in sorted(theirs.items()):
            if appointment_id in listed or AppointmentStatus(fact.status) in GONE:
                continue
            if appointment_id not in vanished:
                if reads >= MAX_FOCUSES:
                    continue
                reads += 1
                try:
                    await adapter.get_appointment(appointment_id)
                    continue  # still there: a listing that lags, not a deletion
                except NotFound:
                    pass
            removed = _removed(appointment_id, fact, location, now)
            if removed is not None:
                out.append(removed)
    return out


async def _targeted_sync(runtime: Runtime, location: LocationRecord, notification: Notification) -> NotificationOutcome:
    focuses = notification.focuses()
    if not focuses:
        return NotificationOutcome(accepted=False, reason="no resource named in the notification")
    deferred = max(0, len(focuses) - MAX_FOCUSES)
    adapter = await runtime.adapters.get(location)
    patients: dict[str, Patient] = {}
    vanished: set[str] = set()  # appointments Halaxy answers not found for: deleted (or another clinic's)
    for kind, resource_id in focuses[:MAX_FOCUSES]:
        try:
            if kind == "Patient":
                patient_id = resource_id
            elif kind == "Appointment":
                try:
                    patient_id = (await adapter.get_appointment(resource_id)).patient_id
                except NotFound:
                    vanished.add(resource_id)
                    continue
            else:
                continue  # Invoice events: nothing a subscriber is told about
            if patient_id not in patients:
                patients[patient_id] = await adapter.get_patient(patient_id)
        except NotFound:
            continue  # a patient deleted since
    async with runtime.store.engine.connect() as conn:
        facts = await db.load_appointments(conn, location.id, vanished)  # another clinic's: none stored here
    affected = set(patients) | {fact.patient_id for fact in facts.values()}
    if not affected:
        return NotificationOutcome(accepted=False, reason="nothing this location holds changed", deferred=deferred)

    # What is stored of them is read before Halaxy lists theirs: an appointment stored after this is listed.
    async with runtime.store.engine.connect() as conn:
        stored = await db.load_patient_appointments(conn, location.id, affected)
    appointments: list[Appointment] = []
    for patient_id in sorted(affected):
        try:
            appointments += await adapter.list_appointments(AppointmentQuery(patient_id=patient_id))
        except NotFound:
            continue
    now = now_utc()
    removed = await _gone_since(adapter, location, stored, {a.id for a in appointments}, vanished, now)

    async def catalog() -> Catalog:
        return await runtime.catalogs.get(location.id, adapter)

    found = await detect(
        runtime.store,
        adapter,
        location,
        ChangeSet(patients=list(patients.values()), appointments=appointments + removed, cursor=""),
        catalog=catalog,
        now=now,
        resnapshot=frozenset(affected),
    )
    if found.events:
        wakeup.notify()
    return NotificationOutcome(accepted=True, events=len(found.events), deferred=deferred)


class HalaxyWebhooksController(Controller):
    """Authenticated by the Authentication Header configured on the location's webhooks in Halaxy, not a key."""

    path = "/halaxy/v1/webhooks/{location_id:str}"
    tags = ["halaxy"]

    @post(
        "/",
        responses=PROBLEMS,
        status_code=200,
        summary="A Halaxy Subscription notification: re-read, detect",
        before_request=_authenticate,
    )
    async def receive(self, request: Req, location_id: PathId, data: JSONBody[Notification]) -> NotificationOutcome:
        """The header named by the location's `webhook_header` setting (default `Authorization`) must carry its
        `webhook_secret`, as is or as `Bearer <secret>`; otherwise 401, before the body is decoded, and nothing is
        read or changed. At most 20 of the notification's focuses are re-read (`deferred` counts the rest, left for
        the poll); an appointment Halaxy deleted is announced as `appointment.cancelled`."""
        location: LocationRecord = getattr(request.state, LOCATION_KEY)
        return await _targeted_sync(runtime_of(request.app.state), location, data)
