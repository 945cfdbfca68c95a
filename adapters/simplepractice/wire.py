"""SimplePractice's JSON:API read shapes (`data`, `attributes`, `relationships`, `included`, `errors[]`).

Attribute names come from integrators' captures of the clinician web app (`secure.simplepractice.com/frontend`)
and of the client portal (notes §3.2 and §3.3). Unknown members are ignored, because the web app sends many more. Values
SimplePractice sends as strings (`"true"`, `"100.0"`) are accepted as strings or their JSON type. The write shapes,
which no capture confirms, live in `writes.py`.
"""

from __future__ import annotations

import datetime

import msgspec

JSONAPI = "application/vnd.api+json"

# ---------------------------------------------------------------------------------------------- envelope pieces


class Identifier(msgspec.Struct):
    """A resource identifier object: `{"type": …, "id": …}`."""

    type: str
    id: str


class ToOne(msgspec.Struct):
    data: Identifier | None = None


class Link(msgspec.Struct):
    """A JSON:API link object (`{"href": …}`), which the spec allows in place of a string."""

    href: str


class Links(msgspec.Struct, omit_defaults=True):
    """No capture shows `links` on `/frontend` lists (evidence-2026-11 §5.2): optional, followed when present."""

    next: str | Link | None = None


def href_of(link: str | Link | None) -> str | None:
    return link.href if isinstance(link, Link) else link


class ErrorSource(msgspec.Struct):
    pointer: str | None = None
    parameter: str | None = None


class ErrorObject(msgspec.Struct):
    status: str | None = None
    code: str | None = None
    title: str | None = None
    detail: str | None = None
    source: ErrorSource | None = None


class ErrorDocument(msgspec.Struct):
    errors: list[ErrorObject]


class Probe(msgspec.Struct):
    """Just enough of any body to tell a JSON:API document (`data` or `errors`) from anything else."""

    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    errors: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


def as_bool(value: bool | str | None) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


# ---------------------------------------------------------------------------------------------- appointments


class CptCodeLine(msgspec.Struct):
    """An appointment's billed service: `cptCodes[{code, description, ratePerUnit}]`."""

    code: str
    description: str | None = None
    ratePerUnit: str | float | None = None


class AppointmentAttributes(msgspec.Struct):
    """`appointments`, `nonClientAppointments` (breaks, blocks) and `externalAppointments` share one list."""

    startTime: datetime.datetime
    endTime: datetime.datetime | None = None
    duration: int | None = None
    attendanceStatus: str | None = None
    clinicianId: str | int | None = None
    officeId: str | int | None = None
    officeName: str | None = None
    title: str | None = None
    cptCodes: list[CptCodeLine] | None = None
    fullDay: bool | str | None = None
    cancelReason: str | None = None
    memo: str | None = None
    createdAt: datetime.datetime | None = None
    updatedAt: datetime.datetime | None = None


class AppointmentRelationships(msgspec.Struct):
    client: ToOne | None = None
    clinician: ToOne | None = None
    office: ToOne | None = None


class Appointment(msgspec.Struct):
    id: str
    type: str
    attributes: AppointmentAttributes
    relationships: AppointmentRelationships = msgspec.field(default_factory=AppointmentRelationships)


class AppointmentDocument(msgspec.Struct):
    data: Appointment


class WrittenRef(msgspec.Struct):
    """The least a write's answer must name: which record it wrote (to read it back when it is not the whole record)."""

    id: str
    type: str = ""


class WrittenRefDocument(msgspec.Struct):
    data: WrittenRef


class AppointmentListDocument(msgspec.Struct, omit_defaults=True):
    data: list[Appointment]
    links: Links | None = None


# ---------------------------------------------------------------------------------------------- clients


class ClientEmail(msgspec.Struct):
    email: str
    type: str | None = None


class ClientPhone(msgspec.Struct):
    number: str
    type: str | None = None


class ClientAttributes(msgspec.Struct):
    firstName: str
    lastName: str
    preferredName: str | None = None
    birthDate: datetime.date | None = None
    emails: list[ClientEmail] | None = None
    phones: list[ClientPhone] | None = None
    status: str | None = None
    createdAt: datetime.datetime | None = None
    updatedAt: datetime.datetime | None = None


class Client(msgspec.Struct):
    id: str
    type: str
    attributes: ClientAttributes


class ClientDocument(msgspec.Struct):
    data: Client


class ClientListDocument(msgspec.Struct, omit_defaults=True):
    data: list[Client]
    links: Links | None = None


# ---------------------------------------------------------------------------------------------- catalog


class TeamMemberAttributes(msgspec.Struct):
    firstName: str
    lastName: str
    email: str | None = None
    isClinician: bool | str | None = True
    active: bool | str | None = True


class TeamMember(msgspec.Struct):
    id: str
    type: str
    attributes: TeamMemberAttributes


class TeamMemberListDocument(msgspec.Struct, omit_defaults=True):
    data: list[TeamMember]
    links: Links | None = None


class OfficeAttributes(msgspec.Struct):
    name: str
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    phone: str | None = None
    isVideo: bool | str | None = False


class Office(msgspec.Struct):
    id: str
    type: str
    attributes: OfficeAttributes


class OfficeListDocument(msgspec.Struct, omit_defaults=True):
    data: list[Office]
    links: Links | None = None


class CptCodeAttributes(msgspec.Struct):
    description: str
    duration: int | str
    code: str | None = None  # the 5-digit code; the portal's samples lack it (UNCONFIRMED on the clinician API)
    rate: str | float | None = None
    callToBook: bool | str | None = False


class CptCode(msgspec.Struct):
    id: str
    type: str
    attributes: CptCodeAttributes


class CptCodeListDocument(msgspec.Struct, omit_defaults=True):
    data: list[CptCode]
    links: Links | None = None


# ---------------------------------------------------------------------------------------------- client-portal slots


class Spot(msgspec.Struct):
    start: datetime.datetime
    end: datetime.datetime | None = None


class SlotDayAttributes(msgspec.Struct):
    spots: list[Spot] = msgspec.field(default_factory=list)
    date: str | None = None


class SlotDay(msgspec.Struct):
    id: str
    type: str
    attributes: SlotDayAttributes


class SlotListDocument(msgspec.Struct):
    data: list[SlotDay]
