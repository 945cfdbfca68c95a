"""FHIR R4 resources as msgspec Structs: only the elements the scheduling adapters read or write.

Every resource is tagged by `resourceType` (the class name), so an encoded resource carries it and a decoded one must
be what was asked for. Unknown elements are ignored on decode (servers add many); `omit_defaults` keeps absent
elements out of what we send (FHIR forbids `null` and empty arrays). Field names are FHIR's own (camelCase).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

EMPTY = msgspec.Raw(b"")


class Element(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A FHIR datatype (no `resourceType`)."""


class Coding(Element, kw_only=True):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(Element, kw_only=True):
    coding: list[Coding] = []
    text: str | None = None

    def code_in(self, system: str | None = None) -> str | None:
        return next((c.code for c in self.coding if c.code and (system is None or c.system == system)), None)


class Reference(Element, kw_only=True):
    reference: str | None = None
    type: str | None = None  # the target's resource type (Halaxy writes it beside absolute references)
    display: str | None = None

    @property
    def id(self) -> str | None:
        """The logical id of a relative (`Patient/123`) or absolute reference; None for contained (`#…`) or none."""
        if not self.reference or self.reference.startswith("#"):
            return None
        parts = self.reference.rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return parts[-1] if len(parts) >= 2 else None

    def is_a(self, resource_type: str) -> bool:
        return bool(self.reference) and f"{resource_type}/" in (self.reference or "")


class Quantity(Element, kw_only=True):
    value: float | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class Period(Element, kw_only=True):
    start: datetime | None = None
    end: datetime | None = None


class Extension(Element, kw_only=True):
    """Where vendors put what FHIR has no element for (Halaxy's service duration, online-booking flag)."""

    url: str
    valueString: str | None = None
    valueCode: str | None = None
    valueBoolean: bool | None = None
    valueInteger: int | None = None
    valueDecimal: float | None = None
    valueDuration: Quantity | None = None
    valueQuantity: Quantity | None = None
    valueCoding: Coding | None = None
    valueCodeableConcept: CodeableConcept | None = None
    valueReference: Reference | None = None
    valueDateTime: str | None = None
    extension: list[Extension] = []


class Identifier(Element, kw_only=True):
    system: str | None = None
    value: str | None = None


class HumanName(Element, kw_only=True):
    use: str | None = None
    text: str | None = None
    family: str | None = None
    given: list[str] = []
    prefix: list[str] = []


class ContactPoint(Element, kw_only=True):
    system: str | None = None  # phone | fax | email | pager | url | sms | other
    value: str | None = None
    use: str | None = None  # home | work | temp | old | mobile
    rank: int | None = None


class Address(Element, kw_only=True):
    use: str | None = None
    line: list[str] = []
    city: str | None = None
    state: str | None = None
    postalCode: str | None = None
    country: str | None = None


class Meta(Element, kw_only=True):
    versionId: str | None = None
    lastUpdated: datetime | None = None


class Resource(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="resourceType", tag=True):
    id: str | None = None
    meta: Meta | None = None
    extension: list[Extension] = []

    def extension_of(self, url: str) -> Extension | None:
        return next((e for e in self.extension if e.url == url), None)


# ---------------------------------------------------------------------------------------------- directory


class Organization(Resource, kw_only=True):
    active: bool | None = None
    name: str | None = None
    identifier: list[Identifier] = []
    telecom: list[ContactPoint] = []
    address: list[Address] = []
    partOf: Reference | None = None


class Location(Resource, kw_only=True):
    status: str | None = None  # active | suspended | inactive
    name: str | None = None
    address: Address | None = None
    managingOrganization: Reference | None = None
    telecom: list[ContactPoint] = []


class Practitioner(Resource, kw_only=True):
    active: bool | None = None
    name: list[HumanName] = []
    telecom: list[ContactPoint] = []
    identifier: list[Identifier] = []


