"""A stand-in for a FHIR R4 (4.0.1) server that schedules, in two dialects, built from the published documents only.

It is a witness for the `fhir` adapter, not an echo of it: it keeps its own JSON records and never imports the
adapter's wire Structs. Sources: the FHIR R4 specification (http.html, search.html, operations.html, the Appointment,
Slot, Schedule and OperationOutcome pages) and the IHE ITI Scheduling IG 1.0.1 (ITI-115 to ITI-118, the
OperationDefinitions `appointment-find`, `appointment-hold`, `appointment-book`).

Dialects (constructor `dialect`):
- "ihe": the CapabilityStatement declares `$find`, `$hold` and `$book` on Appointment (with the IG's canonical
  OperationDefinition URLs); Appointment is read and searched (ITI-118) but not created or updated through REST, as
  the IG's server CapabilityStatement lists only `read` and `search-type`. Schedule and Slot are not exposed.
- "rest": no operations; Schedule and Slot are searchable, and Appointment is created (`POST`) and updated (`PUT`).

Switches that model real servers (constructor):
- `slots_enforced` ("rest", default True): a scheduling server keeping `Slot.status` and refusing an Appointment
  into a busy Slot. False is a plain R4 store (HAPI): every Slot stays `free` and any Appointment is stored, so two
  bookings of one time both land. `location_config` states it as the `fhir` setting of the same name.
- `book_changes` ("ihe", default "ig"): how `$book` treats an `appointment-resource` naming an existing appointment:
  as the IG says, as a new booking whatever its id ("as-new"), or as a modification that stays booked whatever
  status it asks for ("ignore-status").
- `history` (default: "rest" yes, "ihe" no, as the IG's server statement lists only read and search): Appointment
  declares `history-type` and `history-instance`, and `[type]/_history` / `[type]/[id]/_history` answer (below).
- `undeclared`: "Type.param" search parameters left out of the CapabilityStatement and then ignored like any
  unknown parameter (a 400 under `Prefer: handling=strict`).
What the clinic does in its own screens (not FHIR; Python methods): `set_status`, `store` (any record as given: an
appointment without times or without a Location), `edit`, `delete`; and test hooks (`on_request`) that run one of
them just before or after a given request (a staff cancel between the adapter's read and its PUT).

What both serve under `/fhir/R4` (Medplum's base path): `metadata` (public), read, vread of the current version,
search by GET and by `POST [type]/_search`, and create/update where the dialect declares them, for Organization,
Location, Practitioner, PractitionerRole, HealthcareService, Patient and Appointment (plus Schedule, Slot in "rest").

Documented behaviour it reproduces:
- Searches answer a `searchset` Bundle with `total`, `link[self]` (the parameters it applied) and `link[next]` /
  `link[previous]`; `_count` (default 20, at most 1000: Medplum's documented defaults) and `_offset` page.
  Parameters are ANDed when repeated and ORed when comma-separated; an unknown parameter is ignored (http.html:
  servers SHOULD ignore them) unless `Prefer: handling=strict`, which makes it a 400. Date parameters take the
  `eq ne gt lt ge le` prefixes with implicit ranges by precision; a value without an offset is read in the server's
  zone. Strings match case- and accent-insensitively at the start (`:exact`, `:contains` as specified).
- Writes answer the stored resource (201 + `Location` on create) unless `Prefer: return=minimal`; `meta.versionId`
  and `meta.lastUpdated` move on every change; `If-Match` on `PUT` is honoured (412 on another version).
- `_lastUpdated` compares the stamp as an instant (`ge` includes a record stamped at that very instant).
- Deleted records (http.html#delete): a read answers 410 `deleted`, searches leave them out, vread of an earlier
  version still answers; history (http.html#history) is newest first, each version with `request` (POST, PUT) and
  `response` (etag, lastModified), a delete as an entry without a resource and `request` `DELETE [type]/[id]`;
  `_since` (an instant), `_count` and `_offset` apply.
- Errors are OperationOutcomes: 400 for an unreadable or invalid body (`structure`, `invalid`, `required`), 404
  `not-found` for an unknown id, 404 `not-supported` for an unknown type, 405 for an interaction not declared, 406 /
  415 for formats other than JSON, 401 `login` without a valid bearer token, 429 `throttled` with `Retry-After`.
- `$find` (ITI-115), by GET or POST: `start` and `end` (1..1), `practitioner`, `location-reference`, `visit-type`
  (`system|code` of a HealthcareService type), `patient-reference`, `_count`: a searchset of *proposed*
  Appointments (IHE profile, `requestedPeriod` set) that fit entirely in [start, end], earliest first, with a
  `total`; held appointments are not proposed.
- `$hold` (ITI-116): `appointment-reference` to a proposal; a Bundle with the appointment `pending`, held for
  `hold_minutes`; an appointment no longer available is an OperationOutcome `fatal` / `not-found` (as the IG says).
- `$book` (ITI-117): `appointment-reference` (a proposal or a held appointment) or `appointment-resource` with
  `status` `pending` (a new booking, answered `booked`), `booked` (a modification of an existing one) or `cancelled`
  (a cancellation). The answer is a Bundle holding the one Appointment; a failure is a Bundle holding only an
  OperationOutcome (as the IG says).
- Double bookings: `$book` and `$hold` check the practitioner's calendar. Opening hours and the planning horizon
  shape what `$find` proposes (and the Slots of "rest"); `$book` takes any future time at which the practitioner
  is free and works at the location, as a clinic's own screens do. In "rest", Slots are the practitioner's
  free/busy time in `slot_step_minutes` steps; with `slots_enforced` (the default) an Appointment that references a
  Slot that is not free is refused (a scheduling server keeping Slot.status right; the core spec lets a slot be
  overbooked, a server may refuse).

Choices where the documents are silent (UNCONFIRMED against any live server):
- A taken slot is HTTP 409 with an OperationOutcome `error` / `conflict` (Medplum's `$book` answers `conflict()`);
  the IG fixes the Bundle shape of a failed `$book`, not its status.
- HealthcareService has no duration in R4: the server keeps each service's length to itself and uses it to size
  `$find` proposals; a `$find` without `visit-type` proposes visits of the shortest service.
- Token endpoint `/oauth2/token` (OAuth2 client credentials, form body or HTTP Basic, RFC 6749 §4.4); tokens last
  `token_lifetime` seconds. A static bearer token (`static_token`) is accepted too, as servers issue API keys.
- Rate limits as Medplum documents its free tier: 6,000 requests per minute per IP on the FHIR API, 60 on the token
  endpoint; a 429 carries `Retry-After` and the RFC draft `RateLimit` header.
- Instants are answered in UTC with milliseconds (`…T00:45:00.000Z`), as Medplum does; written ones must carry an
  offset (FHIR: a dateTime with a time SHALL have a zone).
- Email searches match case-insensitively; phone searches match the stored value exactly (token semantics).
- Location carries the `http://hl7.org/fhir/StructureDefinition/timezone` extension (IANA code).
- MISSTORE faults apply where `$book`, `$hold`, `POST Appointment` or `PUT Appointment` store a time; REJECT faults
  answer an OperationOutcome whose `diagnostics` quote the fault's message.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import datetime
import hmac
import math
import re
import secrets
import threading
import time
import unicodedata
import urllib.parse
import uuid
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import litestar
import msgspec
from litestar import Request, Response, post, route
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from adapters.emulation import (
    CONTROL_PREFIX,
    Emulator,
    EmulatorSeed,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Scope,
    Traffic,
    WindowLimiter,
    build_emulator_app,
)

UTC = datetime.UTC
BASE = "/fhir/R4"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a secret)
FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON = "application/json"
FHIR_VERSION = "4.0.1"

IHE = "https://profiles.ihe.net/ITI/Scheduling"
IHE_APPOINTMENT = f"{IHE}/StructureDefinition/ihe-sched-appt"
IHE_BUNDLE = f"{IHE}/StructureDefinition/ihe-sched-avail-bundle"
OPERATIONS = {
    "find": f"{IHE}/OperationDefinition/appointment-find",
    "hold": f"{IHE}/OperationDefinition/appointment-hold",
    "book": f"{IHE}/OperationDefinition/appointment-book",
}
VISIT_TYPES = "http://example.org/fhir/CodeSystem/visit-type"
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

DEFAULT_COUNT = 20
MAX_COUNT = 1000
MAX_PROPOSALS = 5000  # proposals remembered for `$hold`/`$book` by reference
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
DATE_RE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
SEARCH_DATE_RE = re.compile(
    r"^(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?"
    r"(?P<value>\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?)$"
)

ACTIVE_STATUSES = frozenset({"pending", "booked", "arrived", "fulfilled", "checked-in"})
APPOINTMENT_STATUSES = frozenset(
    {
        "proposed",
        "pending",
        "booked",
        "arrived",
        "fulfilled",
        "cancelled",
        "noshow",
        "entered-in-error",
        "checked-in",
        "waitlist",
    }
)
PARTICIPANT_STATUSES = frozenset({"accepted", "declined", "tentative", "needs-action"})
TELECOM_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})

Dialect = Literal["ihe", "rest"]
# How `$book` treats an `appointment-resource` that names an existing appointment: as the IG says ("ig"), as a new
# booking whatever its id ("as-new": a server implementing only new bookings and cancellations), or as a
# modification that keeps the appointment booked whatever status it asks for ("ignore-status").
BookChanges = Literal["ig", "as-new", "ignore-status"]
Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------- errors


def outcome(
    code: str,
    *,
    severity: str = "error",
    text: str | None = None,
    diagnostics: str | None = None,
    expression: str | None = None,
) -> Json:
    """An OperationOutcome of one issue (this emulator's and Halaxy's): `details.text` when given (Halaxy always
    writes one), `diagnostics` and `expression` when there are any."""
    issue: Json = {"severity": severity, "code": code}
    if text:
        issue["details"] = {"text": text}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FhirError(Exception):
    """Short-circuits a handler with an OperationOutcome (wrapped in a Bundle for the IHE operations)."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str | None = None,
        *,
        expression: str | None = None,
        severity: str = "error",
    ) -> None:
        super().__init__(code)
        self.status = status
        self.outcome = outcome(code, severity=severity, diagnostics=diagnostics, expression=expression)


def invalid(diagnostics: str, expression: str | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, code, diagnostics, expression=expression)


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")


def taken() -> FhirError:
    return FhirError(409, "conflict", "The requested time is no longer available")


# ---------------------------------------------------------------------------------------------- time


