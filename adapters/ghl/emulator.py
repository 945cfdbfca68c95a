"""A stand-in for GoHighLevel's (LeadConnector's) API v2 as a sync *destination*: the gateway writes contacts, custom
field values, tags, appointments and blocked slots into it.

Built from GHL's own documents, not from any client: the OpenAPI files of GoHighLevel/highlevel-api-docs@0af86a4
(`apps/contacts.json`, `apps/locations.json`, `apps/calendars.json`, `apps/custom-fields.json`,
`common/common-schemas.json`), `docs/oauth/Authorization.md`, the repository's issues, and the facts collected in
shared/reference/ghl/destination.md. Paths, wrappers and status codes are the spec's; `GHL-docs` below is that repo.

What it serves (base URL = the emulator root, like https://services.leadconnectorhq.com):
- `GET /locations/{id}`, `GET|POST /locations/{id}/customFields`.
- `POST /contacts/upsert`, `POST /contacts/`, `GET|PUT|DELETE /contacts/{id}`, `GET /contacts/search/duplicate`,
  `POST|DELETE /contacts/{id}/tags`.
- `GET /calendars/`, `POST /calendars/events/appointments`, `GET|PUT /calendars/events/appointments/{id}`,
  `DELETE /calendars/events/{id}`, `GET /calendars/events`, `POST /calendars/events/block-slots`,
  `PUT /calendars/events/block-slots/{id}`, `GET /calendars/blocked-slots`.
- Control routes (not GHL's; no auth, JSON), besides the shared `/_emulator/faults` and `/_emulator/stats`:
  `POST /_emulator/ghl/locations` `{name, time_zone, calendars: [{name, user_email}], country?, scopes?}` → 201 the
  seed; `GET …/locations/{id}/contacts|events|custom-fields` (every stored member, `gender` included; events with
  `kind`: `appointment` or `block_slot`); `POST …/locations/{id}/duplicate-rules` `{allow_duplicates, order}`;
  `POST …/tokens/revoke` `{token}`; `GET|DELETE …/webhooks`; `POST …/quirks` (`GhlQuirks`, below).

Documented behaviour it reproduces:
- Auth is `Authorization: Bearer <Private Integration token>` (`pit-<uuid>`), one location per token. Unknown or
  revoked: 401 `{"statusCode":401,"message":"Invalid token: access token is invalid","error":"Unauthorized"}`
  (common-schemas). Another location's resource: 403 `{"statusCode":403,"message":"The token does not have access
  to this location."}` (the text integrators quote, GHL-docs issue #213). A scope the token lacks: 401 `"The token is
  not authorized for this scope."` (issue #217).
- `Version` is required. Missing: 401 `"version header was not found."`; a value GHL never published: 401
  `"version header is invalid"` (the status and texts of live probes quoted by two integrators; not 400 as one might
  guess). `version_check="spec"` (default) also refuses a published version other than the one the API's OpenAPI
  file declares (contacts, locations, custom fields `2021-07-28`; calendars `2021-04-15`) with that same 401, so a
  client that passes here sends what the spec says. `version_check="runtime"` accepts any published version on any
  path, as the live probes found (CONFLICT between spec and runtime; responses stay v2-shaped even for `v3`).
- Rate limits (Authorization.md; marketplace "rate-limits" page for PITs): a burst of `burst_limit` requests per
  `burst_window_seconds` per token (the PIT's own counter), `daily_limit` per location shared by all its tokens.
  Every authenticated API answer carries `X-RateLimit-Limit-Daily`, `X-RateLimit-Daily-Remaining`,
  `X-RateLimit-Interval-Milliseconds`, `X-RateLimit-Max`, `X-RateLimit-Remaining`; over either limit: 429 with the
  same headers and no `Retry-After` (none is documented). The shared RATE_LIMIT fault answers the same 429.
- Upsert (`UpsertContactDto`, only `locationId` required) follows the location's duplicate rules: when duplicates
  are not allowed it matches by the configured order (email, then phone by default; email case-insensitive, phone
  as E.164) and updates the first match; a later field that belongs to another contact is silently not written
  (spec text and issue #37). When duplicates are allowed, it matches email then phone (duplicate-search text) unless
  `createNewIfDuplicateAllowed: true`, which then creates without looking. Answer 200 `{new, contact, traceId}`.
- `tags` on upsert, create and PUT replaces every tag ("will overwrite all current tags"); the tag endpoints add
  (201) and remove (200), answering `{"tags": [...]}` with the contact's tags after the change.
- Write DTOs refuse unknown members like NestJS's `forbidNonWhitelisted`: 422 `{"statusCode":422,
  "message":["property X should not exist"],"error":"Unprocessable Entity"}` (issues #262, #313; 422 messages are
  arrays). So `PUT /contacts/{id}` with `gender` (or `locationId`, `companyName`: not in `UpdateContactDto`) is a
  422, while upsert takes `gender` and discards it on an existing contact (issue #313).
- `customFields` must be an array (else 422 "customFields must be an array"); each item names its field by `id` or
  `key` and carries `field_value` (snake case, as every input schema says). An item with `fieldValue` or `value`
  instead, or naming no field of this location, is silently dropped. Reads answer `customFields: [{id, value}]`.
- `POST /contacts/` when the location does not allow duplicates and the email or phone exists: 400
  `{"statusCode":400,"message":"This location does not allow duplicated contacts.","meta":{"contactId","contactName",
  "matchingField"}}` (the body integrators parse).
- Unknown contact id: 400 "Contact with id X not found" (integrators quote it; the spec declares no 404).
- `GET /contacts/search/duplicate`: `number` must be URL-encoded (`%2B`): a literal `+` decodes to a space and that
  number matches nothing.
- Custom fields: 201 `{"customField": {...}}`; `fieldKey` is `<model>.<key>`; `dataType` must be one of the 13 of
  `apps/custom-fields.json` (422 otherwise). Delete answers are spelled `succeded` (sic, the spec's).
- Appointments (`AppointmentCreateSchema`): create 200 and edit 200 with the flat `AppointmentSchemaResponse`, get
  200 `{"event": {...}}` (spec and sample), delete `DELETE /calendars/events/{id}` 201 `{"succeeded": true}`.
  Without `ignoreFreeSlotValidation: true` a time taken by another live event of that calendar or user, or in the
  past, is 400 `"The slot you have selected is no longer available."` (the text and status integrators quote).
- Block slots: `calendarId` or `assignedUserId`, one not both (the description; the spec's `required` list names
  `calendarId` and contradicts it), create and edit answer 201.
- Appointment creates, edits and deletes through the API record the marketplace webhook GHL would send
  (`AppointmentCreate|Update|Delete`, shape of shared/reference/ghl/AppointmentCreate.json); tests read them at
  `GET /_emulator/ghl/webhooks` and forward them themselves.
- Issue #64 (create answers 422 yet creates): `POST /_emulator/ghl/quirks {"create_422_after_apply": n}` makes the
  next n successful `POST /contacts/` apply the write and answer 422; `upsert_422_after_apply` does the same for
  `/contacts/upsert`. The shared REJECT fault (which the fault layer answers before any handler runs) stays a plain
  refusal in GHL's 422 shape, with nothing applied. MISSTORE faults apply to appointment creates and edits.
- Unknown paths and methods: 404 `{"statusCode":404,"message":"Cannot GET /x","error":"Not Found"}` (NestJS).

Choices where no source settles it (UNCONFIRMED):
- Token check before the Version check; a 429 is not counted; the burst window is fixed, opened by its first
  request; the daily counter resets at 00:00 UTC.
- "version header is invalid" comes as `{"status":401,"message":…,"error":"Error","traceId":…}` (one integrator's
  fake reproduces that odd shape); the 429 body is `{"statusCode":429,"message":"Too Many Requests"}`.
- Upsert answers 200 for a new contact too (the spec declares only 200); `POST /contacts/` 201.
- Tags are stored trimmed and lowercased, de-duplicated; removal is case-insensitive.
- Upsert with neither email nor phone creates a contact. A PUT moving email or phone onto another contact's is the
  same 400 as create. An explicit `null` clears a member.
- Phones are stored E.164 (`phonenumbers`, the location's country, default from the time zone: AU for
  `Australia/*`, else US); an unparseable phone is kept as its digits.
- `email` must look like an e-mail (422 "email must be an email"); `dateOfBirth` takes the 8 documented formats
  (422 otherwise) and reads back `YYYY-MM-DD` (create answers `…T00:00:00.000Z`, as `CreateContactSchema` shows).
- Custom field values are coerced loosely: text types take strings (numbers become strings), NUMERICAL/MONETORY
  numbers or numeric strings, CHECKBOX/MULTIPLE_OPTIONS/TEXTBOX_LIST lists (a string becomes a one-item list),
  FILE_UPLOAD objects; anything else is silently dropped; `null`/`""` clears. `key` may be `x` or `contact.x`. DATE
  values are kept as sent.
- Custom field keys: lowercase, runs of non-alphanumerics become one `_`, trimmed. A second field with the same key
  in the same model is 400 "A custom field with the key contact.x already exists." (text invented). `options` sets
  `picklistOptions`; `model` defaults to `contact`, and so does the list's `model`.
- Calendar writes take unknown members silently; their validation errors are 400 with a message array (the spec
  declares no 422 there). Unknown appointment or event id: 400 "Event not found"; unknown calendar, contact or user:
  400. `endTime` defaults to start + 30 minutes. Slot validation knows no open hours: only overlaps and the past.
  An edit is re-validated only when its time or calendar changes.
- Times may carry any offset (`Z` included); one without an offset is read in the location's zone. All event times
  are answered in the location's zone with its offset, seconds precision.
- `GET /calendars/events` and `/calendars/blocked-slots` list what overlaps the window (ms), cancelled included;
  `groupId` matches nothing (no groups are modelled).
- Webhooks are recorded for `toNotify: false` too (webhooks are not automations); none for block slots; `source` is
  `third_party`; `groupId` and `notes` are empty strings.
- `stats().appointments` counts appointments (not block slots); `active_appointments` those not cancelled.
"""