class PractitionerRole(Resource, kw_only=True):
    active: bool | None = None
    practitioner: Reference | None = None
    organization: Reference | None = None
    location: list[Reference] = []
    healthcareService: list[Reference] = []
    code: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    telecom: list[ContactPoint] = []
    identifier: list[Identifier] = []


class HealthcareService(Resource, kw_only=True):
    active: bool | None = None
    providedBy: Reference | None = None
    category: list[CodeableConcept] = []
    type: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    location: list[Reference] = []
    name: str | None = None
    comment: str | None = None
    identifier: list[Identifier] = []


# ---------------------------------------------------------------------------------------------- people


class Patient(Resource, kw_only=True):
    active: bool | None = None
    identifier: list[Identifier] = []
    name: list[HumanName] = []
    telecom: list[ContactPoint] = []
    gender: str | None = None
    birthDate: str | None = None  # a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), so not `date`
    address: list[Address] = []
    managingOrganization: Reference | None = None


# ---------------------------------------------------------------------------------------------- scheduling


class Schedule(Resource, kw_only=True):
    active: bool | None = None
    serviceType: list[CodeableConcept] = []
    actor: list[Reference] = []
    planningHorizon: Period | None = None


class Slot(Resource, kw_only=True):
    schedule: Reference
    status: str  # busy | free | busy-unavailable | busy-tentative | entered-in-error
    start: datetime
    end: datetime
    serviceType: list[CodeableConcept] = []
    appointmentType: CodeableConcept | None = None


class AppointmentParticipant(Element, kw_only=True):
    type: list[CodeableConcept] = []
    actor: Reference | None = None
    required: str | None = None  # required | optional | information-only
    status: str  # accepted | declined | tentative | needs-action
    extension: list[Extension] = []


class Appointment(Resource, kw_only=True):
    identifier: list[Identifier] = []
    status: str
    cancelationReason: CodeableConcept | None = None
    serviceCategory: list[CodeableConcept] = []
    serviceType: list[CodeableConcept] = []
    specialty: list[CodeableConcept] = []
    appointmentType: CodeableConcept | None = None
    reasonCode: list[CodeableConcept] = []
    description: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    minutesDuration: int | None = None
    slot: list[Reference] = []
    created: datetime | None = None
    comment: str | None = None
    participant: list[AppointmentParticipant] = []
    requestedPeriod: list[Period] = []  # 1..* in the IHE ITI Appointment profile (ihe-sched-appt)

    def actor_of(self, resource_type: str) -> Reference | None:
        """The first participant that is a `resource_type` (Patient, Practitioner, PractitionerRole, Location)."""
        return next((p.actor for p in self.participant if p.actor is not None and p.actor.is_a(resource_type)), None)


# ---------------------------------------------------------------------------------------------- operations


class ParametersParameter(Element, kw_only=True):
    """One `Parameters.parameter`: a value[x] or a resource. `resource` is any of the Structs above (encoded by its
    own type); on decode it is left raw, for the caller to read as the resource it expects."""

    name: str
    valueString: str | None = None
    valueCode: str | None = None
    valueId: str | None = None
    valueBoolean: bool | None = None
    valueInteger: int | None = None
    valueDateTime: str | None = None
    valueInstant: str | None = None
    valueReference: Reference | None = None
    resource: msgspec.Raw = EMPTY  # empty when the parameter has a value[x] instead
    part: list[ParametersParameter] = []


class Parameters(Resource, kw_only=True):
    parameter: list[ParametersParameter] = []


def resource_parameter(name: str, resource: Resource) -> ParametersParameter:
    """A parameter carrying a whole resource (`appointment-resource`, Halaxy's `appt-resource`)."""
    return ParametersParameter(name=name, resource=msgspec.Raw(msgspec.json.encode(resource)))


class OperationOutcomeIssue(Element, kw_only=True):
    severity: str  # fatal | error | warning | information
    code: str  # an IssueType: invalid, conflict, not-found, throttled, security, …
    details: CodeableConcept | None = None
    diagnostics: str | None = None  # prose: may quote patient data, never shown or logged
    expression: list[str] = []


