"""Nookal v2 wire shapes. Ids, numbers and flags arrive as strings (or numbers, or null), so fields are loose and
mapping.py normalises them; times are clinic-local wall-clock strings with no offset."""

from __future__ import annotations

import msgspec

Loose = str | int | None
Flag = str | int | bool | None


class _Wire(msgspec.Struct, kw_only=True):
    """Decoding only: unknown fields are ignored (Nookal adds fields freely)."""


class PageSettings(_Wire):
    currentPage: Loose = None
    nextPage: Loose = None
    pageLength: Loose = None


class Envelope(_Wire):
    """Every answer: `status` is "success" or "failure" whatever the HTTP status."""

    status: str
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    details: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    settings: PageSettings | None = None


class Failure(_Wire):
    errorMessage: str | None = None
    errorCode: Loose = None
    alerts: list[str] | str | None = None


class Data(_Wire):
    api_call: str | None = None
    results: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class Location(_Wire):
    ID: Loose
    Name: str | None = None
    AddressLine1: str | None = None
    AddressLine2: str | None = None
    AddressLine3: str | None = None
    City: str | None = None
    State: str | None = None
    Country: str | None = None
    Postcode: Loose = None
    Timezone: str | None = None


class Practitioner(_Wire):
    ID: Loose
    FirstName: str | None = None
    LastName: str | None = None
    Title: str | None = None
    Email: str | None = None
    locations: list[Loose] | str | None = None
    status: Loose = None


class Service(_Wire):
    ID: Loose
    Name: str | None = None
    Description: str | None = None
    Duration: Loose = None  # minutes (N-3L adds it as minutes)
    Locations: list[Loose] | str | None = None


class Appointment(_Wire):
    ID: Loose
    patientID: Loose = None
    appointmentDate: str | None = None
    appointmentStartTime: str | None = None
    appointmentEndTime: str | None = None
    locationID: Loose = None
    appointmentType: str | None = None
    appointmentTypeID: Loose = None
    practitionerID: Loose = None
    arrived: Flag = None
    DNA: Flag = None
    cancelled: Flag = None
    cancellationDate: str | None = None
    Notes: str | None = None
    dateCreated: str | None = None
    lastModified: str | None = None
    status: str | None = None


class Patient(_Wire):
    ID: Loose
    FirstName: str | None = None
    LastName: str | None = None
    DOB: str | None = None
    Email: str | None = None
    Mobile: str | None = None
    Home: str | None = None
    Work: str | None = None
    LocationID: Loose = None
    DateCreated: str | None = None
    DateModified: str | None = None


class Locations(_Wire):
    locations: list[Location] = msgspec.field(default_factory=list)


class Practitioners(_Wire):
    practitioners: list[Practitioner] = msgspec.field(default_factory=list)


class Services(_Wire):
    services: list[Service] = msgspec.field(default_factory=list)


class Appointments(_Wire):
    appointments: list[Appointment] = msgspec.field(default_factory=list)


class Patients(_Wire):
    patients: list[Patient] = msgspec.field(default_factory=list)


class Booked(_Wire):
    """addAppointmentBooking (N-SDK `Booking.php`); rebookAppointment's answer is UNCONFIRMED, read the same way."""

    appointment_id: Loose = None


class PatientCreated(_Wire):
    patient_id: Loose = None


class Availabilities(_Wire):
    """The inner shape of `availabilities` is UNCONFIRMED: kept raw and read by mapping.free_cells."""

    date_from: str | None = None
    date_to: str | None = None
    location_id: Loose = None
    practitioner_id: Loose = None
    availabilities: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class Verified(_Wire):
    verify: Flag = None


class Nothing(_Wire):
    """A write whose answer we do not read (cancelAppointment's body is UNCONFIRMED)."""
