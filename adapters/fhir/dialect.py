"""Which dialect a FHIR server speaks and which capabilities it declares, read from its CapabilityStatement.

`EMRAdapter.capabilities` is a ClassVar (the support matrix is generated from it), so the `fhir` adapter class
declares the superset and each instance narrows it to what the server's `GET [base]/metadata` declares: no
`Patient` create interaction, no CREATE_PATIENT; no `_lastUpdated` search on Patient and Appointment, no
CHANGES_SINCE. The statement is read once per server and credentials and kept for `STATEMENT_TTL` seconds
process-wide, so adapters rebuilt per request answer `supports()` (which is synchronous) without a request; before
the first read, `supports()` answers the superset and the operation itself raises `Unsupported`.
"""

from __future__ import annotations

import enum
import threading
import time

import msgspec

from adapters.base import Capability
from adapters.fhir import wire

STATEMENT_TTL = 3600.0  # a server upgrade is noticed within the hour; `check()` always reads afresh


class Dialect(enum.StrEnum):
    IHE = "ihe"  # IHE ITI Scheduling: $find (ITI-115), $book (ITI-117), Appointment search (ITI-118)
    REST = "rest"  # plain REST: Schedule + Slot search, POST/PUT Appointment


class Declared(msgspec.Struct, frozen=True, kw_only=True):
    """What one server declares, in the adapter's terms."""

    dialect: Dialect
    capabilities: frozenset[Capability]
    searchable: frozenset[str]  # "Type.param" pairs the server declares
    readable: frozenset[str]  # resource types with a `read` interaction
    interactions: frozenset[str] = frozenset()  # "Type.code" pairs: `Appointment.history-type`, …

    def searches(self, resource_type: str, param: str) -> bool:
        return f"{resource_type}.{param}" in self.searchable

    def can(self, resource_type: str, interaction: str) -> bool:
        return f"{resource_type}.{interaction}" in self.interactions


def _searchable(statement: wire.CapabilityStatement) -> frozenset[str]:
    server = statement.server()
    if server is None:
        return frozenset()
    return frozenset(f"{r.type}.{p.name}" for r in server.resource for p in r.searchParam)


def declare(statement: wire.CapabilityStatement, forced: str = "auto", *, slots_enforced: bool = False) -> Declared:
    """The dialect (IHE when Appointment declares both `$find` and `$book`, unless the settings force one) and the
    capabilities the server's declared interactions, operations and search parameters allow.

    REST refuses a double booking when the server enforces Slots (`slots_enforced`), or else when Appointment is
    searchable by practitioner and date (the adapter checks before and after each booking); neither, and
    REJECTS_DOUBLE_BOOKING is not declared."""
    s = statement
    ihe_ops = s.operation("Appointment", "find") and s.operation("Appointment", "book")
    dialect = Dialect(forced) if forced != "auto" else (Dialect.IHE if ihe_ops else Dialect.REST)
    caps: set[Capability] = set()

    def searches(resource_type: str, *params: str) -> bool:
        return s.can(resource_type, "search-type") and all(s.searches(resource_type, p) for p in params)

    if s.can("Appointment", "read"):
        caps.add(Capability.GET_APPOINTMENT)
    if searches("Appointment", "patient", "date"):
        caps |= {Capability.LIST_APPOINTMENTS, Capability.RECONCILES_TIMED_OUT_CREATE}
    if dialect is Dialect.IHE:
        if s.operation("Appointment", "book") and s.can("Appointment", "read"):
            caps |= {
                Capability.BOOK,
                Capability.RESCHEDULE,
                Capability.CANCEL,
                Capability.REJECTS_DOUBLE_BOOKING,  # $book "determines if the nominated appointment is still available"
                Capability.CUSTOM_DURATION,
            }
        if s.operation("Appointment", "find"):
            caps |= {Capability.AVAILABILITY, Capability.NEXT_AVAILABILITY}
    else:
        slots = searches("Slot", "schedule", "start") and searches("Schedule", "actor")
        if slots:
            caps |= {Capability.AVAILABILITY, Capability.NEXT_AVAILABILITY}
        if slots and s.can("Appointment", "create"):
            caps |= {Capability.BOOK, Capability.CUSTOM_DURATION}
            if slots_enforced or searches("Appointment", "practitioner", "date"):
                caps.add(Capability.REJECTS_DOUBLE_BOOKING)
        if s.can("Appointment", "update") and s.can("Appointment", "read"):
            caps.add(Capability.CANCEL)
            if slots:
                caps.add(Capability.RESCHEDULE)
    if searches("Patient", "email") or searches("Patient", "telecom"):
        caps.add(Capability.FIND_PATIENT_BY_EMAIL)
    if searches("Patient", "phone") or searches("Patient", "telecom"):
        caps.add(Capability.FIND_PATIENT_BY_PHONE)
    if searches("Patient", "family", "given"):
        caps.add(Capability.FIND_PATIENT_BY_NAME)
    if s.can("Patient", "create"):
        caps.add(Capability.CREATE_PATIENT)
    if searches("Practitioner") and searches("HealthcareService") and s.can("Location", "read"):
        caps.add(Capability.CATALOG)
    if searches("Patient", "_lastUpdated") and searches("Appointment", "_lastUpdated"):
        caps.add(Capability.CHANGES_SINCE)
    server = s.server()
    readable = (
        frozenset(r.type for r in server.resource if any(i.code == "read" for i in r.interaction))
        if server
        else frozenset()
    )
    interactions = (
        frozenset(f"{r.type}.{i.code}" for r in server.resource for i in r.interaction) if server else frozenset()
    )
    return Declared(
        dialect=dialect,
        capabilities=frozenset(caps),
        searchable=_searchable(s),
        readable=readable,
        interactions=interactions,
    )


class StatementCache:
    """Declarations per server and credentials, shared by every adapter instance of the process."""

    def __init__(self, ttl: float = STATEMENT_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Declared, float]] = {}

    def get(self, key: str) -> Declared | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[1] <= time.monotonic():
                return None
            return hit[0]

    def put(self, key: str, declared: Declared) -> None:
        with self._lock:
            self._entries[key] = (declared, time.monotonic() + self.ttl)


STATEMENTS = StatementCache()