class OperationOutcome(Resource, kw_only=True):
    issue: list[OperationOutcomeIssue] = []


# ---------------------------------------------------------------------------------------------- bundles


class BundleLink(Element, kw_only=True):
    relation: str
    url: str


class BundleSearch(Element, kw_only=True):
    mode: str | None = None  # match | include | outcome


class BundleEntryRequest(Element, kw_only=True):
    method: str | None = None  # a history entry: POST | PUT | DELETE (http.html#history)
    url: str | None = None


class BundleEntryResponse(Element, kw_only=True):
    status: str | None = None
    lastModified: str | None = None  # left as text: only the `fhir` adapter's history read parses it


class BundleEntry(Element, kw_only=True):
    fullUrl: str | None = None
    resource: msgspec.Raw = EMPTY  # empty for a deleted entry (history bundles)
    search: BundleSearch | None = None
    request: BundleEntryRequest | None = None  # history bundles: the write that made this version
    response: BundleEntryResponse | None = None


class Bundle(Resource, kw_only=True):
    """A search set, an operation's answer, a history (Subscription notification). Entries stay raw: a page may mix
    matches with `_include`d resources and an OperationOutcome; `resources_of` reads the ones asked for."""

    type: str
    total: int | None = None
    link: list[BundleLink] = []
    entry: list[BundleEntry] = []

    def next_url(self) -> str | None:
        return next((link.url for link in self.link if link.relation == "next"), None)


class _Head(msgspec.Struct):
    resourceType: str = ""


_HEAD = msgspec.json.Decoder(_Head)


def resource_type_of(raw: msgspec.Raw) -> str:
    return _HEAD.decode(raw).resourceType


# ---------------------------------------------------------------------------------------------- capability statement


class CapabilityOperation(Element, kw_only=True):
    name: str
    definition: str | None = None


class CapabilityInteraction(Element, kw_only=True):
    code: str  # read | vread | update | patch | delete | history-instance | history-type | create | search-type


class CapabilitySearchParam(Element, kw_only=True):
    name: str
    type: str | None = None


class CapabilityResource(Element, kw_only=True):
    type: str
    interaction: list[CapabilityInteraction] = []
    searchParam: list[CapabilitySearchParam] = []
    operation: list[CapabilityOperation] = []


class CapabilityRest(Element, kw_only=True):
    mode: str  # server | client
    resource: list[CapabilityResource] = []
    operation: list[CapabilityOperation] = []
    interaction: list[CapabilityInteraction] = []


class CapabilityStatement(Resource, kw_only=True):
    status: str | None = None
    fhirVersion: str | None = None
    format: list[str] = []
    rest: list[CapabilityRest] = []

    def server(self) -> CapabilityRest | None:
        return next((r for r in self.rest if r.mode == "server"), None)

    def resource(self, resource_type: str) -> CapabilityResource | None:
        server = self.server()
        if server is None:
            return None
        return next((r for r in server.resource if r.type == resource_type), None)

    def can(self, resource_type: str, interaction: str) -> bool:
        found = self.resource(resource_type)
        return found is not None and any(i.code == interaction for i in found.interaction)

    def searches(self, resource_type: str, param: str) -> bool:
        """A search parameter is declared on the resource (`_lastUpdated` may also be declared at no resource: FHIR
        servers commonly support it everywhere without listing it, so callers probe before relying on it)."""
        found = self.resource(resource_type)
        return found is not None and any(p.name == param for p in found.searchParam)

    def operation(self, resource_type: str, name: str) -> bool:
        """`name` without `$`: declared on the resource or system-wide (some servers list `Appointment/$find` under
        rest.operation with a definition naming the resource)."""
        wanted = name.lstrip("$")
        found = self.resource(resource_type)
        if found is not None and any(o.name.lstrip("$") == wanted for o in found.operation):
            return True
        server = self.server()
        return server is not None and any(
            o.name.lstrip("$") == wanted and resource_type.lower() in (o.definition or "").lower()
            for o in server.operation
        )