from __future__ import annotations

import datetime
import re
import secrets
import string
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, cast

import litestar
import msgspec
import phonenumbers
from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody

from adapters.emulation import (
    CONTROL_PREFIX,
    Emulator,
    EmulatorStats,
    Fault,
    FaultInjector,
    RawResponse,
    Scope,
    Traffic,
    build_emulator_app,
)

UTC = datetime.UTC
JSON = "application/json; charset=utf-8"
GHL_CONTROL = CONTROL_PREFIX + "/ghl"

CONTACTS_VERSION = "2021-07-28"  # contacts, locations, custom fields
CALENDARS_VERSION = "2021-04-15"
PUBLISHED_VERSIONS = frozenset({"2021-04-15", "2021-07-28", "2023-02-21", "v3"})

ALL_SCOPES = frozenset(
    {
        "locations.readonly",
        "locations/customFields.readonly",
        "locations/customFields.write",
        "contacts.readonly",
        "contacts.write",
        "calendars.readonly",
        "calendars/events.readonly",
        "calendars/events.write",
    }
)

DATA_TYPES = (
    "TEXT", "LARGE_TEXT", "NUMERICAL", "PHONE", "MONETORY", "CHECKBOX", "SINGLE_OPTIONS", "MULTIPLE_OPTIONS", "DATE",
    "TEXTBOX_LIST", "FILE_UPLOAD", "RADIO", "EMAIL",
)  # fmt: skip
TEXT_TYPES = frozenset({"TEXT", "LARGE_TEXT", "PHONE", "EMAIL", "SINGLE_OPTIONS", "RADIO", "DATE"})
NUMBER_TYPES = frozenset({"NUMERICAL", "MONETORY"})
LIST_TYPES = frozenset({"CHECKBOX", "MULTIPLE_OPTIONS", "TEXTBOX_LIST"})
FIELD_MODELS = ("contact", "opportunity")
APPOINTMENT_STATUSES = ("new", "confirmed", "cancelled", "showed", "noshow", "invalid")
MEETING_LOCATION_TYPES = ("custom", "zoom", "gmeet", "phone", "address", "ms_teams", "google")
DUPLICATE_FIELDS = ("email", "phone")
DEFAULT_SLOT = datetime.timedelta(minutes=30)

# Members of the contact write DTOs (apps/contacts.json): anything else is "property X should not exist".
_COMMON_CONTACT = frozenset(
    {
        "firstName", "lastName", "name", "email", "phone", "address1", "city", "state", "postalCode", "website",
        "timezone", "dnd", "dndSettings", "inboundDndSettings", "tags", "customFields", "source", "dateOfBirth",
        "country", "assignedTo",
    }
)  # fmt: skip
UPDATE_MEMBERS = _COMMON_CONTACT
CREATE_MEMBERS = _COMMON_CONTACT | {"locationId", "gender", "companyName"}
UPSERT_MEMBERS = CREATE_MEMBERS | {"createNewIfDuplicateAllowed"}
# Members that may be null (`nullable: true` in the spec); the others must be strings when present.
_NULLABLE = frozenset(
    {"firstName", "lastName", "name", "email", "phone", "address1", "city", "state", "website", "timezone",
     "companyName", "dateOfBirth"}
)  # fmt: skip
_STRINGS = frozenset(
    {"firstName", "lastName", "name", "email", "phone", "address1", "city", "state", "postalCode", "website",
     "timezone", "source", "country", "companyName", "assignedTo", "gender", "locationId"}
)  # fmt: skip
_DOB_FORMATS = ("%Y/%m/%d", "%m/%d/%Y", "%Y-%m-%d", "%m-%d-%Y", "%Y.%m.%d", "%m.%d.%Y", "%Y_%m_%d", "%m_%d_%Y")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ID_ALPHABET = string.ascii_letters + string.digits

CALLER_KEY = "ghl.caller"
RATE_KEY = "ghl.rate_headers"

Req: TypeAlias = Request[Any, Any, Any]