def utc_text(moment: datetime.datetime) -> str:
    """An instant as this server answers it: UTC, milliseconds, `Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_instant(value: object, expression: str) -> datetime.datetime:
    """A written dateTime with a time: it SHALL have a zone (FHIR datatypes)."""
    if not isinstance(value, str) or not INSTANT_RE.match(value):
        raise invalid(f"{expression} must be a dateTime with seconds and a time zone", expression)
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{expression} is not a valid dateTime", expression) from None


def date_range(text: str, zone: datetime.tzinfo) -> tuple[datetime.datetime, datetime.datetime]:
    """The implicit range of a date/dateTime search value (search.html#date), naive ones in the server's zone."""
    if len(text) <= 10:
        parts = [int(p) for p in text.split("-")]
        if len(parts) == 1:
            lo = datetime.datetime(parts[0], 1, 1, tzinfo=zone)
            return lo, lo.replace(year=parts[0] + 1)
        if len(parts) == 2:
            lo = datetime.datetime(parts[0], parts[1], 1, tzinfo=zone)
            nxt = lo.replace(year=lo.year + 1, month=1) if lo.month == 12 else lo.replace(month=lo.month + 1)
            return lo, nxt
        lo = datetime.datetime(parts[0], parts[1], parts[2], tzinfo=zone)
        return lo, (lo + datetime.timedelta(days=1)).replace(tzinfo=zone)
    body, _, _ = text.partition("T")
    clock = text[len(body) + 1 :]
    tz_match = re.search(r"(Z|[+-]\d{2}:\d{2})$", clock)
    naive_clock = clock[: tz_match.start()] if tz_match else clock
    moment = datetime.datetime.fromisoformat(f"{body}T{naive_clock}")
    if tz_match:
        offset = tz_match.group(1)
        moment = datetime.datetime.fromisoformat(f"{body}T{naive_clock}{'+00:00' if offset == 'Z' else offset}")
    else:
        moment = moment.replace(tzinfo=zone)
    if naive_clock.count(":") == 1:
        width = datetime.timedelta(minutes=1)
    elif "." in naive_clock:
        digits = len(naive_clock.rpartition(".")[2])
        width = datetime.timedelta(microseconds=10 ** max(0, 6 - min(digits, 6)))
    else:
        width = datetime.timedelta(seconds=1)
    return moment, moment + width


# ---------------------------------------------------------------------------------------------- records


@dataclass
class Stored:
    """One resource: its current JSON (without `meta`), version and stamp, and every earlier version for vread."""

    resource: Json
    version: int
    last_updated: datetime.datetime
    history: list[tuple[int, Json, datetime.datetime]] = field(default_factory=list)


@dataclass
class Proposal:
    resource: Json
    practitioner_id: str
    location_id: str
    service_id: str | None
    start: datetime.datetime
    end: datetime.datetime


@dataclass
class Hook:
    """A test hook (not FHIR): `action` runs once, before (or `after`) the first request `matches` accepts, inside
    the server, as something the clinic does in its own screens at that moment (a cancel between a read and a
    write, an edit between two pages of a search). `matches` gets the method, the path under the base and the
    query pairs."""

    matches: Callable[[str, str, list[tuple[str, str]]], bool]
    action: Callable[[], None]
    after: bool = False


@dataclass
class Query:
    """A parsed search: parameters as (name, modifier, value) in order, plus paging."""

    params: list[tuple[str, str | None, str]]
    count: int
    offset: int
    sort: list[str]
    applied: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- search parameters

Extract = Callable[[Json], list[Any]]


@dataclass(frozen=True)
class Param:
    kind: str  # token | reference | date | string
    extract: Extract
    fold: bool = False  # tokens: compare codes case-insensitively


def _coding_pairs(concepts: Iterable[Json]) -> list[tuple[str | None, str]]:
    return [(c.get("system"), c["code"]) for cc in concepts for c in cc.get("coding", []) if c.get("code")]


def _telecom(system: str) -> Extract:
    return lambda r: [(None, t["value"]) for t in r.get("telecom", []) if t.get("system") == system and "value" in t]


def _names(r: Json) -> list[str]:
    out: list[str] = []
    for name in r.get("name", []):
        out += [*name.get("given", []), *([name["family"]] if "family" in name else [])]
        if "text" in name:
            out.append(name["text"])
    return out


def _refs(path: str) -> Extract:
    def get(r: Json) -> list[str]:
        value = r.get(path)
        items = value if isinstance(value, list) else [value] if value else []
        return [i["reference"] for i in items if isinstance(i, dict) and "reference" in i]

    return get


def _actors(kind: str | None) -> Extract:
    def get(r: Json) -> list[str]:
        refs = [p["actor"]["reference"] for p in r.get("participant", []) if "reference" in p.get("actor", {})]
        return [ref for ref in refs if kind is None or ref.startswith(f"{kind}/")]

    return get


def _instant_of(name: str) -> Extract:
    return lambda r: [datetime.datetime.fromisoformat(r[name].replace("Z", "+00:00"))] if name in r else []


def _code(name: str) -> Extract:
    return lambda r: [(None, str(r[name]).lower())] if name in r else []


SEARCH: dict[str, dict[str, Param]] = {
    "Organization": {"name": Param("string", lambda r: [r["name"]] if "name" in r else [])},
    "Location": {
        "name": Param("string", lambda r: [r["name"]] if "name" in r else []),
        "organization": Param("reference", _refs("managingOrganization")),
        "status": Param("token", _code("status")),
    },
    "Practitioner": {
        "name": Param("string", _names),
        "family": Param("string", lambda r: [n["family"] for n in r.get("name", []) if "family" in n]),
        "given": Param("string", lambda r: [g for n in r.get("name", []) for g in n.get("given", [])]),
        "email": Param("token", _telecom("email"), fold=True),
        "active": Param("token", _code("active")),
    },
    "PractitionerRole": {
        "practitioner": Param("reference", _refs("practitioner")),
        "location": Param("reference", _refs("location")),
        "service": Param("reference", _refs("healthcareService")),
        "organization": Param("reference", _refs("organization")),
        "active": Param("token", _code("active")),
    },
    "HealthcareService": {
        "location": Param("reference", _refs("location")),
        "organization": Param("reference", _refs("providedBy")),
        "service-type": Param("token", lambda r: _coding_pairs(r.get("type", []))),
        "active": Param("token", _code("active")),
        "name": Param("string", lambda r: [r["name"]] if "name" in r else []),
    },
    "Patient": {
        "name": Param("string", _names),
        "family": Param("string", lambda r: [n["family"] for n in r.get("name", []) if "family" in n]),
        "given": Param("string", lambda r: [g for n in r.get("name", []) for g in n.get("given", [])]),
        "email": Param("token", _telecom("email"), fold=True),
        "phone": Param("token", _telecom("phone")),
        "birthdate": Param("date", lambda r: [r["birthDate"]] if "birthDate" in r else []),
        "identifier": Param("token", lambda r: [(i.get("system"), i["value"]) for i in r.get("identifier", [])]),
    },
    "Appointment": {
        "patient": Param("reference", _actors("Patient")),
        "practitioner": Param("reference", _actors("Practitioner")),
        "location": Param("reference", _actors("Location")),
        "actor": Param("reference", _actors(None)),
        "date": Param("date", _instant_of("start")),
        "status": Param("token", _code("status")),
        "identifier": Param("token", lambda r: [(i.get("system"), i["value"]) for i in r.get("identifier", [])]),
    },
    "Schedule": {
        "actor": Param("reference", _refs("actor")),
        "active": Param("token", _code("active")),
    },
    "Slot": {
        "schedule": Param("reference", _refs("schedule")),
        "status": Param("token", _code("status")),
        "start": Param("date", _instant_of("start")),
    },
}
SORTS: dict[str, dict[str, Callable[[Json], Any]]] = {
    "Appointment": {"date": lambda r: r.get("start", "")},
    "Slot": {"start": lambda r: r.get("start", "")},
    "Patient": {"family": lambda r: (r.get("name") or [{}])[0].get("family", "")},
}
RESULT_PARAMS = frozenset({"_count", "_offset", "_sort", "_format", "_pretty", "_summary", "_elements", "_total"})


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _reference_matches(wanted: str, refs: list[str], target: str | None) -> bool:
    """`Type/id`, a bare id (the parameter's one target type) or an absolute URL ending in `Type/id`."""
    parts = wanted.rstrip("/").split("/")
    if len(parts) >= 2:
        key = f"{parts[-2]}/{parts[-1]}"
        return key in refs
    return any(r.rsplit("/", 1)[-1] == wanted and (target is None or r.startswith(f"{target}/")) for r in refs)


# ---------------------------------------------------------------------------------------------- the emulator


class FhirEmulator(Emulator):
    slug: ClassVar[str] = "fhir"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        dialect: Dialect = "ihe",
        client_id: str | None = None,
        client_secret: str | None = None,
        static_token: str | None = None,
        token_lifetime: int = 3600,
        patient_create: bool = True,
        last_updated_search: bool = True,
        slots_enforced: bool = True,
        book_changes: BookChanges = "ig",
        history: bool | None = None,
        undeclared: Iterable[str] = (),
        hold_minutes: int = 10,
        horizon_days: int = 56,
        rate_limit_per_minute: int = 6000,
        token_rate_limit_per_minute: int = 60,
        rate_limit_window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
    ) -> None:
        self.seed = seed
        self.dialect: Dialect = dialect
        # Each emulator is its own account: fresh credentials, so a client's caches never mix two emulators.
        self.client_id = client_id or f"egw-{dialect}-{secrets.token_hex(4)}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.static_token = static_token or f"static-{secrets.token_urlsafe(24)}"
        self.token_lifetime = token_lifetime
        self.patient_create = patient_create
        self.last_updated_search = last_updated_search
        self.slots_enforced = slots_enforced
        self.book_changes: BookChanges = book_changes
        self.history = dialect == "rest" if history is None else history
        self.undeclared = frozenset(undeclared)
        self.hold_minutes = hold_minutes
        self.horizon_days = horizon_days
        self.clock = clock
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.limiter = WindowLimiter(rate_limit_per_minute, clock, rate_limit_window_seconds)
        self.token_limiter = WindowLimiter(token_rate_limit_per_minute, clock, rate_limit_window_seconds)
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.token_requests = 0
        self._lock = threading.RLock()
        self.db: dict[str, dict[str, Stored]] = {t: {} for t in SEARCH}
        # Deleted resources: the last live version (history kept), the delete's version and its instant.
        self.deleted: dict[str, dict[str, tuple[Stored, int, datetime.datetime]]] = {t: {} for t in SEARCH}
        self.hooks: list[Hook] = []
        self.durations: dict[str, int] = {}  # HealthcareService id -> minutes (the server's own business rule)
        self.holds: dict[str, datetime.datetime] = {}  # held Appointment id -> expiry
        self.proposals: collections.OrderedDict[str, Proposal] = collections.OrderedDict()
        self.organization_id = ""
        self.location_ids: list[str] = []
        self._last_stamp = datetime.datetime.fromtimestamp(0, UTC)
        self._seed()

    # ------------------------------------------------------------------ plumbing

    @property
    def exchanges(self) -> list[Any]:
        return list(self.traffic.exchanges)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), UTC)

    def _stamp(self) -> datetime.datetime:
        """`meta.lastUpdated`: milliseconds, strictly increasing, so every change moves it."""
        now = self._now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if now <= self._last_stamp:
            now = self._last_stamp + datetime.timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    def _put(self, resource_type: str, resource: Json, resource_id: str | None = None) -> Stored:
        resource_id = resource_id or str(uuid.uuid4())
        body = {k: v for k, v in resource.items() if k not in ("meta", "id", "resourceType")}
        body = {"resourceType": resource_type, "id": resource_id, **body}
        existing = self.db[resource_type].get(resource_id)
        stamp = self._stamp()
        if existing is None:
            stored = Stored(body, 1, stamp)
            self.db[resource_type][resource_id] = stored
            return stored
        existing.history.append((existing.version, existing.resource, existing.last_updated))
        existing.resource, existing.version, existing.last_updated = body, existing.version + 1, stamp
        return existing

    def _seed(self) -> None:
        org = self._put("Organization", {"active": True, "name": self.seed.businesses[0].name})
        self.organization_id = org.resource["id"]
        for business in self.seed.businesses:
            location = self._put(
                "Location",
                {
                    "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": self.seed.time_zone}],
                    "status": "active",
                    "name": business.name,
                    "address": {"line": ["1 Example Street"], "city": "Melbourne", "state": "VIC", "country": "AU"},
                    "managingOrganization": {"reference": f"Organization/{self.organization_id}"},
                },
            )
            self.location_ids.append(location.resource["id"])
        service_ids = []
        for n, service in enumerate(self.seed.services):
            code = service.code or f"S{n + 1}"
            hs = self._put(
                "HealthcareService",
                {
                    "active": True,
                    "providedBy": {"reference": f"Organization/{self.organization_id}"},
                    "type": [{"coding": [{"system": VISIT_TYPES, "code": code, "display": service.name}]}],
                    "location": [{"reference": f"Location/{lid}"} for lid in self.location_ids],
                    "name": service.name,
                },
            )
            self.durations[hs.resource["id"]] = service.duration_minutes
            service_ids.append(hs.resource["id"])
        for p in self.seed.practitioners:
            prac = self._put(
                "Practitioner",
                {
                    "active": True,
                    "name": [{"use": "official", "family": p.last_name, "given": [p.first_name]}],
                    "telecom": [{"system": "email", "value": p.email, "use": "work"}],
                },
            )
            pid = prac.resource["id"]
            for lid in self.location_ids:
                self._put(
                    "PractitionerRole",
                    {
                        "active": True,
                        "practitioner": {"reference": f"Practitioner/{pid}"},
                        "organization": {"reference": f"Organization/{self.organization_id}"},
                        "location": [{"reference": f"Location/{lid}"}],
                        "healthcareService": [{"reference": f"HealthcareService/{sid}"} for sid in service_ids],
                    },
                )
                today = self._now().astimezone(self.zone).date()
                horizon_end = today + datetime.timedelta(days=self.horizon_days)
                self._put(
                    "Schedule",
                    {
                        "active": True,
                        "actor": [{"reference": f"Practitioner/{pid}"}, {"reference": f"Location/{lid}"}],
                        "planningHorizon": {
                            "start": utc_text(datetime.datetime.combine(today, datetime.time(), self.zone)),
                            "end": utc_text(datetime.datetime.combine(horizon_end, datetime.time(), self.zone)),
                        },
                    },
                )
        for pt in self.seed.patients:
            telecom = []
            if pt.email:
                telecom.append({"system": "email", "value": pt.email, "use": "home"})
            if pt.phone:
                telecom.append({"system": "phone", "value": pt.phone, "use": "mobile"})
            patient: Json = {
                "active": True,
                "name": [{"use": "official", "family": pt.last_name, "given": [pt.first_name]}],
            }
            if telecom:
                patient["telecom"] = telecom
            if pt.date_of_birth:
                patient["birthDate"] = pt.date_of_birth.isoformat()
            self._put("Patient", patient)

    # ------------------------------------------------------------------ Emulator interface

    def stats(self) -> EmulatorStats:
        with self._lock:
            rows = [s.resource for s in self.db["Appointment"].values()]
        active = sum(1 for r in rows if r["status"] not in ("cancelled", "entered-in-error"))
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=len(rows),
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def service_minutes(self) -> dict[str, int]:
        return dict(self.durations)

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        """IHE: client credentials; REST: a static bearer token (so the suite drives both kinds of auth)."""
        root = base_url.rstrip("/")
        settings: Json = {
            "base_url": root + BASE,
            "location_id": self.location_ids[business_index],
            "service_minutes": self.service_minutes(),
        }
        if self.dialect == "rest":
            settings["slots_enforced"] = self.slots_enforced
        if self.dialect == "ihe":
            credentials: Json = {
                "token_url": root + TOKEN_PATH,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
        else:
            credentials = {"bearer_token": self.static_token}
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        if self.dialect == "ihe":
            return msgspec.json.encode(
                {"token_url": base_url.rstrip("/") + TOKEN_PATH, "client_id": self.client_id, "client_secret": "nope"}
            )
        return msgspec.json.encode({"bearer_token": "not-a-token"})

    # ------------------------------------------------------------------ gate: bearer token, rate limits

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        client = (scope.get("client") or ("", 0))[0]
        if path == TOKEN_PATH:
            reset = self.token_limiter.hit(client)
            return None if reset is None else self._too_many(reset)
        if not path.startswith(BASE + "/") or path in (f"{BASE}/metadata", f"{BASE}/.well-known/smart-configuration"):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not self._valid_token(token):
            return RawResponse(
                401,
                msgspec.json.encode(outcome("login", diagnostics="A valid bearer token is required")),
                FHIR_JSON,
                [("WWW-Authenticate", 'Bearer realm="fhir", error="invalid_token"')],
            )
        reset = self.limiter.hit(client)
        return None if reset is None else self._too_many(reset)

    def _valid_token(self, token: str) -> bool:
        if not token:
            return False
        if hmac.compare_digest(token.encode(), self.static_token.encode()):
            return True
        with self._lock:
            expiry = self.tokens.get(token)
            if expiry is not None and expiry <= self.clock():
                del self.tokens[token]
                expiry = None
        return expiry is not None

    def _too_many(self, reset_at: float) -> RawResponse:
        wait = max(1, math.ceil(reset_at - self.clock()))
        return self._throttled(wait)

    def _throttled(self, wait: int) -> RawResponse:
        return RawResponse(
            429,
            msgspec.json.encode(outcome("throttled", diagnostics="Too many requests")),
            FHIR_JSON,
            [("Retry-After", str(wait)), ("RateLimit", f'"requests";r=0;t={wait}')],
        )

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return self._throttled(fault.retry_after)

    def _server_error(self, fault: Fault) -> RawResponse:
        return RawResponse(fault.status, msgspec.json.encode(outcome("transient", severity="fatal")), FHIR_JSON, [])

    def _rejected(self, fault: Fault) -> RawResponse:
        status = fault.status if fault.status != 503 else 422
        code = {409: "conflict", 422: "business-rule"}.get(status, "invalid")
        return RawResponse(status, msgspec.json.encode(outcome(code, diagnostics=fault.message)), FHIR_JSON)

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def _mint(self, form: dict[str, str], authorization: str | None) -> tuple[int, Json]:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = False
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return 401, {"error": "invalid_client"}
            user, _, password = decoded.partition(":")
            client_id, client_secret, basic = urllib.parse.unquote(user), urllib.parse.unquote(password), True
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type" if form.get("grant_type") else "invalid_request"}
        if not client_id or client_secret is None:
            return 400, {"error": "invalid_request"}
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return (401 if basic else 400), {"error": "invalid_client"}
        access = secrets.token_urlsafe(32)
        with self._lock:
            self.token_requests += 1
            self.tokens[access] = self.clock() + self.token_lifetime
        answer: Json = {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime}
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return 200, answer

    # ------------------------------------------------------------------ capability statement

    def capability_statement(self, base: str) -> Json:
        def interactions(*codes: str) -> list[Json]:
            return [{"code": c} for c in codes]

        def params(resource_type: str, extra: Iterable[tuple[str, str]] = ()) -> list[Json]:
            found = [{"name": n, "type": p.kind} for n, p in SEARCH[resource_type].items()]
            found.append({"name": "_id", "type": "token"})
            if self.last_updated_search:
                found.append({"name": "_lastUpdated", "type": "date"})
            found += [{"name": n, "type": t} for n, t in extra]
            return [p for p in found if f"{resource_type}.{p['name']}" not in self.undeclared]

        directory = ["Organization", "Location", "Practitioner", "PractitionerRole", "HealthcareService"]
        resources: list[Json] = [
            {"type": t, "interaction": interactions("read", "vread", "search-type"), "searchParam": params(t)}
            for t in directory
        ]
        patient_codes = ["read", "vread", "search-type", "update"] + (["create"] if self.patient_create else [])
        resources.append(
            {"type": "Patient", "interaction": interactions(*patient_codes), "searchParam": params("Patient")}
        )
        appointment: Json = {"type": "Appointment", "searchParam": params("Appointment")}
        history = ["history-instance", "history-type"] if self.history else []
        if self.dialect == "ihe":
            appointment["profile"] = IHE_APPOINTMENT
            appointment["interaction"] = interactions("read", "vread", "search-type", *history)
            appointment["operation"] = [{"name": name, "definition": url} for name, url in OPERATIONS.items()]
        else:
            appointment["interaction"] = interactions("read", "vread", "search-type", "create", "update", *history)
            for t in ("Schedule", "Slot"):
                resources.append(
                    {"type": t, "interaction": interactions("read", "search-type"), "searchParam": params(t)}
                )
        resources.append(appointment)
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-01",
            "publisher": "EMR Gateway emulator",
            "kind": "instance",
            "software": {"name": "EMR Gateway FHIR emulator", "version": self.dialect},
            "implementation": {"description": f"FHIR R4 emulator ({self.dialect})", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "extension": [
                            {
                                "url": OAUTH_URIS,
                                "extension": [{"url": "token", "valueUri": base.rsplit(BASE, 1)[0] + TOKEN_PATH}],
                            }
                        ],
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "SMART-on-FHIR",
                                    }
                                ]
                            }
                        ],
                    },
                    "resource": resources,
                    "interaction": [{"code": "search-system"}],
                }
            ],
        }

    def _declares(self, resource_type: str, interaction: str) -> bool:
        if resource_type in ("Schedule", "Slot"):
            return self.dialect == "rest" and interaction in ("read", "search-type")
        if resource_type == "Patient":
            return interaction != "create" or self.patient_create
        if resource_type == "Appointment":
            if interaction in ("history-instance", "history-type"):
                return self.history
            return self.dialect == "rest" or interaction in ("read", "vread", "search-type")
        return interaction in ("read", "vread", "search-type")

    # ------------------------------------------------------------------ rendering

    def _render(self, stored: Stored) -> Json:
        return self._rendered(stored.resource, stored.version, stored.last_updated)

    def _rendered(self, resource: Json, version: int, stamp: datetime.datetime) -> Json:
        out = copy.deepcopy(resource)
        meta: Json = {"versionId": str(version), "lastUpdated": utc_text(stamp)}
        if resource["resourceType"] == "Appointment" and self.dialect == "ihe":
            meta["profile"] = [IHE_APPOINTMENT]
        return {"resourceType": out.pop("resourceType"), "id": out.pop("id"), "meta": meta, **out}

    def _bundle(
        self,
        base: str,
        path: str,
        query: Query,
        matches: list[Json],
        *,
        total: int | None = None,
        profile: str | None = None,
    ) -> Json:
        total = len(matches) if total is None else total
        page = matches[query.offset : query.offset + query.count]

        def link(offset: int) -> str:
            pairs = [*query.applied, ("_count", str(query.count))]
            if query.sort:
                pairs.append(("_sort", ",".join(query.sort)))
            if offset:
                pairs.append(("_offset", str(offset)))
            return f"{base}/{path}?{urllib.parse.urlencode(pairs)}"

        links = [{"relation": "self", "url": link(query.offset)}]
        if query.offset + query.count < total:
            links.append({"relation": "next", "url": link(query.offset + query.count)})
        if query.offset > 0:
            links.append({"relation": "previous", "url": link(max(0, query.offset - query.count))})
        bundle: Json = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": [
                {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in page
            ],
        }
        if profile:
            bundle["meta"] = {"profile": [profile]}
        if not bundle["entry"]:
            del bundle["entry"]
        return bundle

    def _op_bundle(self, base: str, appointment: Json) -> Json:
        """What `$hold` and `$book` answer: the IG's appointment Bundle holding the one Appointment."""
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [IHE_BUNDLE]},
            "type": "searchset",
            "total": 1,
            "entry": [
                {
                    "fullUrl": f"{base}/Appointment/{appointment['id']}",
                    "resource": appointment,
                    "search": {"mode": "match"},
                }
            ],
        }

    # ------------------------------------------------------------------ search

    def _query(self, resource_type: str, pairs: list[tuple[str, str]], strict: bool) -> Query:
        known = SEARCH.get(resource_type, {})
        params: list[tuple[str, str | None, str]] = []
        applied: list[tuple[str, str]] = []
        count, offset, sort = DEFAULT_COUNT, 0, []
        for key, value in pairs:
            name, _, modifier = key.partition(":")
            if name == "_count":
                count = self._int(value, "_count", 0, MAX_COUNT)
                continue
            if name == "_offset":
                offset = self._int(value, "_offset", 0, 10**9)
                continue
            if name == "_sort":
                sort = [s for s in value.split(",") if s]
                continue
            if name in RESULT_PARAMS:
                continue
            recognised = name == "_id" or (name == "_lastUpdated" and self.last_updated_search) or name in known
            recognised = recognised and f"{resource_type}.{name}" not in self.undeclared
            if not recognised:
                if strict:
                    raise invalid(f"Unknown search parameter {name}", code="not-supported")
                continue  # http.html: servers SHOULD ignore unknown parameters
            if modifier and modifier not in ("exact", "contains", "not", "missing"):
                raise invalid(f"Unknown modifier :{modifier}", code="not-supported")
            kind = "date" if name == "_lastUpdated" else known[name].kind if name in known else "token"
            if kind == "date" and modifier != "missing":
                for item in value.split(","):
                    self._check_date(item)
            params.append((name, modifier or None, value))
            applied.append((key, value))
        return Query(params=params, count=count, offset=offset, sort=sort, applied=applied)

    @staticmethod
    def _int(value: str, name: str, low: int, high: int) -> int:
        try:
            number = int(value)
        except ValueError:
            raise invalid(f"{name} must be an integer", name) from None
        return max(low, min(number, high))

    def _matches(self, resource_type: str, stored: Stored, name: str, modifier: str | None, value: str) -> bool:
        resource = stored.resource
        if name == "_id":
            return resource["id"] in value.split(",")
        if name == "_lastUpdated":  # an instant's range is the instant itself (as `date` below): `ge` includes it
            stamp = stored.last_updated
            return any(self._date_match(v, stamp, stamp + datetime.timedelta(microseconds=1)) for v in value.split(","))
        param = SEARCH[resource_type][name]
        found = param.extract(resource)
        if modifier == "missing":
            return (not found) == (value == "true")
        values = value.split(",")
        if param.kind == "token":
            hit = any(self._token_match(v, found, param.fold) for v in values)
            return not hit if modifier == "not" else hit
        if param.kind == "reference":
            target = {"patient": "Patient", "practitioner": "Practitioner", "location": "Location"}.get(name)
            return any(_reference_matches(v, found, target) for v in values)
        if param.kind == "date":
            for item in found:
                if isinstance(item, str):  # a FHIR date (birthDate): its own implicit range
                    lo, hi = date_range(item, self.zone)
                else:
                    lo, hi = item, item + datetime.timedelta(microseconds=1)
                if any(self._date_match(v, lo, hi) for v in values):
                    return True
            return False
        texts = [_fold(t) for t in found]
        for v in values:
            wanted = _fold(v)
            if modifier == "exact" and v in found:
                return True
            if modifier == "contains" and any(wanted in t for t in texts):
                return True
            if modifier is None and any(t.startswith(wanted) for t in texts):
                return True
        return False

    @staticmethod
    def _token_match(value: str, found: list[tuple[str | None, str]], fold: bool) -> bool:
        system, bar, code = value.partition("|")
        if not bar:
            system, code = None, value  # type: ignore[assignment]

        def same(a: str, b: str) -> bool:
            return a.casefold() == b.casefold() if fold else a == b

        for s, c in found:
            if bar and system and s != system:
                continue
            if bar and not system and s is not None:
                continue
            if code and not same(c, code):
                continue
            return True
        return False

    @staticmethod
    def _check_date(value: str) -> re.Match[str]:
        m = SEARCH_DATE_RE.match(value)
        if m is None:
            raise invalid("A date parameter is not a FHIR date or dateTime (is a `+` unescaped?)", code="value")
        if m.group("prefix") in ("sa", "eb", "ap"):
            raise invalid(f"The date prefix {m.group('prefix')} is not supported", code="not-supported")
        return m

    def _date_match(self, value: str, lo: datetime.datetime, hi: datetime.datetime) -> bool:
        m = self._check_date(value)
        prefix = m.group("prefix") or "eq"
        s_lo, s_hi = date_range(m.group("value"), self.zone)
        match prefix:
            case "eq":
                return lo >= s_lo and hi <= s_hi
            case "ne":
                return not (lo >= s_lo and hi <= s_hi)
            case "gt":
                return hi > s_hi
            case "lt":
                return lo < s_lo
            case "ge":
                return hi > s_lo
            case _:  # le
                return lo < s_hi

    def search(self, resource_type: str, pairs: list[tuple[str, str]], strict: bool) -> tuple[Query, list[Json]]:
        query = self._query(resource_type, pairs, strict)
        with self._lock:
            rows = self._slots(query) if resource_type == "Slot" else list(self.db[resource_type].values())
            matched = [s for s in rows if all(self._matches(resource_type, s, n, mod, v) for n, mod, v in query.params)]
            for key in reversed(query.sort):
                name, desc = key.lstrip("-"), key.startswith("-")
                if name == "_lastUpdated":
                    matched.sort(key=lambda s: s.last_updated, reverse=desc)
                elif name == "_id":
                    matched.sort(key=lambda s: s.resource["id"], reverse=desc)
                elif name in SORTS.get(resource_type, {}):
                    getter = SORTS[resource_type][name]
                    matched.sort(key=lambda s, g=getter: g(s.resource), reverse=desc)  # type: ignore[misc]
            return query, [self._render(s) for s in matched]

    # ------------------------------------------------------------------ slots ("rest")

    def _schedule_parts(self, schedule: Json) -> tuple[str, str]:
        refs = [a["reference"] for a in schedule["actor"]]
        practitioner = next(r.split("/", 1)[1] for r in refs if r.startswith("Practitioner/"))
        location = next(r.split("/", 1)[1] for r in refs if r.startswith("Location/"))
        return practitioner, location

    def _slot_times(self, day: datetime.date) -> list[datetime.datetime]:
        seed = self.seed
        if day.weekday() not in seed.open_weekdays:
            return []
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        at = datetime.datetime.combine(day, datetime.time.fromisoformat(seed.open_from), self.zone)
        closing = datetime.datetime.combine(day, datetime.time.fromisoformat(seed.open_until), self.zone)
        times = []
        while at + step <= closing:
            times.append(at.astimezone(UTC))
            at = at + step
        return times

    def _slot(self, schedule_id: str, start: datetime.datetime) -> Stored:
        schedule = self.db["Schedule"][schedule_id].resource
        practitioner_id, _ = self._schedule_parts(schedule)
        end = start + datetime.timedelta(minutes=self.seed.slot_step_minutes)
        # A plain server (slots_enforced False, as HAPI) never marks a Slot busy: only a scheduling server does.
        busy = self.slots_enforced and self._busy(practitioner_id, start, end, None)
        resource = {
            "resourceType": "Slot",
            "id": f"{schedule_id}.{start.strftime('%Y%m%d%H%M')}",
            "schedule": {"reference": f"Schedule/{schedule_id}"},
            "status": "busy" if busy else "free",
            "start": utc_text(start),
            "end": utc_text(end),
        }
        return Stored(resource, 1, self.db["Schedule"][schedule_id].last_updated)

    def _slots(self, query: Query) -> list[Stored]:
        """The Slots of the planning horizon (today to `horizon_days` ahead), narrowed by `schedule` and `start`
        bounds before they are built (the rest of the query filters them as any search)."""
        schedules = list(self.db["Schedule"])
        lo = datetime.datetime.combine(self._now().astimezone(self.zone).date(), datetime.time(), self.zone)
        hi = lo + datetime.timedelta(days=self.horizon_days)
        for name, _, value in query.params:
            if name == "schedule":
                wanted = value.split(",")
                schedules = [
                    s for s in schedules if any(_reference_matches(w, [f"Schedule/{s}"], "Schedule") for w in wanted)
                ]
            if name == "start" and "," not in value and (m := SEARCH_DATE_RE.match(value)):
                s_lo, s_hi = date_range(m.group("value"), self.zone)
                prefix = m.group("prefix") or "eq"
                if prefix in ("ge", "gt", "eq"):
                    lo = max(lo, s_lo)
                if prefix in ("le", "lt", "eq"):
                    hi = min(hi, s_hi)
        found: list[Stored] = []
        day = lo.astimezone(self.zone).date()
        while day <= hi.astimezone(self.zone).date():
            for start in self._slot_times(day):
                if lo - datetime.timedelta(minutes=self.seed.slot_step_minutes) <= start <= hi:
                    found.extend(self._slot(sid, start) for sid in schedules)
            day += datetime.timedelta(days=1)
        found.sort(key=lambda s: (s.resource["start"], s.resource["id"]))
        return found

    def _read_slot(self, slot_id: str) -> Stored:
        schedule_id, _, stamp = slot_id.rpartition(".")
        if schedule_id not in self.db["Schedule"]:
            raise not_found("Slot", slot_id)
        try:
            start = datetime.datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
        except ValueError:
            raise not_found("Slot", slot_id) from None
        if start not in self._slot_times(start.astimezone(self.zone).date()) or not self._in_horizon(start):
            raise not_found("Slot", slot_id)
        return self._slot(schedule_id, start)

    def _in_horizon(self, start: datetime.datetime) -> bool:
        today = self._now().astimezone(self.zone).date()
        return today <= start.astimezone(self.zone).date() < today + datetime.timedelta(days=self.horizon_days)

    # ------------------------------------------------------------------ the calendar

    def _appointment_rows(self) -> list[Json]:
        self._expire_holds()
        return [s.resource for s in self.db["Appointment"].values()]

    def _expire_holds(self) -> None:
        now = self._now()
        for appointment_id, expiry in list(self.holds.items()):
            stored = self.db["Appointment"].get(appointment_id)
            if stored is None or stored.resource["status"] != "pending":
                del self.holds[appointment_id]
            elif expiry <= now:
                del self.holds[appointment_id]
                self._put("Appointment", {**stored.resource, "status": "cancelled"}, appointment_id)

    def _busy(
        self, practitioner_id: str, start: datetime.datetime, end: datetime.datetime, exclude: str | None
    ) -> bool:
        for row in self._appointment_rows():
            if row["id"] == exclude or row["status"] not in ACTIVE_STATUSES or "start" not in row:
                continue
            if f"Practitioner/{practitioner_id}" not in _actors("Practitioner")(row):
                continue
            a_start = datetime.datetime.fromisoformat(row["start"].replace("Z", "+00:00"))
            a_end = datetime.datetime.fromisoformat(row["end"].replace("Z", "+00:00"))
            if a_start < end and start < a_end:
                return True
        return False

    def _bookable(
        self, practitioner_id: str, location_id: str, start: datetime.datetime, end: datetime.datetime
    ) -> bool:
        """What `$find` proposes: opening hours of the location (one local day), inside the planning horizon, and
        `_staffed` (not in the past, the practitioner has an active role there)."""
        if not self._staffed(practitioner_id, location_id, start, end) or not self._in_horizon(start):
            return False
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        if local_start.date() != local_end.date() and local_end.time() != datetime.time():
            return False
        if local_start.weekday() not in self.seed.open_weekdays:
            return False
        opens = datetime.time.fromisoformat(self.seed.open_from)
        closes = datetime.time.fromisoformat(self.seed.open_until)
        return not (local_start.time() < opens or local_end.time() > closes or local_end.date() != local_start.date())

    def _staffed(
        self, practitioner_id: str, location_id: str, start: datetime.datetime, end: datetime.datetime
    ) -> bool:
        """What `$book` requires of a new booking besides a free calendar: a future time and a practitioner with an
        active role at the location. Opening hours and the horizon only shape proposals: the clinic books any time."""
        if start < self._now() or end <= start:
            return False
        return any(
            r.resource.get("active", True)
            and r.resource.get("practitioner", {}).get("reference") == f"Practitioner/{practitioner_id}"
            and f"Location/{location_id}" in _refs("location")(r.resource)
            for r in self.db["PractitionerRole"].values()
        )

    # ------------------------------------------------------------------ validation of written resources

    def _check_references(self, resource: Json, expression: str) -> None:
        for participant in resource.get("participant", []):
            ref = participant.get("actor", {}).get("reference")
            if not ref:
                continue
            kind, _, rid = ref.partition("/")
            if kind not in self.db or rid not in self.db[kind]:
                raise FhirError(
                    422, "not-found", "A participant's actor is not known here", expression=f"{expression}.participant"
                )

    def _appointment_body(
        self, body: Json, expression: str = "Appointment"
    ) -> tuple[Json, datetime.datetime, datetime.datetime]:
        """An Appointment as written: R4's required elements and invariants (app-1 to app-4), instants with zones."""
        if body.get("resourceType") != "Appointment":
            raise invalid("The body is not an Appointment", expression)
        status = body.get("status")
        if status not in APPOINTMENT_STATUSES:
            raise invalid(
                "Appointment.status is missing or not an AppointmentStatus",
                f"{expression}.status",
                "required" if status is None else "code-invalid",
            )
        participants = body.get("participant")
        if not isinstance(participants, list) or not participants:
            raise invalid("Appointment.participant is required (1..*)", f"{expression}.participant", "required")
        for p in participants:
            if not isinstance(p, dict) or p.get("status") not in PARTICIPANT_STATUSES:
                raise invalid("participant.status is required", f"{expression}.participant.status", "required")
            if "actor" not in p and "type" not in p:
                raise invalid("app-1: a participant needs a type or an actor", f"{expression}.participant")
        if ("start" in body) != ("end" in body):
            raise invalid("app-2: either start and end are specified, or neither", f"{expression}.start")
        if "start" not in body:
            if status not in ("proposed", "cancelled"):
                raise invalid(
                    "app-3: only proposed or cancelled appointments may omit start/end", f"{expression}.start"
                )
            never = datetime.datetime.min.replace(tzinfo=UTC)
            self._check_references(body, expression)
            return body, never, never
        start = parse_instant(body["start"], f"{expression}.start")
        end = parse_instant(body["end"], f"{expression}.end")
        if end <= start:
            raise invalid("Appointment.end must be after Appointment.start", f"{expression}.end")
        if "cancelationReason" in body and status not in ("cancelled", "noshow"):
            raise invalid(
                "app-4: cancelationReason is only for cancelled or no-show appointments",
                f"{expression}.cancelationReason",
            )
        for name in ("minutesDuration",):
            if name in body and not (isinstance(body[name], int) and body[name] > 0):
                raise invalid(f"Appointment.{name} must be a positive integer", f"{expression}.{name}")
        if "id" in body and (not isinstance(body["id"], str) or not ID_RE.match(body["id"])):
            raise invalid("Appointment.id is not a FHIR id", f"{expression}.id")
        self._check_references(body, expression)
        return body, start, end

    def _patient_body(self, body: Json) -> Json:
        if body.get("resourceType") != "Patient":
            raise invalid("The body is not a Patient", "Patient")
        for name in body.get("name", []):
            if not isinstance(name, dict) or not isinstance(name.get("given", []), list):
                raise invalid("Patient.name is not a HumanName", "Patient.name")
        for t in body.get("telecom", []):
            if not isinstance(t, dict) or t.get("system") not in TELECOM_SYSTEMS or not isinstance(t.get("value"), str):
                raise invalid("Patient.telecom needs a system and a value", "Patient.telecom")
        birth = body.get("birthDate")
        if birth is not None and (not isinstance(birth, str) or not DATE_RE.match(birth)):
            raise invalid("Patient.birthDate is not a FHIR date", "Patient.birthDate")
        if "gender" in body and body["gender"] not in ("male", "female", "other", "unknown"):
            raise invalid("Patient.gender is not an AdministrativeGender", "Patient.gender", "code-invalid")
        return body

    @staticmethod
    def _json(raw: bytes) -> Json:
        try:
            body = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            raise invalid("The body is not JSON", code="structure") from None
        if not isinstance(body, dict):
            raise invalid("The body is not a resource", code="structure")
        return body

    def _participant_id(self, body: Json, kind: str) -> str | None:
        ref = next(iter(_actors(kind)(body)), None)
        return ref.split("/", 1)[1] if ref else None

    # ------------------------------------------------------------------ REST writes

    def create(self, resource_type: str, body: Json) -> Stored:
        with self._lock:
            if resource_type == "Patient":
                return self._put("Patient", self._patient_body(body))
            if resource_type != "Appointment":
                raise FhirError(405, "not-supported", f"create is not supported on {resource_type}")
            body, start, end = self._appointment_body(body)
            if "id" in body:
                body = {k: v for k, v in body.items() if k != "id"}  # the server assigns ids on create
            body = {**body, "created": utc_text(self._now())}
            if "start" not in body:  # proposed or cancelled without times (app-3): nothing to check or store
                return self._put("Appointment", body)
            self._check_slots(body, start, end, None)
            if (fault := self.faults.misstore("POST", f"{BASE}/Appointment")) is not None:
                start, end = fault.misstored(start, end)
            return self._put("Appointment", {**body, "start": utc_text(start), "end": utc_text(end)})

    def update(self, resource_type: str, resource_id: str, body: Json, if_match: str | None) -> Stored:
        with self._lock:
            existing = self.db.get(resource_type, {}).get(resource_id)
            if existing is None:
                raise FhirError(405, "not-supported", "This server does not create resources by update")
            if body.get("id") != resource_id:
                raise invalid("The resource's id must match the URL (http.html#update)", f"{resource_type}.id")
            if if_match is not None and if_match.strip() not in (f'W/"{existing.version}"', f'"{existing.version}"'):
                raise FhirError(412, "conflict", "The resource has changed since that version was read")
            if resource_type == "Patient":
                return self._put("Patient", self._patient_body(body), resource_id)
            body, start, end = self._appointment_body(body)
            old = existing.resource
            if "created" in old:
                body = {**body, "created": old["created"]}
            if "start" not in body:
                return self._put("Appointment", body, resource_id)
            never = [datetime.datetime.min.replace(tzinfo=UTC)]
            old_start, old_end = ((_instant_of(name)(old) or never)[0] for name in ("start", "end"))
            moved = (start, end) != (old_start, old_end) or _actors("Practitioner")(body) != _actors("Practitioner")(
                old
            )
            if moved and body["status"] in ACTIVE_STATUSES:
                self._check_slots(body, start, end, resource_id)
            if moved and (fault := self.faults.misstore("PUT", f"{BASE}/Appointment/{resource_id}")) is not None:
                start, end = fault.misstored(start, end)
            return self._put("Appointment", {**body, "start": utc_text(start), "end": utc_text(end)}, resource_id)

    def _check_slots(self, body: Json, start: datetime.datetime, end: datetime.datetime, exclude: str | None) -> None:
        """Every referenced Slot must exist and be free (besides this appointment) for the practitioner booked."""
        practitioner_id = self._participant_id(body, "Practitioner")
        for ref in _refs("slot")(body):
            slot_id = ref.rsplit("/", 1)[-1]
            try:
                stored = self._read_slot(slot_id)
            except FhirError:
                raise FhirError(
                    422, "not-found", "A referenced Slot is not known", expression="Appointment.slot"
                ) from None
            schedule = self.db["Schedule"][slot_id.rpartition(".")[0]].resource
            owner, _ = self._schedule_parts(schedule)
            if practitioner_id is not None and owner != practitioner_id:
                raise FhirError(
                    422, "business-rule", "A Slot belongs to another practitioner", expression="Appointment.slot"
                )
            s_start = datetime.datetime.fromisoformat(stored.resource["start"].replace("Z", "+00:00"))
            s_end = datetime.datetime.fromisoformat(stored.resource["end"].replace("Z", "+00:00"))
            if s_start < self._now() or (self.slots_enforced and self._busy(owner, s_start, s_end, exclude)):
                raise taken()

    # ------------------------------------------------------------------ IHE operations

    def _op_params(self, body: Json) -> list[Json]:
        if body.get("resourceType") != "Parameters":
            raise invalid("An operation's body is a Parameters resource", "Parameters", "structure")
        params = body.get("parameter", [])
        if not isinstance(params, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) for p in params
        ):
            raise invalid("Parameters.parameter needs names", "Parameters.parameter", "structure")
        return params

    def find(self, base: str, pairs: list[tuple[str, str]]) -> Json:
        """ITI-115: proposed appointments fitting in [start, end]."""
        values: dict[str, list[str]] = collections.defaultdict(list)
        for key, value in pairs:
            if key in ("start", "end"):
                values[key].append(value)
            else:
                values[key].extend(v for v in value.split(",") if v)  # repeated or comma-separated: preferences
        for name in ("start", "end"):
            if len(values.get(name, [])) != 1:
                raise invalid(f"$find needs exactly one {name} (1..1)", name, "required")
        start = self._find_time(values["start"][0], "start", lower=True)
        end = self._find_time(values["end"][0], "end", lower=False)
        count = self._int(values["_count"][-1], "_count", 0, MAX_COUNT) if values.get("_count") else DEFAULT_COUNT
        offset = self._int(values["_offset"][-1], "_offset", 0, 10**9) if values.get("_offset") else 0
        with self._lock:
            practitioners = [self._ref_id(v, "Practitioner") for v in values.get("practitioner", [])]
            locations = [self._ref_id(v, "Location") for v in values.get("location-reference", [])] or list(
                self.location_ids
            )
            patients = [self._ref_id(v, "Patient") for v in values.get("patient-reference", [])]
            for pid in patients:
                if pid not in self.db["Patient"]:
                    raise FhirError(422, "not-found", "patient-reference is not known", expression="patient-reference")
            services = self._services_for(values.get("visit-type", []))
            if not practitioners:
                practitioners = sorted(
                    {
                        r.resource["practitioner"]["reference"].split("/", 1)[1]
                        for r in self.db["PractitionerRole"].values()
                        if r.resource.get("active", True)
                    }
                )
            proposals: list[tuple[datetime.datetime, int, Proposal]] = []
            day = max(start, self._now()).astimezone(self.zone).date()
            while day <= end.astimezone(self.zone).date():
                for rank, pid in enumerate(practitioners):
                    for lid in locations:
                        for service_id, minutes in services:
                            length = datetime.timedelta(minutes=minutes)
                            for slot_start in self._slot_times(day):
                                slot_end = slot_start + length
                                if slot_start < start or slot_end > end:
                                    continue
                                if not self._bookable(pid, lid, slot_start, slot_end) or self._busy(
                                    pid, slot_start, slot_end, None
                                ):
                                    continue
                                proposal = self._proposal(
                                    pid, lid, service_id, slot_start, slot_end, start, end, patients
                                )
                                proposals.append((slot_start, rank, proposal))
                day += datetime.timedelta(days=1)
            proposals.sort(key=lambda p: (p[0], p[1]))
            page = proposals[offset : offset + count]
            for _, _, proposal in page:
                self.proposals[proposal.resource["id"]] = proposal
                while len(self.proposals) > MAX_PROPOSALS:
                    self.proposals.popitem(last=False)
        applied = [(k, v) for k, v in pairs if k not in ("_count", "_offset")]
        query = Query(params=[], count=count, offset=offset, sort=[], applied=applied)
        bundle = self._bundle(base, "Appointment/$find", query, [], total=len(proposals), profile=IHE_BUNDLE)
        bundle["entry"] = [
            {"fullUrl": f"{base}/Appointment/{p.resource['id']}", "resource": p.resource, "search": {"mode": "match"}}
            for _, _, p in page
        ]
        if not bundle["entry"]:
            del bundle["entry"]
        return bundle

    def _find_time(self, value: str, name: str, *, lower: bool) -> datetime.datetime:
        m = SEARCH_DATE_RE.match(value)
        if m is None or m.group("prefix"):
            raise invalid(f"$find {name} is not a dateTime (is a `+` unescaped?)", name, "value")
        lo, hi = date_range(m.group("value"), self.zone)
        return lo if lower or len(value) > 10 else hi

    def _ref_id(self, value: str, kind: str) -> str:
        parts = value.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] != kind:
            raise invalid(f"A {kind} reference was expected", kind)
        return parts[-1]

    def _services_for(self, visit_types: list[str]) -> list[tuple[str | None, int]]:
        if not visit_types:
            if not self.durations:
                return [(None, self.seed.slot_step_minutes)]
            shortest = min(self.durations.items(), key=lambda kv: kv[1])
            return [shortest]
        found: list[tuple[str | None, int]] = []
        for token in visit_types:
            for sid, stored in self.db["HealthcareService"].items():
                if self._token_match(
                    token, _coding_pairs(stored.resource.get("type", [])), False
                ) and stored.resource.get("active", True):
                    found.append((sid, self.durations.get(sid, self.seed.slot_step_minutes)))
        return found

    def _proposal(
        self,
        practitioner_id: str,
        location_id: str,
        service_id: str | None,
        start: datetime.datetime,
        end: datetime.datetime,
        asked_start: datetime.datetime,
        asked_end: datetime.datetime,
        patients: list[str],
    ) -> Proposal:
        participants: list[Json] = [
            {
                "actor": {"reference": f"Practitioner/{practitioner_id}"},
                "required": "required",
                "status": "needs-action",
            },
            {"actor": {"reference": f"Location/{location_id}"}, "required": "required", "status": "needs-action"},
        ]
        resource: Json = {
            "resourceType": "Appointment",
            "id": f"proposed-{uuid.uuid4()}",
            "meta": {"profile": [IHE_APPOINTMENT]},
            "status": "proposed",
            "start": utc_text(start),
            "end": utc_text(end),
            "minutesDuration": round((end - start).total_seconds() / 60),
            "requestedPeriod": [{"start": utc_text(asked_start), "end": utc_text(asked_end)}],
        }
        if service_id is not None:
            service = self.db["HealthcareService"][service_id].resource
            resource["serviceType"] = copy.deepcopy(service["type"])
            participants.append(
                {
                    "actor": {"reference": f"HealthcareService/{service_id}"},
                    "required": "required",
                    "status": "needs-action",
                }
            )
        participants += [
            {"actor": {"reference": f"Patient/{pid}"}, "required": "required", "status": "needs-action"}
            for pid in patients
        ]
        resource["participant"] = participants
        return Proposal(resource, practitioner_id, location_id, service_id, start, end)

    def _reference_param(self, params: list[Json], name: str) -> str | None:
        found = [p for p in params if p["name"] == name]
        if not found:
            return None
        ref = found[0].get("valueReference", {}).get("reference")
        if not isinstance(ref, str):
            raise invalid(f"{name} must be a valueReference with a reference", name)
        return ref.rstrip("/").split("/")[-1]

    def hold(self, base: str, body: Json) -> Json:
        """ITI-116: a proposal held as a `pending` appointment until booked or `hold_minutes` pass."""
        params = self._op_params(body)
        ref = self._reference_param(params, "appointment-reference")
        if ref is None:
            raise invalid("$hold needs appointment-reference (1..1)", "appointment-reference", "required")
        with self._lock:
            proposal = self.proposals.get(ref)
            if proposal is None or not self._still_free(
                proposal.practitioner_id, proposal.location_id, proposal.start, proposal.end, None
            ):
                raise FhirError(409, "not-found", "The appointment is not available to be held", severity="fatal")
            start, end = proposal.start, proposal.end
            if (fault := self.faults.misstore("POST", f"{BASE}/Appointment/$hold")) is not None:
                start, end = fault.misstored(start, end)
            resource = {
                **{k: v for k, v in proposal.resource.items() if k not in ("id", "meta")},
                "status": "pending",
                "start": utc_text(start),
                "end": utc_text(end),
                "created": utc_text(self._now()),
            }
            stored = self._put("Appointment", resource)
            self.holds[stored.resource["id"]] = self._now() + datetime.timedelta(minutes=self.hold_minutes)
            del self.proposals[ref]
            return self._op_bundle(base, self._render(stored))

    def _still_free(
        self,
        practitioner_id: str,
        location_id: str,
        start: datetime.datetime,
        end: datetime.datetime,
        exclude: str | None,
    ) -> bool:
        return self._bookable(practitioner_id, location_id, start, end) and not self._busy(
            practitioner_id, start, end, exclude
        )

    def book(self, base: str, body: Json) -> Json:
        """ITI-117: a new booking (`pending` in, `booked` out), a modification (`booked`) or a cancellation."""
        params = self._op_params(body)
        ref = self._reference_param(params, "appointment-reference")
        resources = [p for p in params if p["name"] == "appointment-resource"]
        comment = next((p.get("valueString") for p in params if p["name"] == "comment"), None)
        if (ref is None) == (not resources):
            raise invalid(
                "$book needs appointment-reference or appointment-resource", "appointment-resource", "required"
            )
        with self._lock:
            if ref is not None:
                return self._book_reference(base, ref, comment)
            resource = resources[0].get("resource")
            if not isinstance(resource, dict):
                raise invalid("appointment-resource must carry a resource", "appointment-resource", "structure")
            resource, start, end = self._appointment_body(resource, "appointment-resource")
            if not resource.get("requestedPeriod"):
                raise invalid(
                    "The IHE ITI Appointment profile requires requestedPeriod (1..*)",
                    "appointment-resource.requestedPeriod",
                    "required",
                )
            if comment and "comment" not in resource:
                resource = {**resource, "comment": comment}
            match resource["status"]:
                case "pending":
                    return self._book_new(base, resource, start, end)
                case "booked" if self.book_changes == "as-new":
                    return self._book_new(base, {k: v for k, v in resource.items() if k != "id"}, start, end)
                case "booked":
                    return self._book_change(base, resource, start, end)
                case "cancelled" if self.book_changes == "ignore-status" and "start" in resource:
                    kept = {k: v for k, v in resource.items() if k != "cancelationReason"}
                    return self._book_change(base, {**kept, "status": "booked"}, start, end)
                case "cancelled":
                    return self._book_cancel(base, resource)
            raise invalid(
                "appointment-resource.status must be pending, booked or cancelled",
                "appointment-resource.status",
                "code-invalid",
            )

    def _book_reference(self, base: str, ref: str, comment: str | None) -> Json:
        held = self.db["Appointment"].get(ref)
        if held is not None and ref in self.holds:
            self._expire_holds()
            if ref not in self.holds:
                raise taken()
            resource = {**held.resource, "status": "booked"}
            if comment:
                resource["comment"] = comment
            resource["participant"] = [{**p, "status": "accepted"} for p in resource["participant"]]
            del self.holds[ref]
            return self._op_bundle(base, self._render(self._put("Appointment", resource, ref)))
        proposal = self.proposals.get(ref)
        if proposal is None:
            raise FhirError(404, "not-found", "appointment-reference names no proposed or held appointment")
        if not any(p["actor"]["reference"].startswith("Patient/") for p in proposal.resource["participant"]):
            raise invalid(
                "A proposal booked by reference needs its patient (send patient-reference to $find)",
                "appointment-reference",
                "required",
            )
        resource = {k: v for k, v in proposal.resource.items() if k not in ("id", "meta")}
        if comment:
            resource["comment"] = comment
        del self.proposals[ref]
        return self._book_new(base, {**resource, "status": "pending"}, proposal.start, proposal.end)

    def _book_new(self, base: str, resource: Json, start: datetime.datetime, end: datetime.datetime) -> Json:
        practitioner_id = self._participant_id(resource, "Practitioner")
        location_id = self._participant_id(resource, "Location")
        if practitioner_id is None or location_id is None or self._participant_id(resource, "Patient") is None:
            raise invalid(
                "A booking needs a Practitioner, a Location and a Patient participant",
                "appointment-resource.participant",
                "required",
            )
        if not self._staffed(practitioner_id, location_id, start, end) or self._busy(practitioner_id, start, end, None):
            raise taken()
        if (fault := self.faults.misstore("POST", f"{BASE}/Appointment/$book")) is not None:
            start, end = fault.misstored(start, end)
        stored_body = {
            **{k: v for k, v in resource.items() if k not in ("id", "meta")},
            "status": "booked",
            "start": utc_text(start),
            "end": utc_text(end),
            "created": utc_text(self._now()),
            "participant": [{**p, "status": "accepted"} for p in resource["participant"]],
        }
        return self._op_bundle(base, self._render(self._put("Appointment", stored_body)))

    def _existing(self, resource: Json) -> Stored:
        appointment_id = resource.get("id")
        existing = self.db["Appointment"].get(appointment_id) if isinstance(appointment_id, str) else None
        if existing is None:
            raise FhirError(404, "not-found", "A modification or cancellation names an appointment not known here")
        return existing

    def _book_change(self, base: str, resource: Json, start: datetime.datetime, end: datetime.datetime) -> Json:
        existing = self._existing(resource)
        old = existing.resource
        if old["status"] not in ACTIVE_STATUSES:
            raise FhirError(422, "business-rule", "Only a live appointment can be modified")
        practitioner_id = self._participant_id(resource, "Practitioner")
        location_id = self._participant_id(resource, "Location") or self._participant_id(old, "Location")
        if practitioner_id is None or location_id is None:
            raise invalid(
                "A modification keeps a Practitioner and a Location participant",
                "appointment-resource.participant",
                "required",
            )
        old_start = datetime.datetime.fromisoformat(old["start"].replace("Z", "+00:00"))
        old_end = datetime.datetime.fromisoformat(old["end"].replace("Z", "+00:00"))
        moved = (start, end) != (old_start, old_end) or practitioner_id != self._participant_id(old, "Practitioner")
        # A change is checked against the calendar only: booking hours and lead time rule what is proposed and newly
        # booked, while the clinic may move an existing appointment anywhere the practitioner is free.
        if moved and (end <= start or self._busy(practitioner_id, start, end, old["id"])):
            raise taken()
        if moved and (fault := self.faults.misstore("POST", f"{BASE}/Appointment/$book")) is not None:
            start, end = fault.misstored(start, end)
        body = {k: v for k, v in resource.items() if k != "meta"}
        body.update(start=utc_text(start), end=utc_text(end), status="booked")
        if "created" in old:
            body["created"] = old["created"]
        return self._op_bundle(base, self._render(self._put("Appointment", body, old["id"])))

    def _book_cancel(self, base: str, resource: Json) -> Json:
        existing = self._existing(resource)
        old = existing.resource
        body = {**old, "status": "cancelled"}
        for name in ("cancelationReason", "comment"):
            if name in resource:
                body[name] = resource[name]
        self.holds.pop(old["id"], None)
        return self._op_bundle(base, self._render(self._put("Appointment", body, old["id"])))

    # ------------------------------------------------------------------ control (the clinic's own screens)

    def set_status(self, appointment_id: str, status: str) -> None:
        """What the clinic does in its own screens (arrived, no-show): the IHE dialect has no update interaction."""
        with self._lock:
            stored = self.db["Appointment"].get(appointment_id)
            if stored is None:
                raise not_found("Appointment", appointment_id)
            if status not in APPOINTMENT_STATUSES:
                raise invalid("not an AppointmentStatus", "status", "code-invalid")
            self._put("Appointment", {**stored.resource, "status": status}, appointment_id)

    def store(self, resource_type: str, resource: Json) -> str:
        """A record the clinic keeps in its own screens, stored as given under a new id (an appointment on the
        waitlist without times, a practitioner, one with no Location): the id."""
        with self._lock:
            body = dict(resource)
            if resource_type == "Appointment":
                body.setdefault("created", utc_text(self._now()))
            return str(self._put(resource_type, body).resource["id"])

    def edit(self, resource_type: str, resource_id: str, changes: Json) -> None:
        """The clinic editing a record in its own screens: a new version with `changes` merged in."""
        with self._lock:
            stored = self.db[resource_type].get(resource_id)
            if stored is None:
                raise not_found(resource_type, resource_id)
            self._put(resource_type, {**stored.resource, **changes}, resource_id)

    def delete(self, resource_type: str, resource_id: str) -> None:
        """The clinic deleting a record (http.html#delete): reads answer 410 from then on, searches leave it out,
        and history keeps its versions followed by a delete entry."""
        with self._lock:
            stored = self.db[resource_type].pop(resource_id, None)
            if stored is None:
                raise not_found(resource_type, resource_id)
            self.deleted[resource_type][resource_id] = (stored, stored.version + 1, self._stamp())
            self.holds.pop(resource_id, None)

    def on_request(
        self,
        matches: Callable[[str, str, list[tuple[str, str]]], bool],
        action: Callable[[], None],
        *,
        after: bool = False,
    ) -> None:
        """A test hook (`Hook`): `action` runs once, before (or after) the first FHIR request `matches` accepts."""
        with self._lock:
            self.hooks.append(Hook(matches, action, after))

    def _fire(self, method: str, path: str, pairs: list[tuple[str, str]], *, after: bool) -> None:
        with self._lock:
            due = [h for h in self.hooks if h.after == after and h.matches(method, path, pairs)]
            for hook in due:
                self.hooks.remove(hook)
        for hook in due:
            hook.action()

    # ------------------------------------------------------------------ history (http.html#history)

    def history_bundle(
        self, base: str, resource_type: str, resource_id: str | None, pairs: list[tuple[str, str]]
    ) -> Json:
        """Type or instance history, newest first: every version at or after `_since`, a delete as an entry without
        a resource whose `request` is `DELETE [type]/[id]`; `_count` and `_offset` page."""
        since: datetime.datetime | None = None
        count, offset = DEFAULT_COUNT, 0
        for key, value in pairs:
            if key == "_since":
                since = parse_instant(value, "_since")
            elif key == "_count":
                count = self._int(value, "_count", 0, MAX_COUNT)
            elif key == "_offset":
                offset = self._int(value, "_offset", 0, 10**9)
        rows: list[tuple[datetime.datetime, int, Json]] = []
        with self._lock:
            live = [(i, s, None) for i, s in self.db[resource_type].items()]
            gone = [(i, s, (v, at)) for i, (s, v, at) in self.deleted[resource_type].items()]
            for rid, stored, deletion in [*live, *gone]:
                if resource_id is not None and rid != resource_id:
                    continue
                url = f"{base}/{resource_type}/{rid}"
                versions = [*stored.history, (stored.version, stored.resource, stored.last_updated)]
                for version, body, stamp in versions:
                    created = version == 1
                    entry = {
                        "fullUrl": url,
                        "resource": self._rendered(body, version, stamp),
                        "request": {
                            "method": "POST" if created else "PUT",
                            "url": resource_type if created else f"{resource_type}/{rid}",
                        },
                        "response": {
                            "status": "201 Created" if created else "200 OK",
                            "etag": f'W/"{version}"',
                            "lastModified": utc_text(stamp),
                        },
                    }
                    rows.append((stamp, version, entry))
                if deletion is not None:
                    version, stamp = deletion
                    entry = {
                        "fullUrl": url,
                        "request": {"method": "DELETE", "url": f"{resource_type}/{rid}"},
                        "response": {
                            "status": "204 No Content",
                            "etag": f'W/"{version}"',
                            "lastModified": utc_text(stamp),
                        },
                    }
                    rows.append((stamp, version, entry))
        if resource_id is not None and not rows and since is None:
            raise not_found(resource_type, resource_id)
        rows = [r for r in rows if since is None or r[0] >= since]
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        path = f"{resource_type}/{resource_id}/_history" if resource_id is not None else f"{resource_type}/_history"

        def link(at: int) -> str:
            query = [*([("_since", utc_text(since))] if since is not None else []), ("_count", str(count))]
            if at:
                query.append(("_offset", str(at)))
            return f"{base}/{path}?{urllib.parse.urlencode(query)}"

        links = [{"relation": "self", "url": link(offset)}]
        if offset + count < len(rows):
            links.append({"relation": "next", "url": link(offset + count)})
        bundle: Json = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "history",
            "total": len(rows),
            "link": links,
            "entry": [r[2] for r in rows[offset : offset + count]],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return bundle

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(body: Json | None, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
            content = b"" if body is None else msgspec.json.encode(body)
            return Response(
                content, status_code=status, media_type=FHIR_JSON if body is not None else None, headers=headers
            )

        def resource_reply(base: str, stored: Stored, status: int, prefer: str) -> Response[bytes]:
            rendered = em._render(stored)
            rtype, rid = rendered["resourceType"], rendered["id"]
            headers = {
                "ETag": f'W/"{stored.version}"',
                "Last-Modified": stored.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            }
            if status == 201:
                headers["Location"] = f"{base}/{rtype}/{rid}/_history/{stored.version}"
            if "return=minimal" in prefer:
                return reply(None, status, headers)
            if "return=operationoutcome" in prefer.lower():
                return reply(outcome("informational", severity="information"), status, headers)
            return reply(rendered, status, headers)

        def base_of(request: Request[Any, Any, Any]) -> str:
            return str(request.base_url).rstrip("/") + BASE

        def pairs_of(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
            return urllib.parse.parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)

        def check_accept(request: Request[Any, Any, Any]) -> None:
            accept = request.headers.get("accept", "*/*")
            fmt = request.query_params.get("_format")
            if fmt is not None and "json" not in fmt:
                raise FhirError(406, "not-supported", "Only JSON is served")
            if not any(a in accept for a in ("json", "*/*", "application/*")):
                raise FhirError(406, "not-supported", "Only JSON is served")

        def check_content_type(request: Request[Any, Any, Any]) -> None:
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype not in ("application/fhir+json", "application/json"):
                raise FhirError(415, "not-supported", "Send application/fhir+json")

        async def read_body(request: Request[Any, Any, Any]) -> Json:
            check_content_type(request)
            return em._json(await request.body())

        @route(BASE + "/{path:path}", http_method=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def fhir(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[bytes]:
            method, at, pairs = request.method.upper(), path.strip("/"), pairs_of(request)
            em._fire(method, at, pairs, after=False)
            try:
                return await dispatch(request, path)
            finally:
                em._fire(method, at, pairs, after=True)

        async def dispatch(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
            check_accept(request)
            method = request.method.upper()
            parts = [p for p in path.strip("/").split("/") if p]
            base = base_of(request)
            prefer = request.headers.get("prefer", "")
            strict = "handling=strict" in prefer
            if parts == ["metadata"] and method == "GET":
                return reply(em.capability_statement(base))
            if not parts or parts[0] not in em.db or (parts[0] in ("Schedule", "Slot") and em.dialect != "rest"):
                raise FhirError(404, "not-supported", "This resource type is not supported here")
            rtype = parts[0]
            if rtype == "Appointment" and len(parts) == 2 and parts[1].startswith("$"):
                return await operation(request, parts[1][1:], base)
            if (len(parts) == 1 and method == "GET") or (parts[1:] == ["_search"] and method == "POST"):
                if not em._declares(rtype, "search-type"):
                    raise FhirError(405, "not-supported", f"search is not supported on {rtype}")
                pairs = pairs_of(request)
                if method == "POST":
                    ctype = request.headers.get("content-type", "")
                    if "application/x-www-form-urlencoded" not in ctype:
                        raise FhirError(415, "not-supported", "POST _search takes a form body")
                    pairs += urllib.parse.parse_qsl((await request.body()).decode("latin-1"), keep_blank_values=True)
                query, rows = em.search(rtype, pairs, strict)
                return reply(em._bundle(base, rtype, query, rows))
            if len(parts) == 1 and method == "POST":
                if not em._declares(rtype, "create"):
                    raise FhirError(405, "not-supported", f"create is not supported on {rtype}")
                stored = em.create(rtype, await read_body(request))
                return resource_reply(base, stored, 201, prefer)
            if parts[1:] == ["_history"] and method == "GET":
                if not em._declares(rtype, "history-type"):
                    raise FhirError(405, "not-supported", f"history is not supported on {rtype}")
                return reply(em.history_bundle(base, rtype, None, pairs_of(request)))
            if len(parts) == 3 and parts[2] == "_history" and method == "GET":
                if not em._declares(rtype, "history-instance"):
                    raise FhirError(405, "not-supported", f"history is not supported on {rtype}")
                return reply(em.history_bundle(base, rtype, parts[1], pairs_of(request)))
            if len(parts) == 2 and method == "GET":
                with em._lock:
                    if rtype == "Slot":
                        return reply(em._render(em._read_slot(parts[1])))
                    found = em.db[rtype].get(parts[1])
                    if found is None and parts[1] in em.deleted[rtype]:
                        raise FhirError(410, "deleted", f"{rtype}/{parts[1]} has been deleted")
                    if found is None:
                        raise not_found(rtype, parts[1])
                    return resource_reply(base, found, 200, "")
            if len(parts) == 2 and method == "PUT":
                if not em._declares(rtype, "update"):
                    raise FhirError(405, "not-supported", f"update is not supported on {rtype}")
                stored = em.update(rtype, parts[1], await read_body(request), request.headers.get("if-match"))
                return resource_reply(base, stored, 200, prefer)
            if len(parts) == 4 and parts[2] == "_history" and method == "GET":
                with em._lock:
                    current = em.db[rtype].get(parts[1])
                    if current is None and parts[1] in em.deleted[rtype]:
                        current, deleted_version, _ = em.deleted[rtype][parts[1]]
                        if parts[3] == str(deleted_version):
                            raise FhirError(410, "deleted", f"{rtype}/{parts[1]} was deleted at that version")
                    if current is None:
                        raise not_found(rtype, parts[1])
                    if parts[3] == str(current.version):
                        return resource_reply(base, current, 200, "")
                    for version, body, stamp in current.history:
                        if parts[3] == str(version):
                            return reply(em._rendered(body, version, stamp))
                    raise not_found(rtype, f"{parts[1]}/_history/{parts[3]}")
            raise FhirError(405, "not-supported", f"{method} is not supported here")

        async def operation(request: Request[Any, Any, Any], name: str, base: str) -> Response[bytes]:
            if em.dialect != "ihe" or name not in OPERATIONS:
                raise FhirError(404, "not-supported", f"The operation ${name} is not supported here")
            method = request.method.upper()
            try:
                if name == "find":
                    if method == "GET":
                        return reply(em.find(base, pairs_of(request)))
                    if method != "POST":
                        raise FhirError(405, "not-supported", "$find is GET or POST")
                    params = em._op_params(await read_body(request))
                    return reply(em.find(base, [(p["name"], _param_text(p)) for p in params]))
                if method != "POST":
                    raise FhirError(405, "not-supported", f"${name} is POST")
                body = await read_body(request)
                return reply(em.hold(base, body) if name == "hold" else em.book(base, body))
            except FhirError as exc:
                if name == "find":
                    raise
                # The IG: an unsuccessful $hold/$book returns only an OperationOutcome within the Bundle.
                wrapped = {
                    "resourceType": "Bundle",
                    "id": str(uuid.uuid4()),
                    "type": "searchset",
                    "total": 0,
                    "entry": [{"resource": exc.outcome, "search": {"mode": "outcome"}}],
                }
                return reply(wrapped, exc.status)

        @post(TOKEN_PATH, status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
            form = dict(urllib.parse.parse_qsl((await request.body()).decode("latin-1")))
            status, answer = em._mint(form, request.headers.get("authorization"))
            return Response(
                msgspec.json.encode(answer), status_code=status, media_type=JSON, headers={"Cache-Control": "no-store"}
            )

        @post(
            CONTROL_PREFIX + "/fhir/Appointment/{appointment_id:str}/status/{status:str}",
            status_code=204,
            sync_to_thread=False,
        )
        def mark(appointment_id: FromPath[str], status: FromPath[str]) -> None:
            """Emulator control, not FHIR: the clinic marking arrival or a no-show in its own screens."""
            em.set_status(appointment_id, status)

        def fhir_error(_: Request[Any, Any, Any], exc: FhirError) -> Response[bytes]:
            return reply(exc.outcome, exc.status)

        def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            status = exc.status_code
            code = {404: "not-supported", 405: "not-supported"}.get(status, "processing")
            return reply(outcome(code, diagnostics="Unknown endpoint" if status in (404, 405) else None), status)

        return build_emulator_app(
            self,
            [fhir, token, mark],
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            server_error=self._server_error,
            rejected=self._rejected,
            gate=self._gate,
            exception_handlers={FhirError: fhir_error, HTTPException: http_error},
        )


def _param_text(parameter: Json) -> str:
    """A `$find` Parameters entry as its GET form: a reference's `Type/id`, a value[x] as text."""
    for key, value in parameter.items():
        if key == "valueReference" and isinstance(value, dict):
            return str(value.get("reference", ""))
        if key.startswith("value"):
            return str(value).lower() if isinstance(value, bool) else str(value)
    return ""
