"""Catalog entries: who can be booked, for what, where."""

from __future__ import annotations

from schemas.common import Out


class Practitioner(Out):
    id: str
    name: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    active: bool = True


class Service(Out):
    id: str
    name: str
    duration_minutes: int
    code: str | None = None
    category: str | None = None
    practitioner_ids: list[str] | None = None


class Location(Out):
    id: str
    name: str
    time_zone: str | None = None
    address: str | None = None


class PractitionerList(Out):
    items: list[Practitioner]


class ServiceList(Out):
    items: list[Service]


class LocationList(Out):
    items: list[Location]
