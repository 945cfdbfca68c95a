"""A stand-in for Practice Better's REST API v1 (beta), faithful to what the research notes document.

What it serves: `POST /oauth2/token` (client credentials, form body), `/company/administration/members`,
`/consultant/services`, `/consultant/records` (list with `modified_*` filters, get, create, full-replace `PUT`),
`/consultant/sessions` (list with `consultants`/`records`/`services`/`date_*` filters, get, create, `PUT …/date`,
`POST …/cancel`), `/consultant/availability/slots`, and the webhook subscription API (`/webhooks/subscription`)
with the endpoint handshake and signed event deliveries (`PB-Signature: t=…,v1=<hex HMAC-SHA256 of "t.body">`).

Documented behaviour it reproduces:
- Bearer tokens from client credentials (`grant_type` optional, `scope` ignored); `expires_in` seconds; an expired
  or unknown token is `401`. One practice ("company") per seeded business, each with its own client id/secret.
- Lists: `{count, hasMore, items}`, `limit` 1-100, `before_id`/`after_id` cursors; records and sessions newest first
  (by creation). Array filters are repeated keys.
- `sessionDate` (create and `PUT …/date`), as the one production integrator observed (evidence-2026-11 §3.2): the
  clock time is read as wall time in the account's zone (`wall_zone`, default the seed's zone), a trailing `Z` and
  the `timeZone` field are ignored, and an explicit offset (`-05:00`, `+00:00`) is a `500`. Responses give
  `sessionDate`/`endDate` as UTC instants with `Z`.
- A session's `duration` is in seconds by default, in requests and responses: the integrator who books in production
  sends `minutes * 60` and reads answers as seconds, while the "minutes" of the swagger readers was never exercised
  by a booking. The emulator stores whatever length that unit gives (`30` read as seconds is a
  30-second session), so a client in the wrong unit shows in `endDate`.
- A duplicate client e-mail on create is `400` (what the production integrator saw; 409 per the swagger and 500 are
  selectable), and `profile.emailAddress` is required on create (the swagger, via w6w).
- `409` on a session overlapping the consultant's calendar unless `ignoreConflict: true`; `461 Resource Access
  Denied` on another practice's client record; `404` with `item_not_found` for unknown records; `204` when a day
  has no slots; `429` with `Retry-After` over 5 requests/s (bursts of 20) per practice.
- `PUT /consultant/records/{id}` replaces the whole record: fields not sent are erased.
- Session `cancel` keeps the session, marked `cancelled`, and answers `202` with no body.
- MISSTORE faults (adapters.emulation) apply where a create or `PUT …/date` stores the session's time; REJECT
  faults answer in the error shape below (`{"message": …}`, 400 unless the fault gives a status).

Switchable behaviour (constructor arguments; the evidence conflicts or is one account's):
- `duration_unit`: "seconds" (default) or "minutes" (the swagger readers).
- `session_date_mode`: "wall_time" (default, as above) or "utc" (`sessionDate` an instant, `Z` or offset, as the
  swagger readers assume); `wall_zone`: the account's zone (default: the seed's).
- `duplicate_status`: 400 (default), 409 or 500 for a duplicate client e-mail.

Choices where the notes are silent (UNCONFIRMED):
- Error bodies are `{"message": …}` (plus `code` on 404); the token endpoint answers OAuth2's `{"error": …}`.
- Members come as `{count, hasMore, items}`; each member's profile carries `emailAddress`.
- `day` on availability is a calendar day in the practice's time zone; slots start on the seed's step.
- Sessions carry `dateCreated`/`dateModified`; the list's `date_*` filters are instants.
- A session shows the `notes` it was created with (optional on create, evidence §3.1) on reads; `PUT …/date` and
  cancel leave them as they are (the cancel's notes are kept apart).
- Webhook deliveries are `{"eventType", "resourceId", "companyId", "timestamp"}`; event types
  `client.record.created|updated`, `session.created|updated|cancelled`.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import itertools
import secrets
import threading
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs

import httpx
import litestar
import msgspec
from litestar import Request, Response, delete, get, post, put
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
    build_emulator_app,
)
from adapters.practicebetter import signature

UTC = datetime.UTC
JSON = "application/json"
COMPANY_KEY = "pb_company"
PROTECTED = ("/consultant", "/company", "/webhooks", "/timezones")
SERVICE_TYPES = ("face", "phone", "virtual")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body: dict[str, str] = {"message": message}
        if code:
            self.body["code"] = code


def not_found() -> ApiError:
    return ApiError(404, "Item not found", "item_not_found")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------- state


@dataclass
class MemberRec:
    id: str
    first_name: str
    last_name: str
    email: str
    is_practitioner: bool
    is_owner: bool = False


@dataclass
class ServiceRec:
    id: str
    name: str
    duration: int


@dataclass
class RecordRec:
    id: str
    company_id: str
    profile: dict[str, Any]
    is_active: bool
    created: datetime.datetime
    modified: datetime.datetime
    extra: dict[str, Any] = field(default_factory=dict)  # fields the emulator keeps but does not interpret

    @property
    def email(self) -> str | None:
        value = self.profile.get("emailAddress")
        return value.strip().lower() if isinstance(value, str) and value.strip() else None


@dataclass
class SessionRec:
    id: str
    company_id: str
    record_id: str
    consultant_id: str
    service_id: str
    service_type: str
    start: datetime.datetime
    seconds: int
    created: datetime.datetime
    modified: datetime.datetime
    notes: str | None = None
    cancelled: bool = False
    cancel_notes: str | None = None

    @property
    def end(self) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=self.seconds)

    def overlaps(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return not self.cancelled and self.start < end and self.end > start


@dataclass
class SubscriptionRec:
    id: str
    company_id: str
    endpoint_url: str
    event_types: list[str]
    created: datetime.datetime
    active: bool = True


@dataclass
class CompanyRec:
    id: str
    name: str
    client_id: str
    client_secret: str
    signing_secret: str
    verification_token: str
    members: dict[str, MemberRec] = field(default_factory=dict)
    services: dict[str, ServiceRec] = field(default_factory=dict)


class Delivery(msgspec.Struct, kw_only=True):
    """One webhook POST the emulator made (for tests)."""

    url: str
    event_type: str
    resource_id: str
    status: int | None


class RecordChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Emulator control: the practice editing a client in Practice Better's own screens."""

    emailAddress: str | None = None
    mobilePhone: str | None = None
    firstName: str | None = None