# ---------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An answer in GHL's NestJS error shape."""

    def __init__(self, status: int, message: str | list[str], *, error: str | None = None, **extra: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body: dict[str, Any] = {"statusCode": status, "message": message}
        if error is not None:
            self.body["error"] = error
        self.body.update(extra)


def bad_request(message: str | list[str]) -> ApiError:
    return ApiError(400, message, error="Bad Request") if isinstance(message, list) else ApiError(400, message)


def unprocessable(messages: list[str]) -> ApiError:
    return ApiError(422, messages, error="Unprocessable Entity")


def forbidden() -> ApiError:
    return ApiError(403, "The token does not have access to this location.")


def contact_not_found(contact_id: str) -> ApiError:
    return ApiError(400, f"Contact with id {contact_id} not found")


def event_not_found() -> ApiError:
    return ApiError(400, "Event not found")


def slot_taken() -> ApiError:
    return ApiError(400, "The slot you have selected is no longer available.", error="Bad Request")


# ---------------------------------------------------------------------------------------------- seeds and control


class GhlCalendarSeed(msgspec.Struct):
    id: str
    name: str
    user_id: str
    user_email: str


class GhlLocationSeed(msgspec.Struct):
    """What a test or the demo needs to point a gateway location at this emulator."""

    location_id: str
    token: str
    calendars: list[GhlCalendarSeed]


class GhlQuirks(msgspec.Struct, kw_only=True):
    """Issue #64: the next n successful creates (upserts) are applied and then answered 422 with `message`."""

    create_422_after_apply: int = 0
    upsert_422_after_apply: int = 0
    message: str | None = None


class _CalendarIn(msgspec.Struct):
    name: str
    user_email: str


class _LocationIn(msgspec.Struct, kw_only=True):
    name: str
    time_zone: str = "Australia/Melbourne"
    calendars: list[_CalendarIn] = msgspec.field(default_factory=list)
    country: str | None = None
    scopes: list[str] | None = None


class _DuplicateRulesIn(msgspec.Struct, kw_only=True):
    allow_duplicates: bool
    order: list[str] = msgspec.field(default_factory=lambda: list(DUPLICATE_FIELDS))


class _RevokeIn(msgspec.Struct):
    token: str


# ---------------------------------------------------------------------------------------------- state


@dataclass
class UserRec:
    id: str
    email: str
    name: str


@dataclass
class CalendarRec:
    id: str
    name: str
    user_id: str


@dataclass
class FieldRec:
    id: str
    location_id: str
    name: str
    key: str  # without the model prefix
    model: str
    data_type: str
    placeholder: str
    position: int
    options: list[str]

    @property
    def field_key(self) -> str:
        return f"{self.model}.{self.key}"


@dataclass
class LocationRec:
    id: str
    company_id: str
    name: str
    time_zone: str
    country: str
    users: dict[str, UserRec] = field(default_factory=dict)
    calendars: dict[str, CalendarRec] = field(default_factory=dict)
    fields: dict[str, FieldRec] = field(default_factory=dict)
    allow_duplicates: bool = False
    duplicate_order: list[str] = field(default_factory=lambda: list(DUPLICATE_FIELDS))

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


@dataclass
class TokenRec:
    token: str
    location_id: str
    scopes: frozenset[str]
    revoked: bool = False


@dataclass
class ContactRec:
    id: str
    location_id: str
    data: dict[str, Any]  # the DTO members as stored (phone E.164, dateOfBirth YYYY-MM-DD)
    tags: list[str]
    custom: dict[str, Any]  # field id -> value
    added: datetime.datetime
    updated: datetime.datetime

    @property
    def email_key(self) -> str | None:
        return _email_key(self.data.get("email"))

    @property
    def phone_key(self) -> str | None:
        phone = self.data.get("phone")
        return phone if isinstance(phone, str) and phone else None

    @property
    def display_name(self) -> str | None:
        name = self.data.get("name")
        if isinstance(name, str) and name.strip():
            return name
        parts = [self.data.get("firstName"), self.data.get("lastName")]
        joined = " ".join(p for p in parts if isinstance(p, str) and p)
        return joined or None


@dataclass
class EventRec:
    id: str
    location_id: str
    kind: Literal["appointment", "block_slot"]
    calendar_id: str | None
    user_id: str | None
    contact_id: str | None
    title: str
    start: datetime.datetime
    end: datetime.datetime
    added: datetime.datetime
    updated: datetime.datetime
    status: str = "confirmed"
    address: str | None = None
    description: str | None = None
    meeting_location_type: str = "default"

    def live(self) -> bool:
        return self.kind == "block_slot" or self.status != "cancelled"

    def overlaps(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return self.start < end and self.end > start


class RateLimiter:
    """Burst per token (a fixed window opened by its first request) and a daily count per location (UTC day)."""

    def __init__(self, burst: int, window: float, daily: int, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.window = window
        self.daily = daily
        self.clock = clock
        self._lock = threading.Lock()
        self._bursts: dict[str, tuple[float, int]] = {}
        self._days: dict[str, tuple[int, int]] = {}

    def headers(self, burst_used: int, daily_used: int) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit-Daily", str(self.daily)),
            ("X-RateLimit-Daily-Remaining", str(max(0, self.daily - daily_used))),
            ("X-RateLimit-Interval-Milliseconds", str(round(self.window * 1000))),
            ("X-RateLimit-Max", str(self.burst)),
            ("X-RateLimit-Remaining", str(max(0, self.burst - burst_used))),
        ]

    def hit(self, token: str, location_id: str) -> tuple[bool, list[tuple[str, str]]]:
        """Count one request if both budgets allow it; (allowed, the headers to answer with)."""
        with self._lock:
            now = self.clock()
            start, used = self._bursts.get(token, (now, 0))
            if now >= start + self.window:
                start, used = now, 0
            today = int(now // 86400)
            day, daily_used = self._days.get(location_id, (today, 0))
            if day != today:
                day, daily_used = today, 0
            allowed = used < self.burst and daily_used < self.daily
            if allowed:
                used += 1
                daily_used += 1
            self._bursts[token] = (start, used)
            self._days[location_id] = (day, daily_used)
            return allowed, self.headers(used, daily_used)


# ---------------------------------------------------------------------------------------------- small helpers


def _email_key(value: object) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _phone(value: str, country: str) -> str:
    """E.164 when `phonenumbers` can read it in the location's country, else the digits (with a leading +)."""
    try:
        parsed = phonenumbers.parse(value, country)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is not None and phonenumbers.is_possible_number(parsed):
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    digits = re.sub(r"\D", "", value)
    return ("+" + digits) if value.strip().startswith("+") else digits


def _tag(value: str) -> str:
    return value.strip().lower()


def _merge_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for t in tags:
        tag = _tag(t)
        if tag and tag not in out:
            out.append(tag)
    return out


def _field_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _parse_time(value: object, zone: zoneinfo.ZoneInfo) -> datetime.datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _parse_millis(value: str | None) -> datetime.datetime | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return datetime.datetime.fromtimestamp(int(value) / 1000, UTC)


def _local(moment: datetime.datetime, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _utc(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dob(value: str) -> str | None:
    for fmt in _DOB_FORMATS:
        try:
            return datetime.datetime.strptime(value.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _number(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() and "." not in value else number
    return None


_DROP = object()


def _coerce(data_type: str, value: object) -> object:
    """A `field_value` as GHL would store it for `data_type`, None to clear, or _DROP (silently ignored)."""
    if value is None or value == "" or value == []:
        return None
    if data_type in TEXT_TYPES:
        if isinstance(value, str):
            return value
        return str(value) if _number(value) is not None else _DROP
    if data_type in NUMBER_TYPES:
        number = _number(value)
        return _DROP if number is None else number
    if data_type in LIST_TYPES:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        return _DROP
    if data_type == "FILE_UPLOAD":
        return value if isinstance(value, dict) else _DROP
    return _DROP


def _default_country(time_zone: str) -> str:
    return "AU" if time_zone.startswith("Australia/") else "US"


# ---------------------------------------------------------------------------------------------- the emulator


class GhlEmulator(Emulator):
    """One in-memory GHL agency: locations, their users, calendars, custom fields, contacts and events."""

    slug: ClassVar[str] = "ghl"

    def __init__(
        self,
        burst_limit: int = 100,
        burst_window_seconds: float = 10.0,
        daily_limit: int = 200_000,
        clock: Callable[[], float] = time.time,
        *,
        version_check: Literal["spec", "runtime"] = "spec",
        max_exchanges: int = 5000,
    ) -> None:
        self.clock = clock
        self.version_check = version_check
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.limiter = RateLimiter(burst_limit, burst_window_seconds, daily_limit, clock)
        self._lock = threading.RLock()
        self.locations: dict[str, LocationRec] = {}
        self.tokens: dict[str, TokenRec] = {}
        self.contacts: dict[str, ContactRec] = {}
        self.events: dict[str, EventRec] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.quirks = GhlQuirks()

    # ------------------------------------------------------------------ Emulator plumbing

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        raise NotImplementedError("GHL is a sync destination, not an EMR: seed it with add_location()")

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        raise NotImplementedError("GHL is a sync destination, not an EMR: revoke a token with revoke_token()")

    def stats(self) -> EmulatorStats:
        with self._lock:
            appointments = [e for e in self.events.values() if e.kind == "appointment"]
            active = sum(1 for e in appointments if e.status != "cancelled")
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=len(appointments),
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), UTC)

    def _new_id(self) -> str:
        while True:
            candidate = "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))
            if candidate not in self.contacts and candidate not in self.events and candidate not in self.locations:
                return candidate

    # ------------------------------------------------------------------ seeding (Python API)

    def add_location(
        self,
        name: str,
        time_zone: str = "Australia/Melbourne",
        calendars: Sequence[tuple[str, str]] = (),
        *,
        country: str | None = None,
        scopes: Iterable[str] | None = None,
    ) -> GhlLocationSeed:
        """A sub-account with one user per distinct e-mail, one calendar per (name, user e-mail), and a PIT."""
        zoneinfo.ZoneInfo(time_zone)  # refuse an unknown zone now rather than on the first event
        with self._lock:
            loc = LocationRec(
                id=self._new_id(),
                company_id=self._new_id(),
                name=name,
                time_zone=time_zone,
                country=(country or _default_country(time_zone)).upper(),
            )
            by_email: dict[str, UserRec] = {}
            seeds: list[GhlCalendarSeed] = []
            for calendar_name, email in calendars:
                key = email.strip().lower()
                user = by_email.get(key)
                if user is None:
                    user = UserRec(self._new_id(), email.strip(), email.split("@")[0])
                    by_email[key] = user
                    loc.users[user.id] = user
                calendar = CalendarRec(self._new_id(), calendar_name, user.id)
                loc.calendars[calendar.id] = calendar
                seeds.append(GhlCalendarSeed(calendar.id, calendar_name, user.id, user.email))
            self.locations[loc.id] = loc
            token = f"pit-{uuid.uuid4()}"
            self.tokens[token] = TokenRec(token, loc.id, frozenset(ALL_SCOPES if scopes is None else scopes))
        return GhlLocationSeed(location_id=loc.id, token=token, calendars=seeds)

    def revoke_token(self, token: str) -> None:
        """The token stops working at once ("Rotate … now" in GHL's UI)."""
        with self._lock:
            rec = self.tokens.get(token)
            if rec is not None:
                rec.revoked = True

    def set_duplicate_rules(
        self, location_id: str, allow_duplicates: bool, order: Sequence[str] = DUPLICATE_FIELDS
    ) -> None:
        """The location's "Allow Duplicate Contact" setting and its search order (email, phone)."""
        if not order or any(f not in DUPLICATE_FIELDS for f in order) or len(set(order)) != len(order):
            raise ValueError(f"order must list 'email' and/or 'phone' once each, not {list(order)}")
        with self._lock:
            loc = self._location(location_id)
            loc.allow_duplicates = allow_duplicates
            loc.duplicate_order = list(order)

    def set_quirks(self, quirks: GhlQuirks) -> None:
        with self._lock:
            self.quirks = msgspec.structs.replace(quirks)

    def clear_webhooks(self) -> None:
        with self._lock:
            self.webhooks.clear()

    def _location(self, location_id: str) -> LocationRec:
        loc = self.locations.get(location_id)
        if loc is None:
            raise ApiError(404, f"Location {location_id} not found")
        return loc

    # ------------------------------------------------------------------ control views

    def contact_views(self, location_id: str) -> list[dict[str, Any]]:
        """Every contact of the location with every stored member (gender included), tags and customFields."""
        with self._lock:
            loc = self._location(location_id)
            return [
                {**self._contact(c), "gender": c.data.get("gender")}
                for c in self.contacts.values()
                if c.location_id == loc.id
            ]

    def event_views(self, location_id: str) -> list[dict[str, Any]]:
        """Appointments and block slots, each with `kind`."""
        with self._lock:
            loc = self._location(location_id)
            out: list[dict[str, Any]] = []
            for e in sorted(self.events.values(), key=lambda e: e.start):
                if e.location_id != loc.id:
                    continue
                body = self._event(e, loc) if e.kind == "appointment" else self._block(e, loc)
                out.append({"kind": e.kind, **body})
            return out

    def custom_field_views(self, location_id: str) -> list[dict[str, Any]]:
        with self._lock:
            loc = self._location(location_id)
            return [self._field(f) for f in loc.fields.values()]

    # ------------------------------------------------------------------ gate: token, Version, rate limit

    def _gate(self, scope: Scope) -> RawResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._lock:
            rec = self.tokens.get(token)
        if rec is None or rec.revoked:
            body = {"statusCode": 401, "message": "Invalid token: access token is invalid", "error": "Unauthorized"}
            return self._raw(401, body)
        version = headers.get("version", "").strip()
        if not version:
            return self._raw(401, {"statusCode": 401, "message": "version header was not found."})
        if not self._version_ok(scope["path"], version):
            trace = str(uuid.uuid4())
            return self._raw(
                401, {"status": 401, "message": "version header is invalid", "error": "Error", "traceId": trace}
            )
        allowed, rate_headers = self.limiter.hit(token, rec.location_id)
        if not allowed:
            return self._raw(429, {"statusCode": 429, "message": "Too Many Requests"}, rate_headers)
        scope[CALLER_KEY] = rec
        scope[RATE_KEY] = rate_headers
        return None

    def _version_ok(self, path: str, version: str) -> bool:
        if version not in PUBLISHED_VERSIONS:
            return False
        if self.version_check == "runtime":
            return True
        return version == (CALENDARS_VERSION if path.startswith("/calendars") else CONTACTS_VERSION)

    def _raw(self, status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> RawResponse:
        return RawResponse(status, msgspec.json.encode(body), JSON, list(headers or []))

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        """The shared RATE_LIMIT fault: GHL's 429, the budget shown as spent."""
        return self._raw(
            429, {"statusCode": 429, "message": "Too Many Requests"}, self.limiter.headers(self.limiter.burst, 0)
        )

    def _rejected_fault(self, fault: Fault) -> RawResponse:
        """A REJECT in GHL's validation shape (422, message array), nothing applied."""
        status = fault.status if fault.status != 503 else 422
        text = fault.message or "Unprocessable Entity"
        return self._raw(status, {"statusCode": status, "message": [text], "error": "Unprocessable Entity"})

    # ------------------------------------------------------------------ request helpers

    def _caller(self, request: Request[Any, Any, Any], needed: str) -> LocationRec:
        """The token's location, once the token is known to hold `needed`."""
        rec = cast(dict[str, Any], request.scope).get(CALLER_KEY)
        if not isinstance(rec, TokenRec):  # the gate always sets it; a route the gate skipped is a bug
            raise ApiError(401, "Invalid token: access token is invalid", error="Unauthorized")
        if needed not in rec.scopes:
            raise ApiError(401, "The token is not authorized for this scope.")
        return self.locations[rec.location_id]

    @staticmethod
    def _own(loc: LocationRec, location_id: object) -> None:
        if location_id != loc.id:
            raise forbidden()

    @staticmethod
    async def _body(request: Request[Any, Any, Any]) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise ApiError(400, "Unexpected token in JSON", error="Bad Request") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Unexpected token in JSON", error="Bad Request")
        return body

    @staticmethod
    def _reply(request: Request[Any, Any, Any], content: Any, status: int = 200) -> Response[bytes]:
        headers = dict(cast(dict[str, Any], request.scope).get(RATE_KEY, []))
        return Response(msgspec.json.encode(content), status_code=status, media_type=JSON, headers=headers)

    # ------------------------------------------------------------------ rendering

    def _contact(self, c: ContactRec, *, created: bool = False) -> dict[str, Any]:
        d = c.data
        loc = self.locations[c.location_id]
        body: dict[str, Any] = {"id": c.id, "locationId": c.location_id}
        first, last, name = d.get("firstName"), d.get("lastName"), c.display_name
        email = d.get("email")
        members: dict[str, Any] = {
            "name": name,
            "firstName": first,
            "lastName": last,
            "email": email,
            "emailLowerCase": email.lower() if isinstance(email, str) else None,
            "timezone": d.get("timezone"),
            "companyName": d.get("companyName"),
            "phone": d.get("phone"),
            "dnd": bool(d.get("dnd", False)),
            "dndSettings": d.get("dndSettings"),
            "inboundDndSettings": d.get("inboundDndSettings"),
            "type": "lead",
            "source": d.get("source"),
            "assignedTo": d.get("assignedTo"),
            "address1": d.get("address1"),
            "city": d.get("city"),
            "state": d.get("state"),
            "country": d.get("country"),
            "postalCode": d.get("postalCode"),
            "website": d.get("website"),
            "gender": d.get("gender"),
            "firstNameLowerCase": first.lower() if isinstance(first, str) else None,
            "lastNameLowerCase": last.lower() if isinstance(last, str) else None,
            "fullNameLowerCase": name.lower() if name else None,
        }
        body.update({k: v for k, v in members.items() if v is not None})
        dob = d.get("dateOfBirth")
        if isinstance(dob, str):
            body["dateOfBirth"] = f"{dob}T00:00:00.000Z" if created else dob
        body["tags"] = list(c.tags)
        body["customFields"] = [{"id": fid, "value": v} for fid, v in c.custom.items() if fid in loc.fields]
        body["dateAdded"] = _utc(c.added)
        body["dateUpdated"] = _utc(c.updated)
        if created:
            body["deleted"] = False
        return body

    def _field(self, f: FieldRec) -> dict[str, Any]:
        return {
            "id": f.id,
            "name": f.name,
            "fieldKey": f.field_key,
            "placeholder": f.placeholder,
            "dataType": f.data_type,
            "position": f.position,
            "picklistOptions": list(f.options),
            "locationId": f.location_id,
            "model": f.model,
        }

    def _appointment(self, e: EventRec, loc: LocationRec) -> dict[str, Any]:
        """`AppointmentSchemaResponse` (create and edit answers)."""
        return {
            "id": e.id,
            "calendarId": e.calendar_id,
            "locationId": e.location_id,
            "contactId": e.contact_id,
            "startTime": _local(e.start, loc.zone),
            "endTime": _local(e.end, loc.zone),
            "title": e.title,
            "meetingLocationType": e.meeting_location_type,
            "appointmentStatus": e.status,
            "assignedUserId": e.user_id,
            "address": e.address,
            "isRecurring": False,
        }

    def _event(self, e: EventRec, loc: LocationRec) -> dict[str, Any]:
        """`CalendarEventDTO` (get and list answers)."""
        return {
            "id": e.id,
            "address": e.address,
            "title": e.title,
            "calendarId": e.calendar_id,
            "locationId": e.location_id,
            "contactId": e.contact_id,
            "groupId": "",
            "appointmentStatus": e.status,
            "assignedUserId": e.user_id,
            "users": [e.user_id] if e.user_id else [],
            "notes": "",
            "description": e.description,
            "isRecurring": False,
            "startTime": _local(e.start, loc.zone),
            "endTime": _local(e.end, loc.zone),
            "dateAdded": _local(e.added, loc.zone),
            "dateUpdated": _local(e.updated, loc.zone),
            "assignedResources": [],
        }

    def _block(self, e: EventRec, loc: LocationRec) -> dict[str, Any]:
        """`BlockedSlotSuccessfulResponseDto`."""
        return {
            "id": e.id,
            "locationId": e.location_id,
            "title": e.title,
            "startTime": _local(e.start, loc.zone),
            "endTime": _local(e.end, loc.zone),
            "calendarId": e.calendar_id,
            "assignedUserId": e.user_id,
        }

    def _webhook(self, kind: str, e: EventRec, loc: LocationRec) -> None:
        """Record the marketplace event GHL would deliver (shape of shared/reference/ghl/AppointmentCreate.json)."""
        self.webhooks.append(
            {
                "type": kind,
                "locationId": loc.id,
                "appointment": {
                    "id": e.id,
                    "address": e.address or "",
                    "title": e.title,
                    "calendarId": e.calendar_id,
                    "contactId": e.contact_id,
                    "groupId": "",
                    "appointmentStatus": e.status,
                    "assignedUserId": e.user_id,
                    "users": [e.user_id] if e.user_id else [],
                    "notes": "",
                    "source": "third_party",
                    "startTime": _local(e.start, loc.zone),
                    "endTime": _local(e.end, loc.zone),
                    "dateAdded": _local(e.added, loc.zone),
                    "dateUpdated": _local(e.updated, loc.zone),
                },
            }
        )

    # ------------------------------------------------------------------ contacts

    def _validate_contact(self, body: dict[str, Any], members: frozenset[str]) -> list[str]:
        """class-validator's messages for a contact write DTO (unknown members first)."""
        errors = [f"property {k} should not exist" for k in body if k not in members]
        for k, v in body.items():
            if k not in members:
                continue
            if k in _STRINGS and not isinstance(v, str) and not (v is None and k in _NULLABLE):
                errors.append(f"{k} must be a string")
            elif k == "email" and isinstance(v, str) and v.strip() and not _EMAIL.match(v.strip()):
                errors.append("email must be an email")
            elif k in ("dnd", "createNewIfDuplicateAllowed") and not isinstance(v, bool):
                errors.append(f"{k} must be a boolean value")
            elif k == "tags":
                if not isinstance(v, list):
                    errors.append("tags must be an array")
                elif not all(isinstance(t, str) for t in v):
                    errors.append("each value in tags must be a string")
            elif k == "customFields" and not isinstance(v, list):
                errors.append("customFields must be an array")
            elif k in ("dndSettings", "inboundDndSettings") and not isinstance(v, dict):
                errors.append(f"{k} must be an object")
            elif k == "dateOfBirth" and v is not None and not (isinstance(v, str) and _dob(v)):
                errors.append("dateOfBirth must be a valid date")
        if "locationId" in members and "locationId" not in body:
            errors.append("locationId must be a string")
        return errors

    def _find(self, loc: LocationRec, member: str, key: str, *, exclude: str | None = None) -> ContactRec | None:
        for c in self.contacts.values():
            if c.location_id != loc.id or c.id == exclude:
                continue
            if (c.email_key if member == "email" else c.phone_key) == key:
                return c
        return None

    def _keys(self, loc: LocationRec, body: dict[str, Any]) -> dict[str, str | None]:
        phone = body.get("phone")
        return {
            "email": _email_key(body.get("email")),
            "phone": _phone(phone, loc.country) if isinstance(phone, str) and phone.strip() else None,
        }

    def _duplicate(self, loc: LocationRec, body: dict[str, Any], exclude: str | None = None) -> None:
        """The create refusal when the location does not allow duplicates."""
        if loc.allow_duplicates:
            return
        keys = self._keys(loc, body)
        for member in loc.duplicate_order:
            key = keys[member]
            other = self._find(loc, member, key, exclude=exclude) if key else None
            if other is not None:
                raise ApiError(
                    400,
                    "This location does not allow duplicated contacts.",
                    meta={"contactId": other.id, "contactName": other.display_name, "matchingField": member},
                )

    def _write(self, loc: LocationRec, c: ContactRec, body: dict[str, Any]) -> None:
        """Apply DTO members to a contact (already validated)."""
        for k, v in body.items():
            if k in ("locationId", "createNewIfDuplicateAllowed", "customFields", "tags"):
                continue
            if k == "phone" and isinstance(v, str):
                v = _phone(v, loc.country) if v.strip() else None
            elif k == "dateOfBirth" and isinstance(v, str):
                v = _dob(v)
            if v is None:
                c.data.pop(k, None)
            else:
                c.data[k] = v
        if "tags" in body:
            c.tags = _merge_tags(body["tags"])
        if "customFields" in body:
            self._write_custom(loc, c, body["customFields"])
        c.updated = self._now()

    def _write_custom(self, loc: LocationRec, c: ContactRec, items: list[Any]) -> None:
        contact_fields = {f.id: f for f in loc.fields.values() if f.model == "contact"}
        by_key = {f.key: f for f in contact_fields.values()}
        for item in items:
            if not isinstance(item, dict) or "field_value" not in item:
                continue  # `fieldValue` / `value` are not members of any input schema
            fid, key = item.get("id"), item.get("key")
            fdef = contact_fields.get(fid) if isinstance(fid, str) else None
            if fdef is None and isinstance(key, str):
                fdef = by_key.get(key.removeprefix("contact."))
            if fdef is None:
                continue
            value = _coerce(fdef.data_type, item["field_value"])
            if value is _DROP:
                continue
            if value is None:
                c.custom.pop(fdef.id, None)
            else:
                c.custom[fdef.id] = value

    def _new_contact(self, loc: LocationRec, body: dict[str, Any]) -> ContactRec:
        now = self._now()
        c = ContactRec(self._new_id(), loc.id, {}, [], {}, now, now)
        self._write(loc, c, body)
        self.contacts[c.id] = c
        return c

    def upsert_contact(self, loc: LocationRec, body: dict[str, Any]) -> tuple[ContactRec, bool]:
        errors = self._validate_contact(body, UPSERT_MEMBERS)
        if errors:
            raise unprocessable(errors)
        self._own(loc, body.get("locationId"))
        with self._lock:
            if body.get("createNewIfDuplicateAllowed") is True and loc.allow_duplicates:
                return self._new_contact(loc, body), True
            keys = self._keys(loc, body)
            order = loc.duplicate_order if not loc.allow_duplicates else list(DUPLICATE_FIELDS)
            match: ContactRec | None = None
            matched_on = ""
            for member in order:
                key = keys[member]
                match = self._find(loc, member, key) if key else None
                if match is not None:
                    matched_on = member
                    break
            if match is None:
                return self._new_contact(loc, body), True
            changes = {k: v for k, v in body.items() if k != "gender"}  # issue #313: discarded on an existing contact
            if not loc.allow_duplicates:
                for member in order[order.index(matched_on) + 1 :]:
                    key = keys[member]
                    if key and self._find(loc, member, key, exclude=match.id) is not None:
                        changes.pop(member, None)  # issue #37: the second field is silently not written
            self._write(loc, match, changes)
            return match, False

    def create_contact(self, loc: LocationRec, body: dict[str, Any]) -> ContactRec:
        errors = self._validate_contact(body, CREATE_MEMBERS)
        if errors:
            raise unprocessable(errors)
        self._own(loc, body.get("locationId"))
        with self._lock:
            self._duplicate(loc, body)
            return self._new_contact(loc, body)

    def update_contact(self, loc: LocationRec, contact_id: str, body: dict[str, Any]) -> ContactRec:
        errors = self._validate_contact(body, UPDATE_MEMBERS)
        if errors:
            raise unprocessable(errors)
        with self._lock:
            c = self._own_contact(loc, contact_id)
            self._duplicate(loc, {k: body[k] for k in DUPLICATE_FIELDS if k in body}, exclude=c.id)
            self._write(loc, c, body)
            return c

    def _own_contact(self, loc: LocationRec, contact_id: str) -> ContactRec:
        c = self.contacts.get(contact_id)
        if c is None:
            raise contact_not_found(contact_id)
        if c.location_id != loc.id:
            raise forbidden()
        return c

    @staticmethod
    def _tags_body(body: dict[str, Any]) -> list[str]:
        tags = body.get("tags")
        if not isinstance(tags, list):
            raise unprocessable(["tags must be an array"])
        if not all(isinstance(t, str) for t in tags):
            raise unprocessable(["each value in tags must be a string"])
        return [str(t) for t in tags]

    def duplicate_search(self, loc: LocationRec, email: str | None, number: str | None) -> ContactRec | None:
        order = loc.duplicate_order if not loc.allow_duplicates else list(DUPLICATE_FIELDS)
        with self._lock:
            for member in order:
                if member == "email":
                    key = _email_key(email)
                elif number and (number[0] == "+" or number[0].isdigit()):
                    key = _phone(number, loc.country)
                else:
                    key = None  # e.g. " 61412…": an unencoded `+` that arrived as a space
                match = self._find(loc, member, key) if key else None
                if match is not None:
                    return match
        return None

    # ------------------------------------------------------------------ custom fields

    def create_field(self, loc: LocationRec, body: dict[str, Any]) -> FieldRec:
        errors: list[str] = []
        name, data_type = body.get("name"), body.get("dataType")
        model = body.get("model", "contact")
        options = body.get("options", [])
        if not isinstance(name, str) or not name.strip():
            errors.append("name should not be empty")
        elif not _field_key(name):
            errors.append("name must contain a letter or a digit")
        if data_type not in DATA_TYPES:
            errors.append(f"dataType must be one of the following values: {', '.join(DATA_TYPES)}")
        if model not in FIELD_MODELS:
            errors.append(f"model must be one of the following values: {', '.join(FIELD_MODELS)}")
        if "placeholder" in body and not isinstance(body["placeholder"], str):
            errors.append("placeholder must be a string")
        if "position" in body and _number(body["position"]) is None:
            errors.append("position must be a number")
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            errors.append("each value in options must be a string")
        if errors:
            raise unprocessable(errors)
        assert isinstance(name, str)
        assert isinstance(data_type, str)
        assert isinstance(model, str)
        key = _field_key(name)
        with self._lock:
            if any(f.model == model and f.key == key for f in loc.fields.values()):
                raise ApiError(400, f"A custom field with the key {model}.{key} already exists.")
            rec = FieldRec(
                id=self._new_id(),
                location_id=loc.id,
                name=name.strip(),
                key=key,
                model=model,
                data_type=data_type,
                placeholder=body.get("placeholder", ""),
                position=int(_number(body.get("position", 0)) or 0),
                options=list(options),
            )
            loc.fields[rec.id] = rec
            return rec

    # ------------------------------------------------------------------ calendar events

    @staticmethod
    def _calendar_errors(body: dict[str, Any], required: Iterable[str]) -> list[str]:
        errors = [f"{k} must be a string" for k in required if not isinstance(body.get(k), str) or not body[k]]
        status = body.get("appointmentStatus")
        if status is not None and status not in APPOINTMENT_STATUSES:
            errors.append(f"appointmentStatus must be one of the following values: {', '.join(APPOINTMENT_STATUSES)}")
        kind = body.get("meetingLocationType")
        if kind is not None and kind not in MEETING_LOCATION_TYPES:
            errors.append(
                f"meetingLocationType must be one of the following values: {', '.join(MEETING_LOCATION_TYPES)}"
            )
        for flag in ("toNotify", "ignoreFreeSlotValidation", "ignoreDateRange", "overrideLocationConfig"):
            if flag in body and not isinstance(body[flag], bool):
                errors.append(f"{flag} must be a boolean value")
        for member in ("title", "address", "description", "assignedUserId"):
            if body.get(member) is not None and not isinstance(body[member], str):
                errors.append(f"{member} must be a string")
        return errors

    def _times(
        self, loc: LocationRec, body: dict[str, Any], start: datetime.datetime | None, end: datetime.datetime | None
    ) -> tuple[datetime.datetime, datetime.datetime]:
        if "startTime" in body:
            start = _parse_time(body["startTime"], loc.zone)
            if start is None:
                raise bad_request(["startTime must be a valid ISO 8601 date string"])
        if "endTime" in body:
            end = _parse_time(body["endTime"], loc.zone)
            if end is None:
                raise bad_request(["endTime must be a valid ISO 8601 date string"])
        if start is None:
            raise bad_request(["startTime must be a valid ISO 8601 date string"])
        if end is None:
            end = start + DEFAULT_SLOT
        if end <= start:
            raise bad_request(["endTime must be after startTime"])
        return start, end

    def _check_slot(
        self,
        loc: LocationRec,
        calendar: CalendarRec,
        user_id: str | None,
        start: datetime.datetime,
        end: datetime.datetime,
        exclude: str | None = None,
    ) -> None:
        if start < self._now():
            raise slot_taken()
        for e in self.events.values():
            if e.location_id != loc.id or e.id == exclude or not e.live() or not e.overlaps(start, end):
                continue
            same_calendar = e.calendar_id == calendar.id
            same_user = user_id is not None and e.user_id == user_id
            if same_calendar or same_user:
                raise slot_taken()

    def _calendar(self, loc: LocationRec, calendar_id: object) -> CalendarRec:
        calendar = loc.calendars.get(calendar_id) if isinstance(calendar_id, str) else None
        if calendar is None:
            raise ApiError(400, "Calendar not found")
        return calendar

    def _user(self, loc: LocationRec, user_id: object) -> str:
        if not isinstance(user_id, str) or user_id not in loc.users:
            raise ApiError(400, "User not found")
        return user_id

    def create_appointment(self, loc: LocationRec, body: dict[str, Any], path: str) -> EventRec:
        errors = self._calendar_errors(body, ("calendarId", "locationId", "contactId", "startTime"))
        if errors:
            raise bad_request(errors)
        self._own(loc, body["locationId"])
        with self._lock:
            calendar = self._calendar(loc, body["calendarId"])
            contact = self.contacts.get(body["contactId"])
            if contact is None or contact.location_id != loc.id:
                raise ApiError(400, "Contact not found")
            user_id = self._user(loc, body["assignedUserId"]) if body.get("assignedUserId") else calendar.user_id
            start, end = self._times(loc, body, None, None)
            if body.get("ignoreFreeSlotValidation") is not True:
                self._check_slot(loc, calendar, user_id, start, end)
            fault = self.faults.misstore("POST", path)
            if fault is not None:
                start, end = fault.misstored(start, end)
            now = self._now()
            address = body.get("address")
            e = EventRec(
                id=self._new_id(),
                location_id=loc.id,
                kind="appointment",
                calendar_id=calendar.id,
                user_id=user_id,
                contact_id=contact.id,
                title=body.get("title") or contact.display_name or "Appointment",
                start=start,
                end=end,
                added=now,
                updated=now,
                status=body.get("appointmentStatus") or "confirmed",
                address=address,
                description=body.get("description"),
                meeting_location_type=body.get("meetingLocationType") or ("custom" if address else "default"),
            )
            self.events[e.id] = e
            self._webhook("AppointmentCreate", e, loc)
            return e

    def _own_event(self, loc: LocationRec, event_id: str, kind: str | None) -> EventRec:
        e = self.events.get(event_id)
        if e is None or (kind is not None and e.kind != kind):
            raise event_not_found()
        if e.location_id != loc.id:
            raise forbidden()
        return e

    def update_appointment(self, loc: LocationRec, event_id: str, body: dict[str, Any], path: str) -> EventRec:
        errors = self._calendar_errors(body, ())
        if errors:
            raise bad_request(errors)
        with self._lock:
            e = self._own_event(loc, event_id, "appointment")
            calendar = self._calendar(loc, body.get("calendarId", e.calendar_id))
            user_id = self._user(loc, body["assignedUserId"]) if body.get("assignedUserId") else e.user_id
            start, end = self._times(loc, body, e.start, e.end)
            moved = (start, end, calendar.id) != (e.start, e.end, e.calendar_id)
            if moved and body.get("ignoreFreeSlotValidation") is not True:
                self._check_slot(loc, calendar, user_id, start, end, exclude=e.id)
            if moved:
                fault = self.faults.misstore("PUT", path)
                if fault is not None:
                    start, end = fault.misstored(start, end)
            e.calendar_id, e.user_id, e.start, e.end = calendar.id, user_id, start, end
            for member, attr in (("title", "title"), ("address", "address"), ("description", "description")):
                if member in body:
                    setattr(e, attr, body[member])
            if body.get("appointmentStatus"):
                e.status = body["appointmentStatus"]
            if body.get("meetingLocationType"):
                e.meeting_location_type = body["meetingLocationType"]
            e.updated = self._now()
            self._webhook("AppointmentUpdate", e, loc)
            return e

    def delete_event(self, loc: LocationRec, event_id: str) -> None:
        with self._lock:
            e = self._own_event(loc, event_id, None)
            del self.events[e.id]
            if e.kind == "appointment":
                self._webhook("AppointmentDelete", e, loc)

    def _block_target(self, loc: LocationRec, body: dict[str, Any]) -> tuple[str | None, str | None]:
        calendar_id, user_id = body.get("calendarId"), body.get("assignedUserId")
        if bool(calendar_id) == bool(user_id):
            raise bad_request(["Either calendarId or assignedUserId can be set, not both."])
        if calendar_id:
            return self._calendar(loc, calendar_id).id, None
        return None, self._user(loc, user_id)

    def create_block(self, loc: LocationRec, body: dict[str, Any]) -> EventRec:
        errors = self._calendar_errors(body, ("locationId", "startTime", "endTime"))
        if errors:
            raise bad_request(errors)
        self._own(loc, body["locationId"])
        with self._lock:
            calendar_id, user_id = self._block_target(loc, body)
            start, end = self._times(loc, body, None, None)
            now = self._now()
            e = EventRec(
                id=self._new_id(),
                location_id=loc.id,
                kind="block_slot",
                calendar_id=calendar_id,
                user_id=user_id,
                contact_id=None,
                title=body.get("title") or "",
                start=start,
                end=end,
                added=now,
                updated=now,
            )
            self.events[e.id] = e
            return e

    def update_block(self, loc: LocationRec, event_id: str, body: dict[str, Any]) -> EventRec:
        errors = self._calendar_errors(body, ())
        if errors:
            raise bad_request(errors)
        if "locationId" in body:
            self._own(loc, body["locationId"])
        with self._lock:
            e = self._own_event(loc, event_id, "block_slot")
            if body.get("calendarId") or body.get("assignedUserId"):
                e.calendar_id, e.user_id = self._block_target(loc, body)
            e.start, e.end = self._times(loc, body, e.start, e.end)
            if "title" in body:
                e.title = body["title"] or ""
            e.updated = self._now()
            return e

    def _window(self, loc: LocationRec, request: Request[Any, Any, Any], kind: str) -> list[EventRec]:
        params = request.query_params
        self._own(loc, params.get("locationId"))
        calendar_id, user_id, group_id = params.get("calendarId"), params.get("userId"), params.get("groupId")
        errors: list[str] = []
        if not (calendar_id or user_id or group_id):
            errors.append("Either of calendarId, userId or groupId is required")
        start, end = _parse_millis(params.get("startTime")), _parse_millis(params.get("endTime"))
        if start is None:
            errors.append("startTime must be a number string (millis)")
        if end is None:
            errors.append("endTime must be a number string (millis)")
        if errors:
            raise bad_request(errors)
        assert start is not None
        assert end is not None
        with self._lock:
            found = [
                e
                for e in self.events.values()
                if e.location_id == loc.id
                and e.kind == kind
                and e.overlaps(start, end)
                and not group_id
                and (not calendar_id or e.calendar_id == calendar_id)
                and (not user_id or e.user_id == user_id)
            ]
        return sorted(found, key=lambda e: e.start)

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        # --- locations and custom fields (Version 2021-07-28)

        @get("/locations/{location_id:str}", sync_to_thread=False)
        def get_location(request: Req, location_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "locations.readonly")
            em._own(loc, location_id)
            body = {
                "id": loc.id,
                "companyId": loc.company_id,
                "name": loc.name,
                "timezone": loc.time_zone,
                "country": loc.country,
                "settings": {
                    "allowDuplicateContact": loc.allow_duplicates,
                    "allowDuplicateOpportunity": False,
                    "allowFacebookNameMerge": False,
                    "disableContactTimezone": False,
                },
            }
            return em._reply(request, {"location": body})

        @get("/locations/{location_id:str}/customFields", sync_to_thread=False)
        def list_fields(request: Req, location_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "locations/customFields.readonly")
            em._own(loc, location_id)
            model = request.query_params.get("model") or "contact"
            if model not in ("contact", "opportunity", "all"):
                raise unprocessable(["model must be one of the following values: contact, opportunity, all"])
            with em._lock:
                fields = [em._field(f) for f in loc.fields.values() if model == "all" or f.model == model]
            return em._reply(request, {"customFields": fields})

        @post("/locations/{location_id:str}/customFields")
        async def create_field(request: Req, location_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "locations/customFields.write")
            em._own(loc, location_id)
            rec = em.create_field(loc, await em._body(request))
            return em._reply(request, {"customField": em._field(rec)}, 201)

        # --- contacts (Version 2021-07-28)

        @post("/contacts/upsert")
        async def upsert(request: Req) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            c, new = em.upsert_contact(loc, await em._body(request))
            with em._lock:
                if em.quirks.upsert_422_after_apply > 0:
                    em.quirks.upsert_422_after_apply -= 1
                    raise unprocessable([em.quirks.message or "Unprocessable Entity"])
                return em._reply(request, {"new": new, "contact": em._contact(c), "traceId": str(uuid.uuid4())})

        @post("/contacts")
        async def create_contact(request: Req) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            c = em.create_contact(loc, await em._body(request))
            with em._lock:
                if em.quirks.create_422_after_apply > 0:
                    em.quirks.create_422_after_apply -= 1
                    raise unprocessable([em.quirks.message or "Unprocessable Entity"])
                return em._reply(request, {"contact": em._contact(c, created=True)}, 201)

        @get("/contacts/search/duplicate", sync_to_thread=False)
        def duplicate(request: Req) -> Response[bytes]:
            loc = em._caller(request, "contacts.readonly")
            params = request.query_params
            location_id = params.get("locationId")
            if not location_id:
                raise bad_request(["locationId must be a string"])
            em._own(loc, location_id)
            found = em.duplicate_search(loc, params.get("email"), params.get("number"))
            with em._lock:
                return em._reply(request, {"contact": em._contact(found) if found else None})

        @get("/contacts/{contact_id:str}", sync_to_thread=False)
        def get_contact(request: Req, contact_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "contacts.readonly")
            with em._lock:
                return em._reply(request, {"contact": em._contact(em._own_contact(loc, contact_id))})

        @put("/contacts/{contact_id:str}")
        async def update_contact(request: Req, contact_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            c = em.update_contact(loc, contact_id, await em._body(request))
            with em._lock:
                return em._reply(request, {"succeded": True, "contact": em._contact(c)})

        @delete("/contacts/{contact_id:str}", status_code=200, sync_to_thread=False)
        def delete_contact(request: Req, contact_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            with em._lock:
                c = em._own_contact(loc, contact_id)
                del em.contacts[c.id]
            return em._reply(request, {"succeded": True})

        @post("/contacts/{contact_id:str}/tags")
        async def add_tags(request: Req, contact_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            tags = em._tags_body(await em._body(request))
            with em._lock:
                c = em._own_contact(loc, contact_id)
                c.tags = _merge_tags([*c.tags, *tags])
                c.updated = em._now()
                return em._reply(request, {"tags": list(c.tags)}, 201)

        @delete("/contacts/{contact_id:str}/tags", status_code=200)
        async def remove_tags(request: Req, contact_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "contacts.write")
            gone = {_tag(t) for t in em._tags_body(await em._body(request))}
            with em._lock:
                c = em._own_contact(loc, contact_id)
                c.tags = [t for t in c.tags if t not in gone]
                c.updated = em._now()
                return em._reply(request, {"tags": list(c.tags)})

        # --- calendars (Version 2021-04-15)

        @get("/calendars", sync_to_thread=False)
        def list_calendars(request: Req) -> Response[bytes]:
            loc = em._caller(request, "calendars.readonly")
            em._own(loc, request.query_params.get("locationId"))
            calendars = [
                {
                    "id": c.id,
                    "locationId": loc.id,
                    "name": c.name,
                    "isActive": True,
                    "calendarType": "personal",
                    "slotDuration": int(DEFAULT_SLOT.total_seconds() // 60),
                    "slotDurationUnit": "mins",
                    "teamMembers": [{"userId": c.user_id, "priority": 0.5, "isPrimary": True}],
                }
                for c in loc.calendars.values()
            ]
            return em._reply(request, {"calendars": calendars})

        @post("/calendars/events/appointments")
        async def create_appointment(request: Req) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.write")
            e = em.create_appointment(loc, await em._body(request), request.scope["path"])
            with em._lock:
                return em._reply(request, em._appointment(e, loc))

        @put("/calendars/events/appointments/{event_id:str}")
        async def update_appointment(request: Req, event_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.write")
            e = em.update_appointment(loc, event_id, await em._body(request), request.scope["path"])
            with em._lock:
                return em._reply(request, em._appointment(e, loc))

        @get("/calendars/events/appointments/{event_id:str}", sync_to_thread=False)
        def get_appointment(request: Req, event_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.readonly")
            with em._lock:
                return em._reply(request, {"event": em._event(em._own_event(loc, event_id, "appointment"), loc)})

        @delete("/calendars/events/{event_id:str}", status_code=201, sync_to_thread=False)
        def delete_event(request: Req, event_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.write")
            em.delete_event(loc, event_id)
            return em._reply(request, {"succeeded": True}, 201)

        @get("/calendars/events", sync_to_thread=False)
        def list_events(request: Req) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.readonly")
            found = em._window(loc, request, "appointment")
            with em._lock:
                return em._reply(request, {"events": [em._event(e, loc) for e in found]})

        @post("/calendars/events/block-slots")
        async def create_block(request: Req) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.write")
            e = em.create_block(loc, await em._body(request))
            with em._lock:
                return em._reply(request, em._block(e, loc), 201)

        @put("/calendars/events/block-slots/{event_id:str}")
        async def update_block(request: Req, event_id: FromPath[str]) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.write")
            e = em.update_block(loc, event_id, await em._body(request))
            with em._lock:
                return em._reply(request, em._block(e, loc), 201)

        @get("/calendars/blocked-slots", sync_to_thread=False)
        def list_blocks(request: Req) -> Response[bytes]:
            loc = em._caller(request, "calendars/events.readonly")
            found = em._window(loc, request, "block_slot")
            with em._lock:
                return em._reply(request, {"events": [em._block(e, loc) for e in found]})

        # --- emulator control (not GHL's API)

        @post(GHL_CONTROL + "/locations", status_code=201, sync_to_thread=False)
        def seed_location(data: JSONBody[_LocationIn]) -> GhlLocationSeed:
            try:
                return em.add_location(
                    data.name,
                    data.time_zone,
                    [(c.name, c.user_email) for c in data.calendars],
                    country=data.country,
                    scopes=data.scopes,
                )
            except zoneinfo.ZoneInfoNotFoundError:
                raise ApiError(400, f"unknown time zone {data.time_zone}") from None

        @get(GHL_CONTROL + "/locations/{location_id:str}/contacts", sync_to_thread=False)
        def control_contacts(location_id: FromPath[str]) -> list[dict[str, Any]]:
            return em.contact_views(location_id)

        @get(GHL_CONTROL + "/locations/{location_id:str}/events", sync_to_thread=False)
        def control_events(location_id: FromPath[str]) -> list[dict[str, Any]]:
            return em.event_views(location_id)

        @get(GHL_CONTROL + "/locations/{location_id:str}/custom-fields", sync_to_thread=False)
        def control_fields(location_id: FromPath[str]) -> list[dict[str, Any]]:
            return em.custom_field_views(location_id)

        @post(GHL_CONTROL + "/locations/{location_id:str}/duplicate-rules", status_code=204, sync_to_thread=False)
        def control_duplicates(location_id: FromPath[str], data: JSONBody[_DuplicateRulesIn]) -> None:
            try:
                em.set_duplicate_rules(location_id, data.allow_duplicates, data.order)
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None

        @post(GHL_CONTROL + "/tokens/revoke", status_code=204, sync_to_thread=False)
        def control_revoke(data: JSONBody[_RevokeIn]) -> None:
            em.revoke_token(data.token)

        @get(GHL_CONTROL + "/webhooks", sync_to_thread=False)
        def control_webhooks() -> list[dict[str, Any]]:
            with em._lock:
                return list(em.webhooks)

        @delete(GHL_CONTROL + "/webhooks", status_code=204, sync_to_thread=False)
        def control_clear_webhooks() -> None:
            em.clear_webhooks()

        @post(GHL_CONTROL + "/quirks", status_code=204, sync_to_thread=False)
        def control_quirks(data: JSONBody[GhlQuirks]) -> None:
            em.set_quirks(data)

        def api_error(request: Req, exc: ApiError) -> Response[bytes]:
            return em._reply(request, exc.body, exc.status)

        def http_error(request: Req, exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                text = f"Cannot {request.method} {request.url.path}"
                return em._reply(request, {"statusCode": 404, "message": text, "error": "Not Found"}, 404)
            return em._reply(request, {"statusCode": exc.status_code, "message": str(exc.detail)}, exc.status_code)

        handlers = [
            get_location, list_fields, create_field,
            upsert, create_contact, duplicate, get_contact, update_contact, delete_contact, add_tags, remove_tags,
            list_calendars, create_appointment, update_appointment, get_appointment, delete_event, list_events,
            create_block, update_block, list_blocks,
            seed_location, control_contacts, control_events, control_fields, control_duplicates, control_revoke,
            control_webhooks, control_clear_webhooks, control_quirks,
        ]  # fmt: skip
        return build_emulator_app(
            self,
            handlers,
            traffic=self.traffic,
            rate_limited=self._rate_limited_fault,
            rejected=self._rejected_fault,
            gate=self._gate,
            exception_handlers={ApiError: api_error, HTTPException: http_error},
        )
