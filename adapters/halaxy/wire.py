"""Halaxy's own shapes on top of the shared FHIR Structs (adapters.fhir.wire).

Halaxy's Appointment is not plain R4B: it has no top-level `status` (the SDK's live test; the docs' schema lists
none) and keeps the patient's attendance in a participant `modifierExtension`, so it has its own Struct here. Its
webhook notification is a `history` Bundle whose body the docs print with a string `meta.profile` and a Reference
`topic`, so it is read leniently, for the focus references only.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from adapters.fhir import wire

TERMINOLOGY = "https://terminology.halaxy.com/StructureDefinition"
PARTICIPANT_STATUS_URL = f"{TERMINOLOGY}/appointment-participant-status"
PRESETS_STATUS_PATH = "/presets/CodeSystem/appointment-participant-status"


class Participant(wire.Element, kw_only=True):
    type: list[wire.CodeableConcept] = []
    actor: wire.Reference | None = None
    required: str | None = None
    status: str | None = None  # FHIR's participation status; Halaxy's docs do not list it
    extension: list[wire.Extension] = []
    modifierExtension: list[wire.Extension] = []

    def attendance(self) -> str | None:
        """The `appointment-participant-status` code ("booked", "cancelled", …), wherever Halaxy put it."""
        for ext in [*self.modifierExtension, *self.extension]:
            if ext.url == PARTICIPANT_STATUS_URL:
                coding = ext.valueCoding
                if coding is not None and coding.code:
                    return coding.code
                return ext.valueCode or ext.valueString
        return None


class Appointment(wire.Resource, kw_only=True, tag="Appointment"):
    status: str | None = None  # absent on Halaxy's reads; FHIR's when a server sends it
    description: str | None = None  # "The appointment comments" (reference/appointment)
    comment: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    minutesDuration: int | None = None
    created: datetime | None = None
    supportingInformation: list[wire.Reference] = []  # the HealthcareService (appointment type) used
    participant: list[Participant] = []

    def actor(self, resource_type: str) -> wire.Reference | None:
        return next((p.actor for p in self.participant if p.actor is not None and p.actor.is_a(resource_type)), None)

    def participant_of(self, resource_type: str) -> Participant | None:
        return next((p for p in self.participant if p.actor is not None and p.actor.is_a(resource_type)), None)

    def service_id(self) -> str | None:
        return next((r.id for r in self.supportingInformation if r.is_a("HealthcareService")), None)


class BookedAppointment(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="resourceType", tag="Appointment"):
    """`appt-resource` of `$book` (reference/createappointment): the times and the practitioner at the clinic."""

    status: str  # not in the docs' request schema, but FHIR requires it (Halaxy reads the `status` parameter)
    start: str
    end: str
    minutesDuration: int
    description: str | None = None
    participant: list[Participant]


# ---------------------------------------------------------------------------------------------- notifications


class NotificationReference(msgspec.Struct, kw_only=True):
    reference: str | None = None
    type: str | None = None


class NotificationEvent(msgspec.Struct, kw_only=True):
    eventNumber: str | int | None = None
    timestamp: str | None = None
    focus: NotificationReference | None = None


class SubscriptionStatus(msgspec.Struct, kw_only=True):
    resourceType: str | None = None
    type: str | None = None  # event-notification | heartbeat | handshake | …
    topic: NotificationReference | str | None = None
    notificationEvent: list[NotificationEvent] = []


class NotificationEntry(msgspec.Struct, kw_only=True):
    fullUrl: str | None = None
    resource: SubscriptionStatus | None = None


class Notification(msgspec.Struct, kw_only=True):
    """A Subscription notification (docs/webhooks): which resources changed, never what changed in them."""

    resourceType: str = "Bundle"
    type: str | None = None
    timestamp: str | None = None
    entry: list[NotificationEntry] = []

    def focuses(self) -> list[tuple[str, str]]:
        """(resource type, id) of every event's focus, in order, without repeats. A versioned reference
        (`…/Patient/5/_history/2`) names the resource (`Patient`, `5`), as `wire.Reference.id` reads it."""
        seen: list[tuple[str, str]] = []
        for entry in self.entry:
            status = entry.resource
            if status is None:
                continue
            for event in status.notificationEvent:
                focus = event.focus
                if focus is None or not focus.reference:
                    continue
                ref = wire.Reference(reference=focus.reference)
                parts = focus.reference.rstrip("/").split("/")
                if len(parts) >= 4 and parts[-2] == "_history":
                    parts = parts[:-2]
                kind = focus.type or (parts[-2] if len(parts) >= 2 else "")
                if ref.id and (kind, ref.id) not in seen:
                    seen.append((kind, ref.id))
        return seen