class SessionCancelByPractice(msgspec.Struct, kw_only=True):
    notes: str | None = None


class Bucket:
    """Server-side token bucket per practice: 5 requests/s, bursts of 20."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> int | None:
        """Count a request; the seconds to wait (Retry-After) if the practice is over its budget."""
        with self._lock:
            now = self.clock()
            tokens, at = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._state[key] = (tokens, now)
                return max(1, int((1.0 - tokens) / self.rate + 0.999))
            self._state[key] = (tokens - 1.0, now)
            return None


# ---------------------------------------------------------------------------------------------- the emulator


class PracticeBetterEmulator(Emulator):
    slug: ClassVar[str] = "practicebetter"

    def __init__(
        self,
        seed: EmulatorSeed,
        *,
        duration_unit: Literal["minutes", "seconds"] = "seconds",
        session_date_mode: Literal["utc", "wall_time"] = "wall_time",
        wall_zone: str | None = None,
        duplicate_status: Literal[400, 409, 500] = 400,
        token_lifetime: int = 3600,
        rate_per_second: float = 5.0,
        burst: int = 20,
        clock: Callable[[], float] = time.time,
        max_exchanges: int = 5000,
    ) -> None:
        self.seed = seed
        self.duration_unit = duration_unit
        self.session_date_mode = session_date_mode
        self.wall_zone = wall_zone or seed.time_zone
        self.duplicate_status = duplicate_status
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.zone = zoneinfo.ZoneInfo(seed.time_zone)
        self.faults = FaultInjector()
        self.traffic = Traffic(max_exchanges)
        self.bucket = Bucket(rate_per_second, burst, time.monotonic)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._id_base = int("64b7f1c2a0e4", 16) << 48
        self.companies: dict[str, CompanyRec] = {}
        self.records: dict[str, RecordRec] = {}
        self.sessions: dict[str, SessionRec] = {}
        self.subscriptions: dict[str, SubscriptionRec] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (company id, expires at)
        self.token_requests = 0
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._seed()

    # ------------------------------------------------------------------ plumbing

    @property
    def exchanges(self) -> list[Any]:
        return list(self.traffic.exchanges)

    def _new_id(self) -> str:
        return f"{self._id_base + next(self._ids):024x}"

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), UTC)

    def _seed(self) -> None:
        now = self._now()
        for n, business in enumerate(self.seed.businesses):
            company = CompanyRec(
                id=self._new_id(),
                name=business.name,
                client_id=f"pb-emulator-client-{n + 1}",
                client_secret=f"pb-emulator-secret-{n + 1}-{secrets.token_hex(8)}",
                signing_secret=f"pbwhsec_{secrets.token_hex(16)}",
                verification_token=f"pb-verify-{secrets.token_hex(8)}",
            )
            owner = MemberRec(self._new_id(), "Owner", "Admin", f"owner{n + 1}@example.com", False, True)
            company.members[owner.id] = owner
            for p in self.seed.practitioners:
                member = MemberRec(self._new_id(), p.first_name, p.last_name, p.email, True)
                company.members[member.id] = member
            for s in self.seed.services:
                service = ServiceRec(self._new_id(), s.name, s.duration_minutes)
                company.services[service.id] = service
            self.companies[company.id] = company
            for pt in self.seed.patients:
                profile: dict[str, Any] = {"firstName": pt.first_name, "lastName": pt.last_name}
                if pt.email:
                    profile["emailAddress"] = pt.email
                if pt.phone:
                    profile["mobilePhone"] = pt.phone
                if pt.date_of_birth:
                    profile["dateOfBirth"] = pt.date_of_birth.isoformat()
                rec = RecordRec(self._new_id(), company.id, profile, True, now, now)
                self.records[rec.id] = rec

    def company_ids(self) -> list[str]:
        return list(self.companies)

    def stats(self) -> EmulatorStats:
        with self._lock:
            total = len(self.sessions)
            active = sum(1 for s in self.sessions.values() if not s.cancelled)
        return EmulatorStats(
            requests=self.traffic.requests,
            appointments=total,
            active_appointments=active,
            rate_limited=self.traffic.rate_limited,
        )

    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        company = self.companies[self.company_ids()[business_index]]
        default = next(m.id for m in company.members.values() if m.is_practitioner)
        # A location onboarded as the README says: the unit `locations verify` shows, the mode, and a zone only
        # where the account's differs from the location's (the seed's).
        settings: dict[str, str] = {
            "base_url": base_url.rstrip("/"),
            "consultant_id": default,
            "duration_unit": self.duration_unit,
            "session_date_mode": self.session_date_mode,
        }
        if self.wall_zone != self.seed.time_zone:
            settings["session_date_zone"] = self.wall_zone
        credentials = {
            "client_id": company.client_id,
            "client_secret": company.client_secret,
            "webhook_verification_token": company.verification_token,
            "webhook_signing_secret": company.signing_secret,
        }
        return msgspec.json.encode(settings), msgspec.json.encode(credentials)

    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        company = self.companies[self.company_ids()[business_index]]
        return msgspec.json.encode({"client_id": company.client_id, "client_secret": "not-the-secret"})

    def revoke_tokens(self) -> None:
        """Every issued token stops working (as if expired early): clients must re-mint on the 401."""
        with self._lock:
            self.tokens.clear()

    # ------------------------------------------------------------------ gate: bearer token, rate limit

    def _gate(self, scope: Scope) -> RawResponse | None:
        path: str = scope["path"]
        if not path.startswith(PROTECTED):
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._lock:
            hit = self.tokens.get(token)
            if hit is not None and hit[1] <= self.clock():
                del self.tokens[token]
                hit = None
        if hit is None:
            return RawResponse(401, msgspec.json.encode({"message": "Authorization has been denied for this request."}))
        company_id = hit[0]
        wait = self.bucket.take(company_id)
        if wait is not None:
            return self._too_many(wait)
        scope[COMPANY_KEY] = company_id
        return None

    def _too_many(self, retry_after: int) -> RawResponse:
        return RawResponse(
            429, msgspec.json.encode({"message": "Too many requests"}), JSON, [("Retry-After", str(retry_after))]
        )

    def _rate_limited_fault(self, fault: Fault) -> RawResponse:
        return self._too_many(fault.retry_after)

    def _rejected_fault(self, fault: Fault) -> RawResponse:
        """A REJECT in this emulator's error shape, `{"message": …}` (400 unless a status is given): the text is the
        fault's, as a Practice Better message naming the client would be."""
        status = fault.status if fault.status != 503 else 400
        return RawResponse(status, msgspec.json.encode({"message": fault.message or "The request is invalid."}), JSON)

    # ------------------------------------------------------------------ rendering

    def _member(self, m: MemberRec) -> dict[str, Any]:
        return {
            "id": m.id,
            "activationStatus": "activated",
            "isOwner": m.is_owner,
            "isPractitioner": m.is_practitioner,
            "profile": {"firstName": m.first_name, "lastName": m.last_name, "emailAddress": m.email},
        }

    def _record(self, r: RecordRec) -> dict[str, Any]:
        return {
            **r.extra,
            "id": r.id,
            "isActive": r.is_active,
            "status": "created",
            "dateCreated": iso(r.created),
            "dateModified": iso(r.modified),
            "client": {"id": f"c{r.id}", "emailAddress": r.profile.get("emailAddress")},
            "profile": dict(r.profile),
        }

    def _session(self, s: SessionRec) -> dict[str, Any]:
        company = self.companies[s.company_id]
        member = company.members.get(s.consultant_id)
        record = self.records.get(s.record_id)
        name = f"{record.profile.get('firstName', '')} {record.profile.get('lastName', '')}".strip() if record else ""
        return {
            "id": s.id,
            "sessionDate": iso(s.start),
            "endDate": iso(s.end),
            "duration": s.seconds if self.duration_unit == "seconds" else s.seconds // 60,
            "cancelled": s.cancelled,
            "serviceId": s.service_id,
            "serviceType": s.service_type,
            "clientRecord": {"id": s.record_id, "name": name},
            "consultant": {
                "id": s.consultant_id,
                "profile": {"firstName": member.first_name, "lastName": member.last_name} if member else None,
            },
            "notes": s.notes,
            "confirmationStatus": "confirmed",
            "upcoming": s.start > self._now(),
            "dateCreated": iso(s.created),
            "dateModified": iso(s.modified),
        }

    # ------------------------------------------------------------------ requests

    def _page(self, request: Request[Any, Any, Any], items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """`{count, hasMore, items}`; items arrive newest first; `before_id` walks older, `after_id` newer."""
        params = request.query_params
        raw_limit = params.get("limit") or "20"
        try:
            limit = int(raw_limit)
        except ValueError:
            raise bad_request("The value of limit is not valid.") from None
        if not 1 <= limit <= 100:
            raise bad_request("limit must be between 1 and 100")
        chosen = list(items)
        before, after = params.get("before_id"), params.get("after_id")
        if before:
            chosen = [i for i in chosen if i["id"] < before]
        if after:
            chosen = [i for i in chosen if i["id"] > after]
        chunk = chosen[:limit]
        return {"count": len(items), "hasMore": len(chosen) > limit, "items": chunk}

    def _instant_param(self, request: Request[Any, Any, Any], name: str) -> datetime.datetime | None:
        raw = request.query_params.get(name)
        if not raw:
            return None
        try:
            value = datetime.datetime.fromisoformat(raw)
        except ValueError:
            raise bad_request(f"The value '{name}' is not valid.") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def _session_date(self, raw: object) -> datetime.datetime:
        """`sessionDate` as an instant. In "wall_time" (the observed behaviour) a trailing `Z` is ignored, the clock
        time is read in the account's zone whatever `timeZone` says, and an offset is a 500."""
        if not isinstance(raw, str):
            raise bad_request("sessionDate is required")
        text = raw.strip()
        if self.session_date_mode == "wall_time":
            if text.endswith(("Z", "z")):
                text = text[:-1]
            try:
                value = datetime.datetime.fromisoformat(text)
            except ValueError:
                raise bad_request("sessionDate is not valid") from None
            if value.tzinfo is not None:
                raise ApiError(500, "An error has occurred.")
            return value.replace(tzinfo=zoneinfo.ZoneInfo(self.wall_zone)).astimezone(UTC)
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise bad_request("sessionDate is not valid") from None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def _seconds(self, raw: object) -> int:
        """A session's length from `duration`, in this account's unit (nothing rounds it to minutes)."""
        if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
            raise bad_request("duration is required")
        return raw if self.duration_unit == "seconds" else raw * 60

    def _misstore(
        self, method: str, path: str, start: datetime.datetime, seconds: int
    ) -> tuple[datetime.datetime, int]:
        """(start, length) as stored, after any MISSTORE fault for this write."""
        fault = self.faults.misstore(method, path)
        if fault is None:
            return start, seconds
        begin, end = fault.misstored(start, start + datetime.timedelta(seconds=seconds))
        return begin, int((end - begin).total_seconds())

    def _company(self, request: Request[Any, Any, Any]) -> CompanyRec:
        return self.companies[request.scope[COMPANY_KEY]]  # type: ignore[literal-required]

    def _own_record(self, company: CompanyRec, record_id: str) -> RecordRec:
        rec = self.records.get(record_id)
        if rec is None:
            raise not_found()
        if rec.company_id != company.id:
            raise ApiError(461, "Resource Access Denied")
        return rec

    def _own_session(self, company: CompanyRec, session_id: str) -> SessionRec:
        rec = self.sessions.get(session_id)
        if rec is None or rec.company_id != company.id:
            raise not_found()
        return rec

    def _conflicts(self, s: SessionRec | None, consultant: str, start: datetime.datetime, seconds: int) -> bool:
        end = start + datetime.timedelta(seconds=seconds)
        return any(
            o.consultant_id == consultant and o.overlaps(start, end) and (s is None or o.id != s.id)
            for o in self.sessions.values()
        )

    def _body(self, raw: bytes) -> dict[str, Any]:
        try:
            body = msgspec.json.decode(raw) if raw else {}
        except msgspec.DecodeError:
            raise bad_request("The request is invalid.") from None
        if not isinstance(body, dict):
            raise bad_request("The request is invalid.")
        return body

    # ------------------------------------------------------------------ writes

    def create_session(self, company: CompanyRec, body: dict[str, Any]) -> SessionRec:
        with self._lock:
            record = self._own_record(company, str(body.get("clientRecordId") or ""))
            service = company.services.get(str(body.get("serviceId") or ""))
            if service is None:
                raise bad_request("serviceId is not valid")
            service_type = body.get("serviceType")
            if service_type not in SERVICE_TYPES:
                raise bad_request("serviceType is required")
            if service_type == "virtual" and not body.get("telehealthSettings"):
                raise bad_request("telehealthSettings is required for virtual sessions")
            start, seconds = self._misstore(
                "POST",
                "/consultant/sessions",
                self._session_date(body.get("sessionDate")),
                self._seconds(body.get("duration")),
            )
            consultant = str(body.get("asConsultantId") or "")
            if not consultant:
                consultant = next(m.id for m in company.members.values() if m.is_owner)
            member = company.members.get(consultant)
            if member is None:
                raise bad_request("asConsultantId is not valid")
            if not body.get("ignoreConflict", False) and self._conflicts(None, consultant, start, seconds):
                raise ApiError(409, "The session conflicts with another session.")
            now = self._now()
            notes = body.get("notes")
            rec = SessionRec(
                id=self._new_id(),
                company_id=company.id,
                record_id=record.id,
                consultant_id=consultant,
                service_id=service.id,
                service_type=service_type,
                start=start,
                seconds=seconds,
                created=now,
                modified=now,
                notes=notes if isinstance(notes, str) else None,
            )
            self.sessions[rec.id] = rec
            return rec

    def move_session(self, company: CompanyRec, session_id: str, body: dict[str, Any]) -> SessionRec:
        with self._lock:
            rec = self._own_session(company, session_id)
            if rec.cancelled:
                raise bad_request("The session is cancelled.")
            start = self._session_date(body.get("sessionDate"))
            seconds = self._seconds(body.get("duration")) if "duration" in body else rec.seconds
            start, seconds = self._misstore("PUT", f"/consultant/sessions/{rec.id}/date", start, seconds)
            if not body.get("ignoreConflict", False) and self._conflicts(rec, rec.consultant_id, start, seconds):
                raise ApiError(409, "The session conflicts with another session.")
            rec.start, rec.seconds, rec.modified = start, seconds, self._bumped(rec.modified)
            return rec

    def cancel_session(self, company: CompanyRec, session_id: str, body: dict[str, Any]) -> SessionRec:
        with self._lock:
            rec = self._own_session(company, session_id)
            if not rec.cancelled:
                notes = body.get("notes")
                rec.cancelled, rec.cancel_notes = True, notes if isinstance(notes, str) else None
                rec.modified = self._bumped(rec.modified)
            return rec

    def create_record(self, company: CompanyRec, body: dict[str, Any]) -> RecordRec:
        profile = body.get("profile")
        if not isinstance(profile, dict) or not profile.get("firstName") or not profile.get("lastName"):
            raise bad_request("profile.firstName and profile.lastName are required")
        email = profile.get("emailAddress")
        if not isinstance(email, str) or not email.strip():
            raise bad_request("profile.emailAddress is required")
        with self._lock:
            wanted = email.strip().lower()
            if any(r.company_id == company.id and r.email == wanted for r in self.records.values()):
                if self.duplicate_status == 500:
                    raise ApiError(500, "An error has occurred.")
                raise ApiError(self.duplicate_status, "A client with this email address already exists.")
            now = self._now()
            kept = {k: v for k, v in profile.items() if v is not None}
            rec = RecordRec(self._new_id(), company.id, kept, bool(body.get("isActive", True)), now, now)
            self.records[rec.id] = rec
            return rec

    def replace_record(self, company: CompanyRec, record_id: str, body: dict[str, Any]) -> RecordRec:
        """Full replace: whatever the body does not carry is erased."""
        with self._lock:
            rec = self._own_record(company, record_id)
            profile = body.get("profile")
            if not isinstance(profile, dict) or not profile.get("firstName") or not profile.get("lastName"):
                raise bad_request("profile.firstName and profile.lastName are required")
            rec.profile = {k: v for k, v in profile.items() if v is not None}
            rec.is_active = bool(body.get("isActive", False))
            rec.modified = self._bumped(rec.modified)
            return rec

    def change_record(self, record_id: str, change: RecordChange) -> RecordRec:
        """Emulator control: an edit made in Practice Better's own screens."""
        with self._lock:
            rec = self.records.get(record_id)
            if rec is None:
                raise not_found()
            for name in RecordChange.__struct_fields__:
                value = getattr(change, name)
                if value is not None:
                    rec.profile[name] = value
            rec.modified = self._bumped(rec.modified)
            return rec

    def _bumped(self, previous: datetime.datetime) -> datetime.datetime:
        now = self._now()
        return now if now > previous else previous + datetime.timedelta(milliseconds=1)

    # ------------------------------------------------------------------ availability

    def free_slots(
        self, company: CompanyRec, consultant: str, service: ServiceRec, day: datetime.date
    ) -> list[dict[str, Any]]:
        seed = self.seed
        if day.weekday() not in seed.open_weekdays:
            return []
        duration = datetime.timedelta(minutes=service.duration)
        step = datetime.timedelta(minutes=seed.slot_step_minutes)
        slot = datetime.datetime.combine(day, datetime.time.fromisoformat(seed.open_from), self.zone)
        closing = datetime.datetime.combine(day, datetime.time.fromisoformat(seed.open_until), self.zone)
        now = self._now()
        busy = [s for s in self.sessions.values() if s.company_id == company.id and s.consultant_id == consultant]
        out: list[dict[str, Any]] = []
        while slot + duration <= closing:
            start = slot.astimezone(UTC)
            end = start + duration
            if start >= now and not any(s.overlaps(start, end) for s in busy):
                out.append({"startDate": iso(start), "endDate": iso(end), "duration": f"PT{service.duration}M"})
            slot = slot + step
        return out

    # ------------------------------------------------------------------ webhooks

    def _emit(self, company_id: str, event_type: str, resource_id: str) -> None:
        """Deliver to every matching subscription, after the response (Practice Better delivers asynchronously)."""
        targets = [
            s
            for s in self.subscriptions.values()
            if s.company_id == company_id and s.active and event_type in s.event_types
        ]
        if not targets:
            return
        company = self.companies[company_id]
        for sub in targets:
            task = asyncio.get_running_loop().create_task(
                self._deliver(sub.endpoint_url, company.signing_secret, company_id, event_type, resource_id)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, secret: str, company_id: str, event_type: str, resource_id: str) -> None:
        stamp = int(self.clock())
        body = msgspec.json.encode(
            {"eventType": event_type, "resourceId": resource_id, "companyId": company_id, "timestamp": stamp}
        )
        status: int | None = None
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(
                    url,
                    content=body,
                    headers={"Content-Type": JSON, signature.HEADER: signature.sign(secret, stamp, body)},
                )
                status = response.status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.deliveries.append(Delivery(url=url, event_type=event_type, resource_id=resource_id, status=status))

    async def _handshake(self, url: str, token: str) -> bool:
        challenge = secrets.token_hex(12)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(url, params={"challenge": challenge, "verification_token": token})
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        try:
            answer = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            return False
        return isinstance(answer, dict) and answer.get("challenge") == challenge

    # ------------------------------------------------------------------ the app

    def app(self) -> litestar.Litestar:
        em = self

        def reply(content: Any, status: int = 200) -> Response[bytes]:
            return Response(msgspec.json.encode(content), status_code=status, media_type=JSON)

        @post("/oauth2/token", status_code=200)
        async def token(request: Request[Any, Any, Any]) -> Response[bytes]:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
            with em._lock:
                em.token_requests += 1
            if "client_id" not in form or "client_secret" not in form:
                return reply({"error": "invalid_request"}, 400)
            if form.get("grant_type", "client_credentials") != "client_credentials":
                return reply({"error": "unsupported_grant_type"}, 400)
            company = next((c for c in em.companies.values() if c.client_id == form["client_id"]), None)
            if company is None or not hmac.compare_digest(company.client_secret, form["client_secret"]):
                return reply({"error": "invalid_client"}, 401)
            access = secrets.token_urlsafe(24)
            with em._lock:
                em.tokens[access] = (company.id, em.clock() + em.token_lifetime)
            return reply({"access_token": access, "expires_in": em.token_lifetime, "token_type": "Bearer"})

        @get("/company/administration/members", sync_to_thread=False)
        def members(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            return reply(em._page(request, [em._member(m) for m in company.members.values()]))

        @get("/consultant/services", sync_to_thread=False)
        def services(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            items = [
                {"id": s.id, "name": s.name, "duration": s.duration, "serviceTypes": list(SERVICE_TYPES)}
                for s in company.services.values()
            ]
            return reply(em._page(request, sorted(items, key=lambda i: i["id"], reverse=True)))

        @get("/consultant/records", sync_to_thread=False)
        def list_records(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            gte, lte = em._instant_param(request, "modified_gte"), em._instant_param(request, "modified_lte")
            with em._lock:
                chosen = [
                    r
                    for r in em.records.values()
                    if r.company_id == company.id
                    and (gte is None or r.modified >= gte)
                    and (lte is None or r.modified <= lte)
                ]
                items = [em._record(r) for r in sorted(chosen, key=lambda r: r.id, reverse=True)]
            return reply(em._page(request, items))

        @get("/consultant/records/{record_id:str}", sync_to_thread=False)
        def get_record(request: Request[Any, Any, Any], record_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                return reply(em._record(em._own_record(em._company(request), record_id)))

        @post("/consultant/records")
        async def create_record(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            rec = em.create_record(company, em._body(await request.body()))
            em._emit(company.id, "client.record.created", rec.id)
            return reply(em._record(rec))

        @put("/consultant/records/{record_id:str}")
        async def replace_record(request: Request[Any, Any, Any], record_id: FromPath[str]) -> Response[bytes]:
            company = em._company(request)
            rec = em.replace_record(company, record_id, em._body(await request.body()))
            em._emit(company.id, "client.record.updated", rec.id)
            return reply(em._record(rec))

        @get("/consultant/sessions", sync_to_thread=False)
        def list_sessions(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            params = request.query_params
            consultants = set(params.getall("consultants", []))
            records = set(params.getall("records", []))
            services_ = set(params.getall("services", []))
            gte, lte = em._instant_param(request, "date_gte"), em._instant_param(request, "date_lte")
            with em._lock:
                chosen = [
                    s
                    for s in em.sessions.values()
                    if s.company_id == company.id
                    and (not consultants or s.consultant_id in consultants)
                    and (not records or s.record_id in records)
                    and (not services_ or s.service_id in services_)
                    and (gte is None or s.start >= gte)
                    and (lte is None or s.start <= lte)
                ]
                items = [em._session(s) for s in sorted(chosen, key=lambda s: s.id, reverse=True)]
            return reply(em._page(request, items))

        @get("/consultant/sessions/{session_id:str}", sync_to_thread=False)
        def get_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[bytes]:
            with em._lock:
                return reply(em._session(em._own_session(em._company(request), session_id)))

        @post("/consultant/sessions")
        async def create_session(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            rec = em.create_session(company, em._body(await request.body()))
            em._emit(company.id, "session.created", rec.id)
            with em._lock:
                return reply(em._session(rec))

        @put("/consultant/sessions/{session_id:str}/date")
        async def move_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[bytes]:
            company = em._company(request)
            rec = em.move_session(company, session_id, em._body(await request.body()))
            em._emit(company.id, "session.updated", rec.id)
            with em._lock:
                return reply(em._session(rec))

        @post("/consultant/sessions/{session_id:str}/cancel")
        async def cancel_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[bytes]:
            company = em._company(request)
            rec = em.cancel_session(company, session_id, em._body(await request.body()))
            em._emit(company.id, "session.cancelled", rec.id)
            return Response(b"", status_code=202)

        @get("/consultant/availability/slots", sync_to_thread=False)
        def slots(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            params = request.query_params
            consultant = params.get("as_consultant") or next(m.id for m in company.members.values() if m.is_owner)
            service = company.services.get(params.get("serviceId") or "")
            if consultant not in company.members or service is None:
                raise bad_request("The request is invalid.")
            raw_day = (params.get("day") or "")[:10]
            try:
                day = datetime.date.fromisoformat(raw_day)
            except ValueError:
                raise bad_request("day is required") from None
            with em._lock:
                found = em.free_slots(company, consultant, service, day)
            if not found:
                return Response(b"", status_code=204)
            return reply(found)

        @post("/webhooks/subscription")
        async def subscribe(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            body = em._body(await request.body())
            url, events, token_ = body.get("endpointUrl"), body.get("eventTypes"), body.get("verificationToken")
            if not isinstance(url, str) or not isinstance(events, list) or not isinstance(token_, str):
                raise bad_request("endpointUrl, eventTypes and verificationToken are required")
            if not await em._handshake(url, token_):
                raise bad_request("The endpoint did not answer the verification challenge.")
            sub = SubscriptionRec(em._new_id(), company.id, url, [str(e) for e in events], em._now())
            with em._lock:
                em.subscriptions[sub.id] = sub
            return reply(
                {
                    "id": sub.id,
                    "status": "active",
                    "isActive": True,
                    "apiVersion": "v1",
                    "companyId": company.id,
                    "endpointUrl": url,
                    "events": sub.event_types,
                    "dateCreated": iso(sub.created),
                    "plaintextSigningSecret": company.signing_secret,
                }
            )

        @get("/webhooks/subscription", sync_to_thread=False)
        def subscriptions(request: Request[Any, Any, Any]) -> Response[bytes]:
            company = em._company(request)
            items = [
                {"id": s.id, "endpointUrl": s.endpoint_url, "events": s.event_types, "isActive": s.active}
                for s in em.subscriptions.values()
                if s.company_id == company.id
            ]
            return reply(em._page(request, items))

        @delete("/webhooks/subscription/{subscription_id:str}", status_code=204, sync_to_thread=False)
        def unsubscribe(request: Request[Any, Any, Any], subscription_id: FromPath[str]) -> None:
            company = em._company(request)
            with em._lock:
                sub = em.subscriptions.get(subscription_id)
                if sub is None or sub.company_id != company.id:
                    raise not_found()
                del em.subscriptions[subscription_id]

        @post(CONTROL_PREFIX + "/tokens/revoke", status_code=204, sync_to_thread=False)
        def revoke() -> None:
            em.revoke_tokens()

        @post(CONTROL_PREFIX + "/records/{record_id:str}", status_code=204)
        async def edit_record(record_id: FromPath[str], request: Request[Any, Any, Any]) -> None:
            """Emulator control, not Practice Better's API: the practice editing a client in its own screens."""
            change = msgspec.json.decode(await request.body(), type=RecordChange)
            rec = em.change_record(record_id, change)
            em._emit(rec.company_id, "client.record.updated", rec.id)

        @post(CONTROL_PREFIX + "/sessions/{session_id:str}/cancel", status_code=204)
        async def practice_cancels(session_id: FromPath[str]) -> None:
            """Emulator control: the practice cancelling a session in its own screens."""
            with em._lock:
                rec = em.sessions.get(session_id)
                if rec is None:
                    raise not_found()
                company = em.companies[rec.company_id]
            em.cancel_session(company, session_id, {})
            em._emit(company.id, "session.cancelled", session_id)

        def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
            return reply(exc.body, exc.status)

        def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
            if exc.status_code in (404, 405):
                return reply({"message": "No HTTP resource was found that matches the request URI."}, 404)
            return reply({"message": str(exc.detail)}, exc.status_code)

        handlers = [
            token, members, services, list_records, get_record, create_record, replace_record,
            list_sessions, get_session, create_session, move_session, cancel_session, slots,
            subscribe, subscriptions, unsubscribe, revoke, edit_record, practice_cancels,
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
