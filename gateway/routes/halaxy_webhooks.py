"""Halaxy's Subscription notifications, per location: check the configured authentication header, re-read, detect.

In Halaxy (Settings > Integrations > Webhooks > Create Webhook) the practice creates one webhook per event — Patient
create/update, Appointment create/update/delete — each with the endpoint URL `<gateway>/halaxy/v1/webhooks/<location
id>` and, as its "Authentication Header", the location's `webhook_secret` credential (sent as the header the
location's `webhook_header` setting names, `Authorization` by default; `Bearer <secret>` is accepted too, as the
laravel-halaxy SDK does). Halaxy signs nothing: that header is the only proof (docs/webhooks).

A notification is a `history` Bundle naming the changed resource (`notificationEvent[].focus`), never what changed in
it (the topic is an opaque uuid). The gateway re-reads the patient (for an appointment, the appointment and then its
patient) and runs the change detector on them (a targeted sync), so subscribers hear of the change now rather than
at the next poll. A missing or wrong header is 401 and changes nothing; an EMR failure while re-reading is 503, so
the notification can be sent again. The docs say events fire for changes made in Halaxy's own screens: the
gateway's writes are announced by the gateway itself, and polling (`changes_since`) still catches whatever a lost
notification missed. Whether Halaxy retries a failed delivery is not documented.
"""

from __future__ import annotations

import hmac
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
from gateway.errors import NotFoundError, Unauthorized
from gateway.routes.docs import PROBLEMS, PathId
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord
from gateway.sync.detector import detect
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery
from schemas.patients import Patient

Req = Request[Any, Any, State]


class NotificationOutcome(msgspec.Struct, kw_only=True):
    accepted: bool
    events: int = 0
    reason: str | None = None


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


async def _targeted_sync(runtime: Runtime, location: LocationRecord, notification: Notification) -> NotificationOutcome:
    focuses = notification.focuses()
    if not focuses:
        return NotificationOutcome(accepted=False, reason="no resource named in the notification")
    adapter = await runtime.adapters.get(location)
    patients: dict[str, Patient] = {}
    for kind, resource_id in focuses:
        try:
            if kind == "Patient":
                patient_id = resource_id
            elif kind == "Appointment":
                patient_id = (await adapter.get_appointment(resource_id)).patient_id
            else:
                continue  # Invoice events: nothing a subscriber is told about
            if patient_id not in patients:
                patients[patient_id] = await adapter.get_patient(patient_id)
        except NotFound:
            continue  # deleted since, or another clinic's appointment
    if not patients:
        return NotificationOutcome(accepted=False, reason="nothing this location holds changed")

    async def catalog() -> Catalog:
        return await runtime.catalogs.get(location.id, adapter)

    appointments = []
    for patient_id in patients:
        appointments += await adapter.list_appointments(AppointmentQuery(patient_id=patient_id))
    found = await detect(
        runtime.store,
        adapter,
        location,
        ChangeSet(patients=list(patients.values()), appointments=appointments, cursor=""),
        catalog=catalog,
        now=now_utc(),
        resnapshot=frozenset(patients),
    )
    if found.events:
        wakeup.notify()
    return NotificationOutcome(accepted=True, events=len(found.events))


class HalaxyWebhooksController(Controller):
    """Authenticated by the Authentication Header configured on the location's webhooks in Halaxy, not a key."""

    path = "/halaxy/v1/webhooks/{location_id:str}"
    tags = ["halaxy"]

    @post("/", responses=PROBLEMS, status_code=200, summary="A Halaxy Subscription notification: re-read, detect")
    async def receive(self, request: Req, location_id: PathId, data: JSONBody[Notification]) -> NotificationOutcome:
        """The header named by the location's `webhook_header` setting (default `Authorization`) must carry its
        `webhook_secret`, as is or as `Bearer <secret>`; otherwise 401 and nothing is read or changed."""
        runtime = runtime_of(request.app.state)
        location, settings, credentials = await _location(runtime, location_id)
        if not authentic(credentials.webhook_secret, request.headers.get(settings.webhook_header)):
            raise Unauthorized("the notification's authentication header is missing or wrong")
        return await _targeted_sync(runtime, location, data)
