"""Typed calls to the LeadConnector API v2 for the destination half: one Private Integration token, one GHL
location. Reads retry like an EMR adapter's; writes go out once, and the caller decides what a failed write means
(every write here is made safe to repeat by a lookup first: duplicate search for contacts, a window search for
calendar events)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TypeVar
from urllib.parse import quote

import httpx
import msgspec

from adapters.errors import AdapterError, AuthFailed, NotFound, RateLimited, Rejected, Unavailable
from adapters.ghl import wire
from adapters.http import DEFAULT_RETRY, RetryPolicy, decode, retry_after_of, safe_message, send_read, transport_error

GHL = "GoHighLevel"
DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"
T = TypeVar("T")


def _says_not_found(response: httpx.Response) -> bool:
    """GHL answers an unknown contact or event with 400 "… not found" (the v2 spec declares no 404 there). Only read
    to classify the error, never shown (the text can carry an id)."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    message = body.get("message") if isinstance(body, dict) else None
    texts = message if isinstance(message, list) else [message]
    return any(isinstance(text, str) and "not found" in text.lower() for text in texts)


def _error(response: httpx.Response, what: str) -> AdapterError:
    status = response.status_code
    message = safe_message(response)
    if status == 401:
        return AuthFailed(f"GoHighLevel refused the token ({what})", emr_status=status, emr_message=message)
    if status == 403:
        return AuthFailed(f"the token lacks a scope or this location ({what})", emr_status=status, emr_message=message)
    if status == 404 or (status == 400 and _says_not_found(response)):
        return NotFound(f"GoHighLevel has no such record ({what})", emr_status=status, emr_message=message)
    if status == 429:
        # GHL documents no Retry-After on API 429s: its burst window (X-RateLimit-Interval-Milliseconds, 10 s) is
        # the pause, so the next attempt meets a new window.
        interval = response.headers.get("x-ratelimit-interval-milliseconds", "")
        window = math.ceil(int(interval) / 1000) if interval.isdigit() and int(interval) > 0 else 10
        return RateLimited(
            f"GoHighLevel's rate limit ({what})",
            retry_after=retry_after_of(response, default=min(window, 60)),
            emr_status=status,
            emr_message=message,
        )
    if status >= 500:
        return Unavailable(f"GoHighLevel answered {status} ({what})", emr_status=status, emr_message=message)
    return Rejected(f"GoHighLevel refused {what}", emr_status=status, emr_message=message)


def _ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


