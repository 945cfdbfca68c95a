"""A stand-in for Halaxy's FHIR API (`https://au-api.halaxy.com/main/`), built from developers.halaxy.com and the
laravel-halaxy SDK (its fixtures and its live integration tests). It is a witness, not an echo: it keeps its own
records and writes its own JSON, and imports nothing of the adapter's.

What it serves, under `/main`:
- `POST oauth/token`: a JSON body `{grant_type, client_id, client_secret}` → `{token_type, expires_in: 3600,
  access_token}` (docs/authentication). The same page says "Access tokens are valid for 15 minutes": tokens here
  stop working after `token_valid_seconds` (900) whatever `expires_in` says. A form body is refused (400).
- `metadata` (CapabilityStatement), `Organization`, `Practitioner`, `PractitionerRole` (with
  `_include=PractitionerRole:practitioner`), `HealthcareService`, `Patient` (search, read, create, merge-patch),
  `Appointment` (search, read, merge-patch), `Appointment/$find` and `Appointment/$book`.

Documented behaviour it reproduces:
- Ids carry Halaxy's prefixes (reference/organization, reference/practitionerrole): clinics `CL-…`, the practice
  group `PG-…`, practitioners and practitioner roles `PR-…` (a role is a practitioner at one clinic); patients,
  appointments and appointment types are numeric.
- Searches answer `Bundle` (`searchset`, `total`, `link[self|next]`; `_count` and `page`, the SDK fixture's
  `…?_count=50&page=2`); `_id` takes a comma list and `_lastUpdated` the prefixes the docs show (`gt`, `gte`, `lte`,
  and FHIR's `ge`, `le`, `lt`), docs/querying-resources. Query strings are decoded as forms, so a `+` that is not
  sent as `%2B` arrives as a space (docs/request-structure).
- `$book` takes a FHIR `Parameters` body (`appt-resource`, `patient-id`, `healthcare-service-id`, `location-type`,
  `status`; references as absolute URLs, reference/createappointment and the SDK's live lifecycle test) and answers
  `201` with the Appointment. `$find` answers a Bundle of proposed Appointments (start, end, minutesDuration, a
  `PractitionerRole` participant: what the SDK's live test reads), one per free start on the seed's step, none
  before now; `show=first-available` gives one.
- Group appointments (`$book`'s `appt-id` joins one, reference/createappointment): a group session nobody has
  joined yet has only its practitioner as participant (the front-desk control with `patient_id: null`).
- Webhook events "Appointment deleted" (the SDK's `AppointmentDeleted`): a deleted appointment is gone, a read is
  `404` and no search (`_lastUpdated` included) lists it; the control route
  `POST /_emulator/appointments/{id}/delete` deletes one as Halaxy's calendar does and notifies
  `appointment.delete`.
- Appointments carry no top-level `status` (the SDK's live test: "Halaxy appointments carry no top-level status";
  the docs' Appointment schema lists none): the patient's attendance is the participant's `modifierExtension`
  `https://terminology.halaxy.com/StructureDefinition/appointment-participant-status`, a Coding whose system is the
  region's `/presets/CodeSystem/appointment-participant-status`. This is not valid FHIR (`status` is 1..1);
  `status_field=True` renders a FHIR status beside it (and honours a `status` PATCH) for tests that need pure R4B.
- `PATCH` needs `Content-Type: application/merge-patch+json` (docs/request-structure; else 415). On an
  Appointment: `start`, `end`, `minutesDuration`, `description`, and `participant` entries matched by their actor
  (the SDK's cancel recipe sends only the patient's participant with the status extension and the rest stays):
  `cancelled (no charge)` is stored and read back as `cancelled`, as that test observed. A top-level `status` is
  ignored without `status_field`, as Halaxy ignores writes to read-only fields (the SDK saw `active` on Patient
  silently ignored). On a Patient: `name`, `telecom`, `gender`, `birthDate`, `address` (arrays replaced whole);
  `active` and `identifier` are ignored.
- A Patient needs a name; phones must be `+{country code}{number without spaces}` (reference/patient); e-mails are
  not unique (the SDK warns there is no reliable dedup). `identifier` is dropped on create (the SDK observed it).
- Appointment instants are answered in the clinic's zone with its offset (`…T09:00:00+11:00`, the SDK fixtures);
  `meta.lastUpdated` in UTC to the second.
- 500 requests a minute per client, a sliding window; `x-ratelimit-limit` and `x-ratelimit-remaining` on every
  OAuth-authenticated answer, `429` with `retry-after` (seconds) past it (docs/authentication). The token endpoint
  is not counted.
- Errors are `OperationOutcome`s (the SDK fixtures: `severity`, `code`, `details.text`, `diagnostics`): 400 for a
  malformed request, 401 for a missing, unknown or expired token, 404 `not-found`, 422 when the data breaks a rule
  (docs/errors-validation prints "442 Unprocessable Entity", read as 422).
- Webhooks are created in Halaxy's screens (Settings > Integrations > Webhooks: one endpoint URL per event, an
  optional "Authentication Header"), docs/webhooks; the SDK notes there is no API for them. The control route
  `POST /_emulator/webhooks` stands in for that screen. A change made in Halaxy's own screens (the `/_emulator`
  edit routes) is delivered as the documented notification Bundle (`type: history`, a `SubscriptionStatus` whose
  `notificationEvent[].focus` is the changed resource's absolute URL; the topic is an opaque uuid) with the
  configured header. The docs say events fire for changes "in Halaxy's front-end": API writes notify only with
  `notify_api_writes=True`. The documented body is not valid R4B either (`meta.profile` a string, `topic` a
  Reference, empty `contained`/`extension`/`modifierExtension` on a Bundle); it is sent as documented.

Choices where the evidence is silent (UNCONFIRMED):
- Whether `$book` refuses a time the practitioner already has booked: nothing says so (Halaxy's calendar lets staff
  double-book), so it books (`refuse_overlaps=True`: a 422 `conflict` OperationOutcome instead).
- `_count` defaults to 50 (the SDK fixture) and is capped at 100; searches without `_sort` list in creation order.
  Halaxy documents no order: `search_order="updated"` lists by last write instead (oldest first, as some FHIR servers
  that sort by version do), so an update between two `page=N` requests moves a record to the end and
  shifts the next one onto a page already read.
- `healthcare-service-id` is required on `$book`; `minutesDuration` must agree with `end - start`; a `description`
  in `appt-resource` is dropped (the request schema lists none; Halaxy drops a Patient's `identifier` the same way).
- The appointment type's duration extension URL: the docs name only its value (`valueQuantity`, minutes); here
  `https://terminology.halaxy.com/StructureDefinition/healthcare-service-duration`.
- A participant's FHIR `status` is `accepted` (the SDK fixtures), `declined` once cancelled.
- Webhook deliveries are sent once, `Content-Type: application/json`, after the change.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import itertools
import re
import secrets
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast
from urllib.parse import parse_qsl, urlencode

import httpx
import litestar
import msgspec
from litestar import Request, Response, post, route
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody

from adapters.emulation import (
    CONTROL_PREFIX,
    Emulator,
    EmulatorSeed,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Scope,
    SlidingWindowLimiter,
    Traffic,
    build_emulator_app,
)
from adapters.fhir.emulator import date_range
from adapters.fhir.emulator import outcome as fhir_outcome

UTC = datetime.UTC
FHIR_JSON = "application/fhir+json; charset=utf-8"
MERGE_PATCH = "application/merge-patch+json"
PREFIX = "/main"
TOKEN_PATH = "/main/oauth/token"  # noqa: S105 - a path, not a secret
CLIENT_KEY = "halaxy_client"
REMAINING_KEY = "halaxy_remaining"
TERMINOLOGY = "https://terminology.halaxy.com/StructureDefinition"
PARTICIPANT_STATUS_URL = f"{TERMINOLOGY}/appointment-participant-status"
DURATION_URL = f"{TERMINOLOGY}/healthcare-service-duration"
ONLINE_BOOKING_URL = f"{TERMINOLOGY}/healthcare-service-allow-online-booking"
MAX_PATIENTS_URL = f"{TERMINOLOGY}/healthcare-service-max-patients"
ATTENDER = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "ATND", "display": "attender"}
    ]
}
# Attendance codes the docs name ("attended" "booked" "confirmed" "cancelled"), plus the SDK's cancel recipe.
STORED_AS = {
    "booked": "booked",
    "confirmed": "confirmed",
    "attended": "attended",
    "cancelled": "cancelled",
    "cancelled (no charge)": "cancelled",
}
FHIR_STATUS = {"booked": "booked", "confirmed": "booked", "attended": "fulfilled", "cancelled": "cancelled"}
PHONE_RE = re.compile(r"^\+\d{6,15}$")
DEFAULT_COUNT = 50
MAX_COUNT = 100
_TOUCHES = itertools.count(1)
WEBHOOK_EVENTS = frozenset(
    {"patient.create", "patient.update", "appointment.create", "appointment.update", "appointment.delete"}
)


class ApiError(Exception):
    """Answered as an OperationOutcome (or, for the token endpoint, OAuth's `{"error": …}`)."""

    def __init__(self, status: int, body: dict[str, Any], headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def outcome(code: str, text: str, diagnostics: str | None = None) -> dict[str, Any]:
    """Halaxy's OperationOutcome: always a `details.text` (the SDK fixtures), `diagnostics` when there is more."""
    return fhir_outcome(code, text=text, diagnostics=diagnostics)


def fail(status: int, code: str, text: str, diagnostics: str | None = None) -> ApiError:
    return ApiError(status, outcome(code, text, diagnostics))


def not_found(what: str) -> ApiError:
    return fail(404, "not-found", "Resource not found", f"{what} not found")


def invalid(text: str, code: str = "invalid") -> ApiError:
    return fail(422, code, text)


def instant(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------- state


@dataclass
class ClinicRec:
    id: str
    name: str


@dataclass
class PractitionerRec:
    id: str
    first_name: str
    last_name: str
    email: str
    updated: datetime.datetime
    active: bool = True


@dataclass
class RoleRec:
    id: str
    practitioner_id: str
    clinic_id: str
    updated: datetime.datetime
    active: bool = True


@dataclass
class ServiceRec:
    id: str
    name: str
    minutes: int
    updated: datetime.datetime
    active: bool = True


@dataclass
class PatientRec:
    id: str
    names: list[dict[str, Any]]
    telecom: list[dict[str, Any]]
    created: datetime.datetime
    updated: datetime.datetime
    birth_date: str | None = None
    gender: str | None = None
    address: list[dict[str, Any]] = field(default_factory=list)
    version: int = 1
    touched: int = field(default_factory=lambda: next(_TOUCHES))  # the order of last writes, finer than a second

    @property
    def emails(self) -> list[str]:
        return [str(t.get("value", "")).lower() for t in self.telecom if t.get("system") == "email"]

    @property
    def phones(self) -> list[str]:
        return [str(t.get("value", "")) for t in self.telecom if t.get("system") in ("phone", "sms")]


@dataclass
class AppointmentRec:
    id: str
    role_id: str
    patient_id: str | None  # None: a group session nobody has joined (only its practitioner takes part)
    service_id: str
    start: datetime.datetime
    minutes: int
    attendance: str
    created: datetime.datetime
    updated: datetime.datetime
    location_type: str = "clinic"
    description: str | None = None
    version: int = 1
    touched: int = field(default_factory=lambda: next(_TOUCHES))

    @property
    def end(self) -> datetime.datetime:
        return self.start + datetime.timedelta(minutes=self.minutes)

    @property
    def live(self) -> bool:
        return self.attendance != "cancelled"

    def overlaps(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return self.live and self.start < end and self.end > start


@dataclass
class WebhookRec:
    """One webhook as created in Halaxy's screens: one event, one URL, an optional authentication header."""

    id: str
    url: str
    event: str
    header_name: str
    header_value: str | None
    topic: str
    events_sent: int = 0


class Delivery(msgspec.Struct, kw_only=True):
    """One webhook POST the emulator made (for tests)."""

    url: str
    event: str
    focus: str
    status: int | None


class WebhookConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Emulator control: Settings > Integrations > Webhooks > Create Webhook."""

    url: str
    event: str  # "patient.update", "appointment.create", …
    authentication_header: str | None = None  # the header's value, sent as configured
    header_name: str = "Authorization"


class PatientEdit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Emulator control: a receptionist editing a patient in Halaxy's screens."""

    given: str | None = None
    family: str | None = None
    email: str | None = None
    phone: str | None = None


class FrontDeskBooking(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Emulator control: an appointment booked in Halaxy's calendar; without a patient, a group session nobody has
    joined yet (its only participant is the practitioner)."""

    practitioner_role_id: str
    patient_id: str | None
    healthcare_service_id: str
    start: datetime.datetime


# ---------------------------------------------------------------------------------------------- the emulator


class HalaxyEmulator(Emulator):
    slug: ClassVar[str] = "halaxy"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        status_field: bool = False,
        refuse_overlaps: bool = False,
        notify_api_writes: bool = False,
        search_order: Literal["created", "updated"] = "created",
        token_valid_seconds: int = 900,
        rate_limit: int = 500,
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
    ) -> None:
        self.seed = seed
        self.status_field = status_field
        self.refuse_overlaps = refuse_overlaps
        self.notify_api_writes = notify_api_writes
        self.search_order = search_order
        self.token_valid_seconds = token_valid_seconds
        self.clock = clock
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.limiter = SlidingWindowLimiter(rate_limit, clock)
        self._lock = threading.RLock()
        self._numbers = itertools.count(1)
        self.client_id = f"halaxy-emulator-{secrets.token_hex(4)}"
        self.client_secret = secrets.token_urlsafe(24)
        self.webhook_secret = f"hx-hook-{secrets.token_hex(12)}"
        self.group_id = f"PG-{self._number(7)}"
        self.clinics: dict[str, ClinicRec] = {}
        self.practitioners: dict[str, PractitionerRec] = {}
        self.roles: dict[str, RoleRec] = {}
        self.services: dict[str, ServiceRec] = {}
        self.patients: dict[str, PatientRec] = {}
        self.appointments: dict[str, AppointmentRec] = {}
        self.webhooks: dict[str, WebhookRec] = {}
        self.tokens: dict[str, float] = {}  # token -> expires at
        self.token_requests = 0
        self.deliveries: list[Delivery] = []
        self.base_url = ""  # set from the first request: webhook focus URLs are absolute
        self._tasks: set[asyncio.Task[None]] = set()
        self._seed()

    # ------------------------------------------------------------------ plumbing

    @property
    def exchanges(self) -> list[Any]:
        return list(self.traffic.exchanges)

    def _number(self, digits: int) -> str:
        """Distinct ids of `digits` digits (Halaxy's are opaque numbers, some with a type prefix)."""
        return str(10 ** (digits - 1) + 7919 * next(self._numbers))[-digits:].rjust(digits, "1")

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0)

    def _bumped(self, previous: datetime.datetime) -> datetime.datetime:
        now = self._now()
        return now if now > previous else previous

    def _touch(self, rec: PatientRec | AppointmentRec) -> None:
        """A write: a new `meta.lastUpdated` (never earlier than the last) and a place at the end of the update
        order (`search_order="updated"`)."""
        rec.updated = self._bumped(rec.updated)
        rec.touched = next(_TOUCHES)

    def _seed(self) -> None:
        now = self._now()
        for business in self.seed.businesses:
            clinic = ClinicRec(f"CL-{self._number(7)}", business.name)
            self.clinics[clinic.id] = clinic
        for p in self.seed.practitioners:
            rec = PractitionerRec(f"PR-{self._number(7)}", p.first_name, p.last_name, p.email, now)
            self.practitioners[rec.id] = rec
            for clinic_id in self.clinics:
                role = RoleRec(f"PR-{self._number(7)}", rec.id, clinic_id, now)
                self.roles[role.id] = role
        for s in self.seed.services:
            service = ServiceRec(self._number(6), s.name, s.duration_minutes, now)
            self.services[service.id] = service
        for pt in self.seed.patients:
            telecom: list[dict[str, Any]] = []
            if pt.email:
                telecom.append({"system": "email", "value": pt.email, "use": "home"})
            if pt.phone:
                telecom.append({"system": "phone", "value": re.sub(r"[^\d+]", "", pt.phone), "use": "mobile"})
            rec_p = PatientRec(
                id=self._number(9),
                names=[{"use": "official", "family": pt.last_name, "given": [pt.first_name]}],
                telecom=telecom,
                created=now,
                updated=now,
                birth_date=pt.date_of_birth.isoformat() if pt.date_of_birth else None,
            )
            self.patients[rec_p.id] = rec_p

    def clinic_ids(self) -> list[str]:
        return list(self.clinics)

    def stats(self) -> EmulatorStats:
        with self._lock:
            total = len(self.appointments)
            active = sum(1 for a in self.appointments.values() if a.live)
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=total,
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        clinic_id = self.clinic_ids()[business_index]
        settings = {
            "base_url": base_url.rstrip("/") + PREFIX,
            "organization_id": clinic_id,
            "contact_email": "integrations@example.com",
        }
        credentials = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "webhook_secret": self.webhook_secret,
        }
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        return msgspec.json.encode({"client_id": self.client_id, "client_secret": "not-the-secret"})

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # ------------------------------------------------------------------ gate: bearer token, rate limit

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        if not path.startswith(PREFIX + "/") or path == TOKEN_PATH:
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
            if expires is not None and expires <= self.clock():
                del self.tokens[token]
                expires = None
        if expires is None:
            body = outcome("login", "Authentication Required", "The access token has expired or is no longer valid.")
            return RawResponse(401, msgspec.json.encode(body), FHIR_JSON)
        remaining, wait = self.limiter.hit(self.client_id)
        if wait is not None:
            return self._too_many(wait)
        scope[CLIENT_KEY] = self.client_id
        scope[REMAINING_KEY] = remaining
        return None

    def _limit_headers(self, remaining: int) -> list[tuple[str, str]]:
        return [("x-ratelimit-limit", str(self.limiter.limit)), ("x-ratelimit-remaining", str(remaining))]

    def _too_many(self, retry_after: int) -> RawResponse:
        body = outcome("throttled", "Too Many Requests")
        headers = [*self._limit_headers(0), ("retry-after", str(retry_after))]
        return RawResponse(429, msgspec.json.encode(body), FHIR_JSON, headers)

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return self._too_many(fault.retry_after)

    def _server_error(self, fault: Fault) -> RawResponse:
        code = "transient" if fault.status == 503 else "exception"
        return RawResponse(fault.status, msgspec.json.encode(outcome(code, "Service Unavailable")), FHIR_JSON)

    def _rejected_fault(self, fault: Fault) -> RawResponse:
        """A REJECT as Halaxy words a refusal: prose in `details.text` and `diagnostics`, which may name the
        patient (the fault's message)."""
        text = fault.message or "The request is invalid."
        status = fault.status if fault.status != 503 else 422
        return RawResponse(status, msgspec.json.encode(outcome("invalid", text, text)), FHIR_JSON)

    # ------------------------------------------------------------------ rendering

    def _ref(self, base: str, kind: str, rid: str, *, absolute: bool) -> dict[str, str]:
        """Halaxy writes some references as `/main/Type/id` (reference/appointment) and some absolute
        (reference/healthcareservice, reference/patient)."""
        return {"reference": f"{base}/{kind}/{rid}" if absolute else f"{PREFIX}/{kind}/{rid}", "type": kind}

    def _meta(self, updated: datetime.datetime, version: int = 1) -> dict[str, str]:
        return {"versionId": str(version), "lastUpdated": instant(updated)}

    def _local(self, moment: datetime.datetime) -> str:
        return moment.astimezone(self.zone).replace(microsecond=0).isoformat()

    def _attendance_coding(self, base: str, code: str) -> dict[str, Any]:
        return {
            "url": PARTICIPANT_STATUS_URL,
            "valueCoding": {
                "system": presets_system(base),
                "code": code,
                "display": code,
            },
        }

    def _appointment(self, base: str, a: AppointmentRec) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "Appointment", "id": a.id, "meta": self._meta(a.updated, a.version)}
        if self.status_field:
            body["status"] = FHIR_STATUS.get(a.attendance, "booked")
        if a.description:
            body["description"] = a.description
        body.update(
            {
                "start": self._local(a.start),
                "end": self._local(a.end),
                "minutesDuration": a.minutes,
                "created": self._local(a.created),
                "supportingInformation": [self._ref(base, "HealthcareService", a.service_id, absolute=False)],
                "participant": [
                    {
                        "type": [ATTENDER],
                        "actor": self._ref(base, "PractitionerRole", a.role_id, absolute=False),
                        "required": "required",
                        "status": "accepted",
                    },
                ],
            }
        )
        if a.patient_id is not None:
            body["participant"].append(
                {
                    "modifierExtension": [self._attendance_coding(base, a.attendance)],
                    "actor": self._ref(base, "Patient", a.patient_id, absolute=False),
                    "required": "required",
                    "status": "accepted" if a.live else "declined",
                }
            )
        return body

    def _proposed(self, role: RoleRec, start: datetime.datetime, minutes: int) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "Appointment"}
        if self.status_field:
            body["status"] = "proposed"
        body.update(
            {
                "start": self._local(start),
                "end": self._local(start + datetime.timedelta(minutes=minutes)),
                "minutesDuration": minutes,
                "participant": [
                    {
                        "type": [ATTENDER],
                        "actor": {"reference": f"{PREFIX}/PractitionerRole/{role.id}", "type": "PractitionerRole"},
                        "status": "needs-action",
                    }
                ],
            }
        )
        return body

    def _patient(self, p: PatientRec) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": "Patient",
            "id": p.id,
            "meta": self._meta(p.updated, p.version),
            "active": True,
            "name": p.names,
        }
        if p.telecom:
            body["telecom"] = p.telecom
        if p.gender:
            body["gender"] = p.gender
        if p.birth_date:
            body["birthDate"] = p.birth_date
        if p.address:
            body["address"] = p.address
        return body

    def _practitioner(self, p: PractitionerRec) -> dict[str, Any]:
        return {
            "resourceType": "Practitioner",
            "id": p.id,
            "meta": self._meta(p.updated),
            "identifier": [{"value": p.id.removeprefix("PR-")}],
            "active": p.active,
            "name": [{"use": "official", "family": p.last_name, "given": [p.first_name]}],
            "telecom": [{"system": "email", "value": p.email, "use": "work"}],
        }

    def _role(self, r: RoleRec) -> dict[str, Any]:
        return {
            "resourceType": "PractitionerRole",
            "id": r.id,
            "meta": self._meta(r.updated),
            "active": r.active,
            "practitioner": {"reference": f"{PREFIX}/Practitioner/{r.practitioner_id}", "type": "Practitioner"},
            "organization": {"reference": f"{PREFIX}/Organization/{r.clinic_id}", "type": "Organization"},
        }

    def _service(self, base: str, s: ServiceRec) -> dict[str, Any]:
        return {
            "resourceType": "HealthcareService",
            "id": s.id,
            "meta": self._meta(s.updated),
            "active": s.active,
            "providedBy": self._ref(base, "Organization", self.group_id, absolute=True),
            "name": s.name,
            "extension": [
                {
                    "url": DURATION_URL,
                    "valueQuantity": {
                        "value": s.minutes,
                        "unit": "minute",
                        "system": "http://unitsofmeasure.org",
                        "code": "min",
                    },
                },
                {"url": ONLINE_BOOKING_URL, "valueString": "Yes - any bookable appointment time"},
                {"url": MAX_PATIENTS_URL, "valueInteger": 1},
            ],
        }

    def _organization(self, rid: str, name: str, code: str) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": rid,
            "active": True,
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": code}]}],
            "name": name,
        }

    def _organizations(self) -> list[dict[str, Any]]:
        group = self._organization(self.group_id, "Demo Practice Group", "prov")
        return [group] + [
            {**self._organization(c.id, c.name, "prov"), "partOf": _relative("Organization", self.group_id)}
            for c in self.clinics.values()
        ]

    def _capabilities(self) -> dict[str, Any]:
        def resource(kind: str, *codes: str, operations: Iterable[str] = ()) -> dict[str, Any]:
            entry: dict[str, Any] = {"type": kind, "interaction": [{"code": c} for c in codes]}
            ops = [
                {"name": o, "definition": f"http://hl7.org/fhir/OperationDefinition/Appointment-{o}"}
                for o in operations
            ]
            if ops:
                entry["operation"] = ops
            return entry

        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2025-12-01",
            "kind": "instance",
            "fhirVersion": "4.3.0",
            "format": ["application/fhir+json"],
            "patchFormat": [MERGE_PATCH],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        resource("Appointment", "read", "search-type", "patch", operations=("find", "book")),
                        resource("HealthcareService", "read", "search-type"),
                        resource("Organization", "read", "search-type"),
                        resource("Patient", "read", "search-type", "create", "patch", "update"),
                        resource("Practitioner", "read", "search-type"),
                        resource("PractitionerRole", "read", "search-type"),
                    ],
                }
            ],
        }

    # ------------------------------------------------------------------ search plumbing

    def _bundle(
        self,
        base: str,
        path: str,
        params: list[tuple[str, str]],
        matches: Sequence[dict[str, Any]],
        included: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """One page of a searchset: `_count` (default 50, at most 100) and `page` (from 1), with `link[next]`."""
        count = _int_param(params, "_count", DEFAULT_COUNT, 1, MAX_COUNT)
        page = _int_param(params, "page", 1, 1, 1_000_000)
        chunk = list(matches[(page - 1) * count : page * count])
        kept = [(k, v) for k, v in params if k != "page"]

        def link(n: int) -> str:
            return f"{base}{path}?{urlencode([*kept, ('page', str(n))])}"

        links = [{"relation": "self", "url": link(page)}]
        if page * count < len(matches):
            links.append({"relation": "next", "url": link(page + 1)})
        entries = [_entry(base, r, "match") for r in chunk] + [_entry(base, r, "include") for r in included]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
        if _param(params, "_total") != "none":
            bundle["total"] = len(matches)
        bundle["link"] = links
        if entries:
            bundle["entry"] = entries
        return bundle

    def _updated_filter(self, params: list[tuple[str, str]]) -> Callable[[datetime.datetime], bool]:
        tests = [_date_test(v, "_lastUpdated") for k, v in params if k == "_lastUpdated"]
        return lambda moment: all(t(moment) for t in tests)

    # ------------------------------------------------------------------ reads

    def search_patients(self, params: list[tuple[str, str]]) -> list[PatientRec]:
        ids = _ids(params)
        updated = self._updated_filter(params)
        email = (_param(params, "email") or "").strip().lower()
        phone = _param(params, "phone")
        birthdate = _param(params, "birthdate")
        found = []
        for p in self.patients.values():
            if ids is not None and p.id not in ids:
                continue
            if email and email not in p.emails:
                continue
            if phone is not None and re.sub(r"[^\d+]", "", phone) not in p.phones:
                continue
            if birthdate is not None and p.birth_date != birthdate:
                continue
            if not all(
                _name_matches(p.names, k, v) for k, v in params if k.split(":")[0] in ("given", "family", "name")
            ):
                continue
            if updated(p.updated):
                found.append(p)
        return self._ordered(found)

    def _ordered(self, found: list[Any]) -> list[Any]:
        """An unsorted search's order: creation (the default), or the last write's (`search_order="updated"`)."""
        if self.search_order == "updated":
            return sorted(found, key=lambda r: r.touched)
        return found

    def search_appointments(self, params: list[tuple[str, str]]) -> list[AppointmentRec]:
        ids = _ids(params)
        updated = self._updated_filter(params)
        patient = _last_segment(_param(params, "patient"))
        roles = {_last_segment(r) for v in _all(params, "practitioner-role") for r in v.split(",")}
        dates = [_date_test(v, "date") for k, v in params if k == "date"]
        found = [
            a
            for a in self.appointments.values()
            if (ids is None or a.id in ids)
            and (patient is None or a.patient_id == patient)
            and (not roles or a.role_id in roles)
            and all(t(a.start) for t in dates)
            and updated(a.updated)
        ]
        found = self._ordered(found)
        sort = _param(params, "_sort")
        if sort in ("date", "-date", "start", "-start"):
            found.sort(key=lambda a: (a.start, a.id), reverse=sort.startswith("-"))
        return found

    def find(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """`$find`: free starts of `duration` minutes in [start, end) for the matching practitioner roles."""
        for name in ("start", "end", "duration"):
            if not _param(params, name):
                raise fail(400, "required", f"The parameter '{name}' is required.")
        start = _when(_param(params, "start") or "", "start", self.zone)
        end = _when(_param(params, "end") or "", "end", self.zone, end_of_day=True)
        try:
            minutes = int(_param(params, "duration") or "")
        except ValueError:
            raise fail(400, "invalid", "The parameter 'duration' must be a number of minutes.") from None
        if minutes <= 0 or end <= start:
            raise fail(400, "invalid", "The search range or duration is not valid.")
        wanted = {_last_segment(r) for v in _all(params, "practitioner-role") for r in v.split(",")}
        clinic = _last_segment(_param(params, "organization"))
        roles = [
            r
            for r in self.roles.values()
            if r.active and (not wanted or r.id in wanted) and (clinic is None or r.clinic_id == clinic)
        ]
        now = self._now()
        out: list[tuple[datetime.datetime, RoleRec]] = []
        step = datetime.timedelta(minutes=self.seed.slot_step_minutes)
        length = datetime.timedelta(minutes=minutes)
        day = start.astimezone(self.zone).date()
        while day <= end.astimezone(self.zone).date():
            if day.weekday() in self.seed.open_weekdays:
                opening = datetime.datetime.combine(day, datetime.time.fromisoformat(self.seed.open_from), self.zone)
                closing = datetime.datetime.combine(day, datetime.time.fromisoformat(self.seed.open_until), self.zone)
                for role in roles:
                    # A practitioner is one person: an appointment at any of their clinics takes the time.
                    busy = [
                        a
                        for a in self.appointments.values()
                        if self.roles[a.role_id].practitioner_id == role.practitioner_id
                    ]
                    slot = opening
                    while slot + length <= closing:
                        begin = slot.astimezone(UTC)
                        if (
                            start <= begin < end
                            and begin >= now
                            and not any(a.overlaps(begin, begin + length) for a in busy)
                        ):
                            out.append((begin, role))
                        slot += step
            day += datetime.timedelta(days=1)
        out.sort(key=lambda pair: (pair[0], pair[1].id), reverse=_param(params, "_sort") == "-start")
        if _param(params, "show") == "first-available":
            out = out[:1]
        return [self._proposed(role, begin, minutes) for begin, role in out]

    # ------------------------------------------------------------------ writes

    def book(self, body: dict[str, Any], path: str) -> AppointmentRec:
        if body.get("resourceType") != "Parameters" or not isinstance(body.get("parameter"), list):
            raise fail(400, "structure", "The request body must be a Parameters resource.")
        params = {p.get("name"): p for p in body["parameter"] if isinstance(p, dict)}
        if "appt-id" in params and "appt-resource" not in params:
            raise invalid("Adding a patient to a group appointment is not available here.", "not-supported")
        resource = params.get("appt-resource", {}).get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Appointment":
            raise invalid("The parameter 'appt-resource' must hold an Appointment.", "required")
        start, end = _instant_field(resource, "start"), _instant_field(resource, "end")
        minutes = _minutes(resource, start, end)
        role_id = next(
            (
                _last_segment(p.get("actor", {}).get("reference"))
                for p in resource.get("participant") or []
                if isinstance(p, dict) and "PractitionerRole/" in str(p.get("actor", {}).get("reference", ""))
            ),
            None,
        )
        patient_id = _reference_param(params, "patient-id", "Patient")
        service_id = _reference_param(params, "healthcare-service-id", "HealthcareService")
        attendance = STORED_AS.get(str(params.get("status", {}).get("valueCode") or "booked"))
        if attendance is None:
            raise invalid("The parameter 'status' is not a known appointment status.", "code-invalid")
        with self._lock:
            role = self.roles.get(role_id or "")
            if role is None or not role.active:
                raise invalid("The practitioner role was not found.", "not-found")
            if patient_id not in self.patients:
                raise invalid("The patient was not found.", "not-found")
            if service_id not in self.services or not self.services[service_id].active:
                raise invalid("The appointment type was not found.", "not-found")
            fault = self.faults.misstore("POST", path)
            if fault is not None:
                start, end = fault.misstored(start, end)
                minutes = int((end - start).total_seconds() // 60)
            self._check_overlap(role, start, end, None)
            now = self._now()
            rec = AppointmentRec(
                id=self._number(9),
                role_id=role.id,
                patient_id=patient_id,
                service_id=service_id,
                start=start,
                minutes=minutes,
                attendance=attendance,
                created=now,
                updated=now,
                location_type=str(params.get("location-type", {}).get("valueCode") or "clinic"),
            )
            self.appointments[rec.id] = rec
            return rec

    def _check_overlap(
        self, role: RoleRec, start: datetime.datetime, end: datetime.datetime, moving: AppointmentRec | None
    ) -> None:
        if not self.refuse_overlaps:
            return
        for other in self.appointments.values():
            if other is not moving and other.role_id == role.id and other.overlaps(start, end):
                raise invalid("The practitioner already has an appointment at this time.", "conflict")

    def patch_appointment(self, base: str, appointment_id: str, body: dict[str, Any], path: str) -> AppointmentRec:
        with self._lock:
            rec = self.appointments.get(appointment_id)
            if rec is None:
                raise not_found(f"Appointment/{appointment_id}")
            start, end = rec.start, rec.end
            moved = any(k in body for k in ("start", "end", "minutesDuration"))
            if moved:
                start = _instant_field(body, "start") if "start" in body else rec.start
                if "end" in body:
                    end = _instant_field(body, "end")
                elif "minutesDuration" in body:
                    end = start + datetime.timedelta(minutes=_positive_int(body["minutesDuration"]))
                else:
                    end = start + datetime.timedelta(minutes=rec.minutes)
                if "minutesDuration" in body:
                    _minutes({**body, "start": start, "end": end}, start, end)
                if end <= start:
                    raise invalid("The appointment must end after it starts.")
                fault = self.faults.misstore("PATCH", path)
                if fault is not None:
                    start, end = fault.misstored(start, end)
                self._check_overlap(self.roles[rec.role_id], start, end, rec)
            attendance = rec.attendance
            for participant in body.get("participant") or []:
                if not isinstance(participant, dict):
                    raise fail(400, "structure", "participant must be a list of objects")
                actor = _last_segment(str(participant.get("actor", {}).get("reference", "")))
                if actor not in (rec.patient_id, rec.role_id):
                    raise invalid("The participant is not part of this appointment.")
                for ext in participant.get("modifierExtension") or []:
                    if isinstance(ext, dict) and ext.get("url") == PARTICIPANT_STATUS_URL and actor == rec.patient_id:
                        code = str((ext.get("valueCoding") or {}).get("code", ""))
                        if code not in STORED_AS:
                            raise invalid("The appointment participant status is not known.", "code-invalid")
                        attendance = STORED_AS[code]
            if self.status_field and body.get("status") == "cancelled":
                attendance = "cancelled"
            if "description" in body:
                description = body["description"]
                rec.description = description if isinstance(description, str) else None
            if moved:
                rec.start, rec.minutes = start, int((end - start).total_seconds() // 60)
            rec.attendance = attendance
            self._touch(rec)
            rec.version += 1
            return rec

    def create_patient(self, body: dict[str, Any]) -> PatientRec:
        if body.get("resourceType") != "Patient":
            raise fail(400, "structure", "The request body must be a Patient resource.")
        names = _names(body.get("name"))
        telecom = _telecom(body.get("telecom", []))
        with self._lock:
            now = self._now()
            rec = PatientRec(
                id=self._number(9),
                names=names,
                telecom=telecom,
                created=now,
                updated=now,
                birth_date=_birth_date(body.get("birthDate")),
                gender=body.get("gender") if isinstance(body.get("gender"), str) else None,
                address=[a for a in body.get("address") or [] if isinstance(a, dict)],
            )
            self.patients[rec.id] = rec
            return rec

    def patch_patient(self, patient_id: str, body: dict[str, Any]) -> PatientRec:
        with self._lock:
            rec = self.patients.get(patient_id)
            if rec is None:
                raise not_found(f"Patient/{patient_id}")
            if "name" in body:
                rec.names = _names(body["name"])
            if "telecom" in body:
                rec.telecom = _telecom(body["telecom"] or [])
            if "birthDate" in body:
                rec.birth_date = _birth_date(body["birthDate"])
            if "gender" in body:
                rec.gender = body["gender"] if isinstance(body["gender"], str) else None
            if "address" in body:
                rec.address = [a for a in body["address"] or [] if isinstance(a, dict)]
            self._touch(rec)
            rec.version += 1
            return rec

    # ------------------------------------------------------------------ Halaxy's own screens (emulator control)

    def edit_patient(self, patient_id: str, edit: PatientEdit) -> PatientRec:
        with self._lock:
            rec = self.patients.get(patient_id)
            if rec is None:
                raise not_found(f"Patient/{patient_id}")
            name: dict[str, Any] = dict(rec.names[0]) if rec.names else {"use": "official"}
            if edit.given is not None:
                name["given"] = [edit.given]
            if edit.family is not None:
                name["family"] = edit.family
            rec.names = [name, *rec.names[1:]]
            for system, value in (("email", edit.email), ("phone", edit.phone)):
                if value is not None:
                    kept = [t for t in rec.telecom if t.get("system") != system]
                    rec.telecom = [
                        *kept,
                        {"system": system, "value": value, "use": "mobile" if system == "phone" else "home"},
                    ]
            self._touch(rec)
            rec.version += 1
            return rec

    def front_desk_book(self, booking: FrontDeskBooking) -> AppointmentRec:
        with self._lock:
            role = self.roles.get(booking.practitioner_role_id)
            service = self.services.get(booking.healthcare_service_id)
            if role is None or service is None or (booking.patient_id not in (None, *self.patients)):
                raise invalid("Unknown practitioner role, appointment type or patient.", "not-found")
            now = self._now()
            rec = AppointmentRec(
                id=self._number(9),
                role_id=role.id,
                patient_id=booking.patient_id,
                service_id=service.id,
                start=booking.start.astimezone(UTC),
                minutes=service.minutes,
                attendance="booked",
                created=now,
                updated=now,
            )
            self.appointments[rec.id] = rec
            return rec

    def front_desk_cancel(self, appointment_id: str) -> AppointmentRec:
        with self._lock:
            rec = self.appointments.get(appointment_id)
            if rec is None:
                raise not_found(f"Appointment/{appointment_id}")
            rec.attendance = "cancelled"
            self._touch(rec)
            rec.version += 1
            return rec

    def front_desk_delete(self, appointment_id: str) -> None:
        """An appointment deleted in Halaxy's calendar: gone, not cancelled (a read is 404, no search lists it)."""
        with self._lock:
            if self.appointments.pop(appointment_id, None) is None:
                raise not_found(f"Appointment/{appointment_id}")

    # ------------------------------------------------------------------ webhooks

    def add_webhook(self, config: WebhookConfig) -> WebhookRec:
        if config.event not in WEBHOOK_EVENTS:
            raise invalid("Unknown webhook event.", "code-invalid")
        rec = WebhookRec(
            id=str(uuid.uuid4()),
            url=config.url,
            event=config.event,
            header_name=config.header_name,
            header_value=config.authentication_header,
            topic=str(uuid.uuid5(uuid.NAMESPACE_URL, f"halaxy-topic:{config.event}")),
        )
        with self._lock:
            self.webhooks[rec.id] = rec
        return rec

    def _notify(self, event: str, kind: str, rid: str, *, from_api: bool = False) -> None:
        """Deliver `event` for `kind/rid` to each webhook created for it, after the response."""
        if from_api and not self.notify_api_writes:
            return
        with self._lock:
            targets = [w for w in self.webhooks.values() if w.event == event]
            for hook in targets:
                hook.events_sent += 1
            numbered = [(hook, hook.events_sent) for hook in targets]
        for hook, number in numbered:
            body = self.notification(hook, number, kind, rid)
            task = asyncio.get_running_loop().create_task(self._deliver(hook, event, body, f"{kind}/{rid}"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def notification(self, hook: WebhookRec, number: int, kind: str, rid: str) -> dict[str, Any]:
        """The documented notification (docs/webhooks; the SDK's `webhook-patient-created.json`), as sent."""
        stamp = self._now().isoformat()
        api = self.base_url or "https://au-api.halaxy.com" + PREFIX
        status_id = str(uuid.uuid4())
        return {
            "timestamp": stamp,
            "type": "history",
            "link": [],
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{status_id}",
                    "resource": {
                        "subscription": {"reference": f"{api}/Subscription/{hook.id}", "type": "Subscription"},
                        "topic": {"reference": f"{api}/SubscriptionTopic/{hook.topic}", "type": "SubscriptionTopic"},
                        "status": "active",
                        "type": "event-notification",
                        "eventsSinceSubscriptionStart": str(number - 1),
                        "notificationEvent": [
                            {
                                "eventNumber": str(number),
                                "timestamp": stamp,
                                "focus": {"reference": f"{api}/{kind}/{rid}", "type": kind},
                                "id": str(uuid.uuid4()),
                            }
                        ],
                        "id": status_id,
                        "meta": {
                            "profile": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                            "backport-subscription-status"
                        },
                        "resourceType": "SubscriptionStatus",
                    },
                }
            ],
            "contained": [],
            "extension": [],
            "modifierExtension": [],
            "id": str(uuid.uuid4()),
            "meta": {
                "profile": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
                "backport-subscription-notification",
                "security": [],
                "tag": [],
            },
            "resourceType": "Bundle",
        }

    async def _deliver(self, hook: WebhookRec, event: str, body: dict[str, Any], focus: str) -> None:
        headers = {"Content-Type": "application/json"}
        if hook.header_value is not None:
            headers[hook.header_name] = hook.header_value
        status: int | None = None
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(hook.url, content=msgspec.json.encode(body), headers=headers)
                status = response.status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.deliveries.append(Delivery(url=hook.url, event=event, focus=focus, status=status))

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(request: Request[Any, Any, Any], content: Any, status: int = 200) -> Response[bytes]:
            remaining = cast(dict[str, Any], request.scope).get(REMAINING_KEY)
            headers = dict(em._limit_headers(int(remaining))) if remaining is not None else {}
            return Response(msgspec.json.encode(content), status_code=status, media_type=FHIR_JSON, headers=headers)

        def learn(request: Request[Any, Any, Any]) -> str:
            """The API's base URL as clients reach it (webhook focus references are absolute)."""
            base = str(request.base_url).rstrip("/") + PREFIX
            em.base_url = em.base_url or base
            return base

        @route(PREFIX + "/{path:path}", http_method=["GET", "POST", "PATCH", "PUT", "DELETE"])
        async def api(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[bytes]:
            base = learn(request)
            params = parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)
            method = request.method
            parts = [p for p in path.split("/") if p]
            raw = await request.body()
            if parts == ["oauth", "token"] and method == "POST":
                return em._token(request, raw)
            kind = parts[0] if parts else ""
            if method == "GET":
                return reply(request, em._get(base, path, parts, params))
            if method == "POST" and parts == ["Appointment", "$book"]:
                rec = em.book(_json_body(request, raw), request.url.path)
                em._notify("appointment.create", "Appointment", rec.id, from_api=True)
                with em._lock:
                    return reply(request, em._appointment(base, rec), 201)
            if method == "POST" and parts == ["Patient"]:
                patient = em.create_patient(_json_body(request, raw))
                em._notify("patient.create", "Patient", patient.id, from_api=True)
                with em._lock:
                    return reply(request, em._patient(patient), 201)
            if method == "PATCH" and len(parts) == 2 and kind in ("Appointment", "Patient"):
                if (request.headers.get("content-type") or "").split(";")[0].strip().lower() != MERGE_PATCH:
                    raise fail(415, "not-supported", "PATCH requests must be application/merge-patch+json.")
                body = _json_body(request, raw, patch=True)
                with em._lock:
                    if kind == "Appointment":
                        appointment = em.patch_appointment(base, parts[1], body, request.url.path)
                        rendered = em._appointment(base, appointment)
                    else:
                        rendered = em._patient(em.patch_patient(parts[1], body))
                em._notify(f"{kind.lower()}.update", kind, parts[1], from_api=True)
                return reply(request, rendered)
            if kind in (
                "Appointment",
                "Patient",
                "Organization",
                "Practitioner",
                "PractitionerRole",
                "HealthcareService",
                "metadata",
            ):
                raise fail(405, "not-supported", f"{method} is not supported on this resource.")
            raise fail(404, "not-supported", "Unknown resource type.")

        @post(CONTROL_PREFIX + "/webhooks", status_code=201, sync_to_thread=False)
        def create_webhook(data: JSONBody[WebhookConfig]) -> dict[str, str]:
            """Emulator control: Settings > Integrations > Webhooks > Create Webhook."""
            return {"id": em.add_webhook(data).id}

        @post(CONTROL_PREFIX + "/tokens/revoke", status_code=204, sync_to_thread=False)
        def revoke() -> None:
            em.revoke_tokens()

        @post(CONTROL_PREFIX + "/patients/{patient_id:str}", status_code=204)
        async def edit_patient(
            request: Request[Any, Any, Any], patient_id: FromPath[str], data: JSONBody[PatientEdit]
        ) -> None:
            """Emulator control: a patient edited in Halaxy's screens."""
            learn(request)
            em.edit_patient(patient_id, data)
            em._notify("patient.update", "Patient", patient_id)

        @post(CONTROL_PREFIX + "/appointments", status_code=201)
        async def front_desk_book(request: Request[Any, Any, Any], data: JSONBody[FrontDeskBooking]) -> dict[str, str]:
            """Emulator control: an appointment booked in Halaxy's calendar."""
            learn(request)
            rec = em.front_desk_book(data)
            em._notify("appointment.create", "Appointment", rec.id)
            return {"id": rec.id}

        @post(CONTROL_PREFIX + "/appointments/{appointment_id:str}/cancel", status_code=204)
        async def front_desk_cancel(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> None:
            """Emulator control: an appointment cancelled in Halaxy's calendar."""
            learn(request)
            em.front_desk_cancel(appointment_id)
            em._notify("appointment.update", "Appointment", appointment_id)

        @post(CONTROL_PREFIX + "/appointments/{appointment_id:str}/delete", status_code=204)
        async def front_desk_delete(request: Request[Any, Any, Any], appointment_id: FromPath[str]) -> None:
            """Emulator control: an appointment deleted in Halaxy's calendar."""
            learn(request)
            em.front_desk_delete(appointment_id)
            em._notify("appointment.delete", "Appointment", appointment_id)

        def api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
            response = reply(request, exc.body, exc.status)
            for name, value in exc.headers:
                response.headers[name] = value
            return response

        def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                return reply(request, outcome("not-supported", "Unknown resource type."), 404)
            return reply(request, outcome("structure", "The request is invalid."), exc.status_code)

        handlers = [api, create_webhook, revoke, edit_patient, front_desk_book, front_desk_cancel, front_desk_delete]
        return build_emulator_app(
            self,
            handlers,
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            server_error=self._server_error,
            rejected=self._rejected_fault,
            gate=self._gate,
            exception_handlers={ApiError: api_error, HTTPException: http_error},
        )

    def _token(self, request: Request[Any, Any, Any], raw: bytes) -> Response[bytes]:
        """`POST /main/oauth/token` with a JSON body; OAuth's `{"error": …}` when refused."""

        def answer(content: dict[str, Any], status: int) -> Response[bytes]:
            return Response(msgspec.json.encode(content), status_code=status, media_type="application/json")

        with self._lock:
            self.token_requests += 1
        try:
            body = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            body = None
        if not isinstance(body, dict):
            return answer({"error": "invalid_request"}, 400)
        if body.get("grant_type") != "client_credentials":
            return answer({"error": "unsupported_grant_type"}, 400)
        client_id, client_secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        if not hmac.compare_digest(client_id.encode(), self.client_id.encode()) or not hmac.compare_digest(
            client_secret.encode(), self.client_secret.encode()
        ):
            return answer({"error": "invalid_client"}, 401)
        access = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[access] = self.clock() + self.token_valid_seconds
        return answer({"token_type": "Bearer", "expires_in": 3600, "access_token": access}, 200)

    def _get(self, base: str, path: str, parts: list[str], params: list[tuple[str, str]]) -> dict[str, Any]:
        with self._lock:
            if parts == ["metadata"]:
                return self._capabilities()
            if not parts:
                raise fail(404, "not-supported", "Unknown resource type.")
            kind = parts[0]
            if len(parts) == 2 and parts[1] == "$find" and kind == "Appointment":
                return self._bundle(base, path, params, self.find(params))
            if len(parts) == 2:
                return self._read(base, kind, parts[1])
            if len(parts) != 1:
                raise fail(404, "not-supported", "Unknown resource type.")
            resources = self._search(base, kind, params)
            included: list[dict[str, Any]] = []
            if kind == "PractitionerRole" and "PractitionerRole:practitioner" in _all(params, "_include"):
                wanted = {str(r["practitioner"]["reference"]).rsplit("/", 1)[-1] for r in resources}
                included = [self._practitioner(p) for p in self.practitioners.values() if p.id in wanted]
            return self._bundle(base, path, params, resources, included)

    def _read(self, base: str, kind: str, rid: str) -> dict[str, Any]:
        match kind:
            case "Appointment" if rid in self.appointments:
                return self._appointment(base, self.appointments[rid])
            case "Patient" if rid in self.patients:
                return self._patient(self.patients[rid])
            case "Practitioner" if rid in self.practitioners:
                return self._practitioner(self.practitioners[rid])
            case "PractitionerRole" if rid in self.roles:
                return self._role(self.roles[rid])
            case "HealthcareService" if rid in self.services:
                return self._service(base, self.services[rid])
            case "Organization":
                found = [o for o in self._organizations() if o["id"] == rid]
                if found:
                    return found[0]
            case "Appointment" | "Patient" | "Practitioner" | "PractitionerRole" | "HealthcareService":
                pass
            case _:
                raise fail(404, "not-supported", "Unknown resource type.")
        raise not_found(f"{kind}/{rid}")

    def _search(self, base: str, kind: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        ids = _ids(params)
        updated = self._updated_filter(params)
        match kind:
            case "Appointment":
                return [self._appointment(base, a) for a in self.search_appointments(params)]
            case "Patient":
                return [self._patient(p) for p in self.search_patients(params)]
            case "Practitioner":
                return [
                    self._practitioner(p)
                    for p in self.practitioners.values()
                    if (ids is None or p.id in ids) and updated(p.updated)
                ]
            case "PractitionerRole":
                clinic = _last_segment(_param(params, "organization"))
                practitioner = _last_segment(_param(params, "practitioner"))
                return [
                    self._role(r)
                    for r in self.roles.values()
                    if (ids is None or r.id in ids)
                    and (clinic is None or r.clinic_id == clinic)
                    and (practitioner is None or r.practitioner_id == practitioner)
                ]
            case "HealthcareService":
                return [self._service(base, s) for s in self.services.values() if ids is None or s.id in ids]
            case "Organization":
                return [o for o in self._organizations() if ids is None or o["id"] in ids]
        raise fail(404, "not-supported", "Unknown resource type.")


# ---------------------------------------------------------------------------------------------- helpers


def presets_system(base: str) -> str:
    """The attendance CodeSystem of a region: `…/main/` becomes `…/presets/` (the SDK's live cancel recipe)."""
    root = base[: -len(PREFIX)] if base.endswith(PREFIX) else base
    return f"{root}/presets/CodeSystem/appointment-participant-status"


def _relative(kind: str, rid: str) -> dict[str, str]:
    return {"reference": f"{PREFIX}/{kind}/{rid}", "type": kind}


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if "id" in resource:
        entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
    entry["resource"] = resource
    entry["search"] = {"mode": mode}
    return entry


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def _all(params: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in params if k == name]


def _ids(params: list[tuple[str, str]]) -> set[str] | None:
    values = _all(params, "_id")
    if not values:
        return None
    return {i.strip() for v in values for i in v.split(",") if i.strip()}


def _last_segment(reference: str | None) -> str | None:
    """`Patient/1`, `/main/Patient/1`, `https://…/main/Patient/1` and `1` all name patient 1."""
    if reference is None or not reference.strip():
        return None
    return reference.strip().rstrip("/").rsplit("/", 1)[-1]


def _int_param(params: list[tuple[str, str]], name: str, default: int, low: int, high: int) -> int:
    raw = _param(params, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise fail(400, "invalid", f"The parameter '{name}' must be a number.") from None
    return max(low, min(high, value))


_PREFIXES = ("gte", "lte", "ge", "le", "gt", "lt", "eq")


def _date_test(raw: str, name: str) -> Callable[[datetime.datetime], bool]:
    """A FHIR date comparison (`gt2025-01-01`, `ge…`, and the docs' `gte`/`lte`) of one instant. The value's range
    is FHIR's implicit one (`date_range`, shared with the FHIR emulator: a bare date is that day, a time its
    precision), a zone-less value read in UTC; the instant is inside it, or before or after it."""
    op = next((p for p in _PREFIXES if raw.startswith(p)), "eq")
    text = raw[len(op) :] if raw.startswith(op) else raw
    try:
        low, high = date_range(text, UTC)
    except ValueError:
        raise fail(400, "invalid", f"The parameter '{name}' is not a valid date.") from None
    match op:
        case "gt":
            return lambda m: m >= high
        case "ge" | "gte":
            return lambda m: m >= low
        case "lt":
            return lambda m: m < low
        case "le" | "lte":
            return lambda m: m < high
        case _:
            return lambda m: low <= m < high


def _when(raw: str, name: str, zone: zoneinfo.ZoneInfo, *, end_of_day: bool = False) -> datetime.datetime:
    """A `$find` bound: a date (the clinic's day; `end` includes it) or a date-time with an offset."""
    try:
        if len(raw) == 10:
            day = datetime.date.fromisoformat(raw)
            if end_of_day:
                day += datetime.timedelta(days=1)
            return datetime.datetime.combine(day, datetime.time(), zone).astimezone(UTC)
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise fail(400, "invalid", f"The parameter '{name}' is not a valid date.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _instant_field(body: dict[str, Any], name: str) -> datetime.datetime:
    """A FHIR instant: a date-time with seconds and an offset (or Z)."""
    raw = body.get(name)
    if isinstance(raw, datetime.datetime):
        return raw
    if not isinstance(raw, str):
        raise invalid(f"'{name}' is required.", "required")
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"'{name}' is not a valid date-time.") from None
    if moment.tzinfo is None:
        raise invalid(f"'{name}' needs a time zone offset.")
    return moment.astimezone(UTC)


def _positive_int(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
        raise invalid("'minutesDuration' must be a positive number of minutes.")
    return raw


def _minutes(body: dict[str, Any], start: datetime.datetime, end: datetime.datetime) -> int:
    if end <= start:
        raise invalid("The appointment must end after it starts.")
    span = (end - start).total_seconds() / 60
    if span != int(span):
        raise invalid("The appointment must last whole minutes.")
    if "minutesDuration" in body and _positive_int(body["minutesDuration"]) != int(span):
        raise invalid("'minutesDuration' does not match the start and end.")
    return int(span)


def _reference_param(params: dict[Any, Any], name: str, kind: str) -> str:
    value = params.get(name, {}).get("valueReference") if isinstance(params.get(name), dict) else None
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str) or f"{kind}/" not in reference:
        raise invalid(f"The parameter '{name}' must reference a {kind}.", "required")
    return _last_segment(reference) or ""


def _json_body(request: Request[Any, Any, Any], raw: bytes, *, patch: bool = False) -> dict[str, Any]:
    if not patch:
        content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type not in ("application/json", "application/fhir+json"):
            raise fail(415, "not-supported", "Halaxy API only supports application/fhir+json.")
    try:
        body = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        raise fail(400, "structure", "The request body is not valid JSON.")
    return body


def _names(raw: object) -> list[dict[str, Any]]:
    names = [n for n in raw if isinstance(n, dict)] if isinstance(raw, list) else []
    if not names or not (names[0].get("family") or names[0].get("given")):
        raise invalid("Patient.name is required.", "required")
    return names


def _telecom(raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise fail(400, "structure", "telecom must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise invalid("Each telecom needs a system and a value.")
        if item.get("system") in ("phone", "sms", "fax") and not PHONE_RE.match(item["value"]):
            raise invalid("Phone numbers must follow +{country code}{phone number without spaces}.")
        if item.get("system") == "email" and "@" not in item["value"]:
            raise invalid("The e-mail address is not valid.")
        out.append(dict(item))
    return out


def _birth_date(raw: object) -> str | None:
    if raw is None:
        return None
    try:
        return datetime.date.fromisoformat(str(raw)).isoformat()
    except ValueError:
        raise invalid("birthDate must be YYYY-MM-DD.") from None


def _name_matches(names: list[dict[str, Any]], key: str, value: str) -> bool:
    """`given`/`family`/`name`: starts with, case-insensitive; `:contains` anywhere; `:exact` exactly
    (docs/querying-resources)."""
    field_name, _, modifier = key.partition(":")
    parts: list[str] = []
    for n in names:
        if field_name in ("given", "name"):
            parts += [str(g) for g in n.get("given") or []]
        if field_name in ("family", "name"):
            parts.append(str(n.get("family") or ""))
    if modifier == "exact":
        return value in parts
    wanted = value.lower()
    if modifier == "contains":
        return any(wanted in p.lower() for p in parts)
    return any(p.lower().startswith(wanted) for p in parts)
