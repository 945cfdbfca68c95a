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
from gateway.errors import Unauthorized
from gateway.routes.docs import PROBLEMS, PathId
from gateway.routes.emr_webhooks import emr_location, same_secret
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord
from gateway.sync.targeted import Deletions, resync_patients
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
    location, credentials = await emr_location(
        runtime, location_id, slug=HalaxyAdapter.slug, name="Halaxy", credentials=HalaxyCredentials
    )
    return location, msgspec.json.decode(location.settings_json, type=HalaxySettings), credentials


def authentic(secret: str | None, presented: str | None) -> bool:
    """The configured value, as is or after `Bearer `, compared in constant time."""
    if presented is None:
        return False
    value = presented.strip()
    candidates = [value, value[7:].strip()] if value.lower().startswith("bearer ") else [value]
    return any(same_secret(secret, c) for c in candidates)


async def _authenticate(request: Req) -> None:
    """Runs before the body is decoded: an unauthenticated sender costs no JSON parsing and no EMR request."""
    runtime = runtime_of(request.app.state)
    location, settings, credentials = await _location(runtime, str(request.path_params["location_id"]))
    if not authentic(credentials.webhook_secret, request.headers.get(settings.webhook_header)):
        raise Unauthorized("the notification's authentication header is missing or wrong")
    setattr(request.state, LOCATION_KEY, location)


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
    found = await resync_patients(
        runtime, location, adapter, patients, deletions=Deletions(vanished=vanished, max_reads=MAX_FOCUSES)
    )
    if found is None:
        return NotificationOutcome(accepted=False, reason="nothing this location holds changed", deferred=deferred)
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