class GhlClient:
    """`calls` counts requests sent (what one push cost); `daily_remaining` is GHL's last word on the daily limit."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        token: str,
        location_id: str,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.location_id = location_id
        self.retry = retry
        self.calls = 0
        self.daily_remaining: int | None = None
        self._auth = f"Bearer {token}"

    def _headers(self, version: str, body: bool) -> dict[str, str]:
        headers = {"Authorization": self._auth, "Version": version, "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    def _note(self, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-daily-remaining", "")
        if remaining.isdigit():
            self.daily_remaining = int(remaining)

    async def _send(
        self, method: str, path: str, version: str, what: str, *, body: msgspec.Struct | None = None, read: bool
    ) -> httpx.Response:
        url = self.base_url + path
        content = msgspec.json.encode(body) if body is not None else None
        headers = self._headers(version, content is not None)

        async def once() -> httpx.Response:
            self.calls += 1
            return await self.http.request(method, url, content=content, headers=headers)

        try:
            response = await (send_read(once, self.retry) if read else once())
        except httpx.TransportError as exc:
            raise transport_error(exc, GHL) from None
        self._note(response)
        if response.status_code >= 400:
            raise _error(response, what)
        return response

    async def _json(
        self, method: str, path: str, version: str, what: str, into: type[T], *, body: msgspec.Struct | None = None
    ) -> T:
        response = await self._send(method, path, version, what, body=body, read=method == "GET")
        return decode(response.content, into, emr=GHL, status=response.status_code)

    # -- locations and custom fields ----------------------------------------------------------------------------

    async def get_location(self) -> wire.Location:
        path = f"/locations/{quote(self.location_id, safe='')}"
        return (await self._json("GET", path, wire.LOCATIONS_VERSION, "the location", wire.LocationBody)).location

    async def list_custom_fields(self) -> list[wire.CustomField]:
        path = f"/locations/{quote(self.location_id, safe='')}/customFields?model=contact"
        found = await self._json("GET", path, wire.LOCATIONS_VERSION, "the custom fields", wire.CustomFieldList)
        return found.custom_fields

    async def create_custom_field(self, field: wire.NewCustomField) -> wire.CustomField:
        path = f"/locations/{quote(self.location_id, safe='')}/customFields"
        made = await self._json(
            "POST", path, wire.LOCATIONS_VERSION, "a custom field", wire.CustomFieldBody, body=field
        )
        return made.custom_field

    # -- contacts ---------------------------------------------------------------------------------------------------

    async def find_duplicate(self, email: str | None, phone: str | None) -> wire.Contact | None:
        """GHL's own duplicate search, by the location's configured order; `+` must travel as `%2B`."""
        params = [f"locationId={quote(self.location_id, safe='')}"]
        if email:
            params.append(f"email={quote(email, safe='')}")
        if phone:
            params.append(f"number={quote(phone, safe='')}")
        path = "/contacts/search/duplicate?" + "&".join(params)
        return (await self._json("GET", path, wire.CONTACTS_VERSION, "a duplicate search", wire.MaybeContact)).contact

    async def get_contact(self, contact_id: str) -> wire.Contact | None:
        try:
            path = f"/contacts/{quote(contact_id, safe='')}"
            return (await self._json("GET", path, wire.CONTACTS_VERSION, "a contact read", wire.ContactBody)).contact
        except NotFound:
            return None

    async def upsert_contact(self, body: wire.ContactWrite) -> wire.UpsertAnswer:
        body = msgspec.structs.replace(body, location_id=self.location_id)
        return await self._json(
            "POST", "/contacts/upsert", wire.CONTACTS_VERSION, "a contact upsert", wire.UpsertAnswer, body=body
        )

    async def create_contact(self, body: wire.ContactWrite) -> wire.Contact:
        body = msgspec.structs.replace(body, location_id=self.location_id)
        made = await self._json(
            "POST", "/contacts/", wire.CONTACTS_VERSION, "a contact create", wire.ContactBody, body=body
        )
        return made.contact

    async def update_contact(self, contact_id: str, body: wire.ContactWrite) -> None:
        body = msgspec.structs.replace(body, location_id=None)
        await self._send(
            "PUT",
            f"/contacts/{quote(contact_id, safe='')}",
            wire.CONTACTS_VERSION,
            "a contact update",
            body=body,
            read=False,
        )

    async def add_tags(self, contact_id: str, tags: list[str]) -> None:
        path = f"/contacts/{quote(contact_id, safe='')}/tags"
        await self._send("POST", path, wire.CONTACTS_VERSION, "a tag add", body=wire.Tags(tags=tags), read=False)

    async def remove_tags(self, contact_id: str, tags: list[str]) -> None:
        path = f"/contacts/{quote(contact_id, safe='')}/tags"
        await self._send("DELETE", path, wire.CONTACTS_VERSION, "a tag removal", body=wire.Tags(tags=tags), read=False)

    # -- calendars --------------------------------------------------------------------------------------------------

    async def list_calendars(self) -> list[wire.Calendar]:
        path = f"/calendars/?locationId={quote(self.location_id, safe='')}"
        return (await self._json("GET", path, wire.CALENDARS_VERSION, "the calendars", wire.CalendarList)).calendars

    async def create_appointment(self, body: wire.AppointmentWrite) -> wire.Event:
        body = msgspec.structs.replace(body, location_id=self.location_id)
        return await self._json(
            "POST",
            "/calendars/events/appointments",
            wire.CALENDARS_VERSION,
            "an appointment create",
            wire.Event,
            body=body,
        )

    async def update_appointment(self, event_id: str, body: wire.AppointmentWrite) -> None:
        path = f"/calendars/events/appointments/{quote(event_id, safe='')}"
        await self._send("PUT", path, wire.CALENDARS_VERSION, "an appointment update", body=body, read=False)

    async def get_appointment(self, event_id: str) -> wire.Event | None:
        path = f"/calendars/events/appointments/{quote(event_id, safe='')}"
        try:
            found = await self._json("GET", path, wire.CALENDARS_VERSION, "an appointment read", wire.EventBody)
        except NotFound:
            return None
        return found.found()

    async def delete_event(self, event_id: str) -> None:
        try:
            await self._send(
                "DELETE",
                f"/calendars/events/{quote(event_id, safe='')}",
                wire.CALENDARS_VERSION,
                "an event delete",
                read=False,
            )
        except NotFound:
            return  # already gone: what a delete wants

    async def create_block_slot(self, body: wire.BlockSlotWrite) -> wire.Event:
        body = msgspec.structs.replace(body, location_id=self.location_id)
        return await self._json(
            "POST",
            "/calendars/events/block-slots",
            wire.CALENDARS_VERSION,
            "a block slot create",
            wire.Event,
            body=body,
        )

    async def update_block_slot(self, event_id: str, body: wire.BlockSlotWrite) -> None:
        path = f"/calendars/events/block-slots/{quote(event_id, safe='')}"
        await self._send("PUT", path, wire.CALENDARS_VERSION, "a block slot update", body=body, read=False)

    async def find_events(self, calendar_id: str, start: datetime, end: datetime, *, blocked: bool) -> list[wire.Event]:
        """Events of one calendar in a window (no cursor in the spec): how a create whose answer was lost is found."""
        base = "/calendars/blocked-slots" if blocked else "/calendars/events"
        path = (
            f"{base}?locationId={quote(self.location_id, safe='')}&calendarId={quote(calendar_id, safe='')}"
            f"&startTime={_ms(start)}&endTime={_ms(end)}"
        )
        return (await self._json("GET", path, wire.CALENDARS_VERSION, "an event search", wire.EventList)).events
