"""Every write the adapter sends to SimplePractice, in one place. THESE SHAPES ARE UNVERIFIED.

SimplePractice documents no write endpoint, and no public capture shows the clinician web app creating, moving or
cancelling an appointment or creating a client (integrators drive the UI instead; notes §3.3). What follows is
built on JSON:API conventions with the attribute names the confirmed reads use (`startTime`, `endTime`,
`clinicianId`, `officeId`, `cptCodes[{code}]`, the `client` relationship, `attendanceStatus`, `cancelReason`).
When a real capture is available, this is the one file to change; the emulator accepts exactly these shapes.

- book:       POST  /appointments       {"data": {"type": "appointments", "attributes", "relationships": {"client"}}}
- reschedule: PATCH /appointments/{id}  {"data": {"type": "appointments", "id", "attributes": {startTime, endTime, …}}}
- cancel:     PATCH /appointments/{id}  {"data": {…, "attributes": {"attendanceStatus": "Canceled", "cancelReason"}}}
- new client: POST  /clients            {"data": {"type": "clients", "attributes": {firstName, lastName, emails, phones,
  birthDate, "status": "prospective"}}} (the web app's new-client form creates prospective clients)

Times go out in the location's zone with its offset (`2026-03-09T10:00:00-04:00`), as the reads return them.
`memo` carries the caller's notes and the gateway's operation marker (`[egw:<id>]`, adapters.markers); if a capture
shows notes live elsewhere (e.g. the `appointmentMemo` relationship the calendar names), the marker must move with
them, and the reads in wire.py/mapping.py must read it from there.
"""

from __future__ import annotations

import datetime

import msgspec
from msgspec import UNSET, UnsetType

from adapters.simplepractice.wire import ClientEmail, ClientPhone, Identifier, ToOne

APPOINTMENTS = "appointments"
CLIENTS = "clients"
CANCELED = "Canceled"  # the attendance status the web app's "Canceled" choice sets (UNCONFIRMED wire value)
NEW_CLIENT_STATUS = "prospective"


class WriteRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    body: msgspec.Struct


class CptCodeRef(msgspec.Struct):
    code: str


class AppointmentWriteAttributes(msgspec.Struct, omit_defaults=True):
    startTime: datetime.datetime | UnsetType = UNSET
    endTime: datetime.datetime | UnsetType = UNSET
    clinicianId: str | UnsetType = UNSET
    officeId: str | UnsetType = UNSET
    cptCodes: list[CptCodeRef] | UnsetType = UNSET
    memo: str | UnsetType = UNSET
    attendanceStatus: str | UnsetType = UNSET
    cancelReason: str | UnsetType = UNSET


class AppointmentWriteRelationships(msgspec.Struct):
    client: ToOne


class NewAppointmentResource(msgspec.Struct):
    attributes: AppointmentWriteAttributes
    relationships: AppointmentWriteRelationships
    type: str = APPOINTMENTS


class AppointmentUpdateResource(msgspec.Struct):
    id: str
    attributes: AppointmentWriteAttributes
    type: str = APPOINTMENTS


class NewAppointmentDocument(msgspec.Struct):
    data: NewAppointmentResource


class AppointmentUpdateDocument(msgspec.Struct):
    data: AppointmentUpdateResource


class NewClientAttributes(msgspec.Struct):
    firstName: str
    lastName: str
    emails: list[ClientEmail] = msgspec.field(default_factory=list)
    phones: list[ClientPhone] = msgspec.field(default_factory=list)
    birthDate: datetime.date | None = None
    status: str = NEW_CLIENT_STATUS


class NewClientResource(msgspec.Struct):
    attributes: NewClientAttributes
    type: str = CLIENTS


class NewClientDocument(msgspec.Struct):
    data: NewClientResource


def book(
    *,
    client_id: str,
    clinician_id: str,
    office_id: str,
    cpt_code: str,
    start: datetime.datetime,
    end: datetime.datetime,
    memo: str | None,
) -> WriteRequest:
    attributes = AppointmentWriteAttributes(
        startTime=start, endTime=end, clinicianId=clinician_id, officeId=office_id, cptCodes=[CptCodeRef(cpt_code)]
    )
    if memo is not None:
        attributes.memo = memo
    relationships = AppointmentWriteRelationships(client=ToOne(Identifier(type=CLIENTS, id=client_id)))
    return WriteRequest("POST", APPOINTMENTS, NewAppointmentDocument(NewAppointmentResource(attributes, relationships)))


def reschedule(
    appointment_id: str,
    *,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    clinician_id: str | None,
    memo: str | None,
) -> WriteRequest:
    attributes = AppointmentWriteAttributes()
    if start is not None and end is not None:
        attributes.startTime, attributes.endTime = start, end
    if clinician_id is not None:
        attributes.clinicianId = clinician_id
    if memo is not None:
        attributes.memo = memo
    return _update(appointment_id, attributes)


def cancel(appointment_id: str, *, reason: str) -> WriteRequest:
    return _update(appointment_id, AppointmentWriteAttributes(attendanceStatus=CANCELED, cancelReason=reason))


def _update(appointment_id: str, attributes: AppointmentWriteAttributes) -> WriteRequest:
    document = AppointmentUpdateDocument(AppointmentUpdateResource(id=appointment_id, attributes=attributes))
    return WriteRequest("PATCH", f"{APPOINTMENTS}/{appointment_id}", document)


def new_client(
    *,
    first_name: str,
    last_name: str,
    email: str | None,
    phone: str | None,
    birth_date: datetime.date | None,
) -> WriteRequest:
    attributes = NewClientAttributes(
        firstName=first_name,
        lastName=last_name,
        emails=[ClientEmail(email=email, type="home")] if email else [],
        phones=[ClientPhone(number=phone, type="mobile")] if phone else [],
        birthDate=birth_date,
    )
    return WriteRequest("POST", CLIENTS, NewClientDocument(NewClientResource(attributes)))
