"""EMR appointments mirrored into GHL calendars, through the practitioner -> calendar map.

`appointments`: a GHL appointment on the mapped calendar, linked to the patient's contact, its status following
the EMR (booked -> confirmed, cancelled, no-show, showed), `toNotify: false` unless the agency asked for GHL's
automations. `busy`: a blocked slot with no patient data (title "Busy"), removed when the EMR appointment is
cancelled. Every event the gateway writes is linked (`ghl_event_links`), which is also how GHL's echo of it is
recognised on the inbound routes. A create whose answer was lost is found again by a window search on the
calendar before anything is created twice; every write is read back and compared.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from adapters.errors import NotFound, Rejected, Timeout, Unavailable
from adapters.ghl import wire
from adapters.ghl.client import GhlClient
from gateway.ghl.destination.errors import PushFailed
from gateway.ghl.destination.settings import CalendarMode, GhlSettings
from gateway.storage import ghl_destination as db
from gateway.storage.store import Store
from schemas.appointments import AppointmentStatus

BLOCK_TITLE = "Busy"
_STATUS = {
    AppointmentStatus.CANCELLED: "cancelled",
    AppointmentStatus.NOSHOW: "noshow",
    AppointmentStatus.FULFILLED: "showed",
    AppointmentStatus.ARRIVED: "showed",
    AppointmentStatus.CHECKED_IN: "showed",
}


class Mirror(msgspec.Struct, frozen=True, kw_only=True):
    """An EMR appointment as the mirror needs it (facts only; names for the title)."""

    appointment_id: str
    status: AppointmentStatus
    start: datetime
    end: datetime
    practitioner_id: str
    time_zone: str
    title: str


def ghl_status(status: AppointmentStatus) -> str:
    return _STATUS.get(status, "confirmed")


def _iso(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).isoformat()


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Calendars:
    def __init__(self, store: Store, client: GhlClient, location_id: str, settings: GhlSettings) -> None:
        self.store = store
        self.client = client
        self.location_id = location_id
        self.settings = settings

    def calendar_for(self, practitioner_id: str) -> str | None:
        return self.settings.calendars.get(practitioner_id)

    def wanted(self, mirror: Mirror, now: datetime) -> bool:
        if self.settings.calendar_mode is CalendarMode.OFF or self.calendar_for(mirror.practitioner_id) is None:
            return False
        return mirror.end >= now - timedelta(days=self.settings.history_days)

    async def push(self, mirror: Mirror, contact_id: str | None, now: datetime) -> bool:
        """False when nothing needed a call (unmapped, too old, or unchanged)."""
        if not self.wanted(mirror, now):
            return False
        if self.settings.calendar_mode is CalendarMode.BUSY:
            return await self._block(mirror)
        assert contact_id is not None
        return await self._appointment(mirror, contact_id)

    # -- full appointments ----------------------------------------------------------------------------------------

    async def _appointment(self, mirror: Mirror, contact_id: str) -> bool:
        calendar_id = self.calendar_for(mirror.practitioner_id)
        assert calendar_id is not None
        body = wire.AppointmentWrite(
            calendar_id=calendar_id,
            contact_id=contact_id,
            start_time=_iso(mirror.start, mirror.time_zone),
            end_time=_iso(mirror.end, mirror.time_zone),
            title=mirror.title,
            appointment_status=ghl_status(mirror.status),
            to_notify=self.settings.to_notify,
        )
        digest = hashlib.sha256(msgspec.json.encode(body)).hexdigest()
        link = await db.event_link(self.store, self.location_id, mirror.appointment_id)
        if link is not None and link.digest == digest:
            return False
        if link is None and mirror.status is AppointmentStatus.CANCELLED:
            return False  # never mirrored, and nothing to show now
        event_id = (link.ghl_event_id or None) if link is not None else None
        if event_id is not None:
            try:
                await self.client.update_appointment(event_id, body)
            except NotFound:
                event_id = None  # deleted in GHL: mirrored again
        if event_id is None:
            maybe_made = link is not None and not link.ghl_event_id  # an earlier attempt began a create
            await self._intend(mirror.appointment_id, "appointment")
            event_id = await self._create(mirror, calendar_id, body, maybe_made=maybe_made)
            await db.save_event_link(self.store, self.location_id, mirror.appointment_id, event_id, "appointment", None)
        await self._verify(mirror.appointment_id, event_id, body)
        await db.save_event_link(self.store, self.location_id, mirror.appointment_id, event_id, "appointment", digest)
        return True

    async def _intend(self, appointment_id: str, kind: str) -> None:
        """A link with no GHL id yet, written before a create: if the create's answer is lost (or the process dies
        before the link gets its id), the next attempt knows to search the calendar before creating again, and a
        first create costs no search."""
        await db.save_event_link(self.store, self.location_id, appointment_id, "", kind, None)

    async def _create(self, mirror: Mirror, calendar_id: str, body: wire.AppointmentWrite, *, maybe_made: bool) -> str:
        if maybe_made:
            found = await self._lost(mirror, calendar_id, body.contact_id, blocked=False)
            if found is not None:
                return found
        try:
            made = await self.client.create_appointment(body)
        except (Unavailable, Timeout, Rejected):
            found = await self._lost(mirror, calendar_id, body.contact_id, blocked=False)
            if found is not None:
                return found
            raise
        if not made.id:
            raise PushFailed("ghl_contract_changed", "GoHighLevel created an appointment and named no id")
        return made.id

    async def _lost(self, mirror: Mirror, calendar_id: str, contact_id: str | None, *, blocked: bool) -> str | None:
        """An event this mirror created earlier whose answer never arrived: same calendar, start and contact."""
        window = await self.client.find_events(
            calendar_id, mirror.start - timedelta(minutes=1), mirror.end + timedelta(minutes=1), blocked=blocked
        )
        for event in window:
            if not event.id or _instant(event.start_time) != mirror.start:
                continue
            if await db.mirrored_appointment(self.store, self.location_id, event.id) not in (
                None,
                mirror.appointment_id,
            ):
                continue
            if blocked or event.contact_id == contact_id:
                return event.id
        return None

    async def _verify(self, appointment_id: str, event_id: str, body: wire.AppointmentWrite) -> None:
        for attempt in range(2):
            stored = await self.client.get_appointment(event_id)
            if stored is None:
                await db.delete_event_link(self.store, self.location_id, appointment_id)
                raise PushFailed("ghl_event_gone", "the mirrored GHL appointment vanished right after it was written")
            wrong = _differs(body, stored)
            if not wrong:
                return
            if attempt == 0:
                await self.client.update_appointment(event_id, body)
        raise PushFailed("ghl_write_mismatch", "GoHighLevel stored another " + ", ".join(sorted(wrong)))

    # -- busy time ------------------------------------------------------------------------------------------------

    async def _block(self, mirror: Mirror) -> bool:
        calendar_id = self.calendar_for(mirror.practitioner_id)
        assert calendar_id is not None
        link = await db.event_link(self.store, self.location_id, mirror.appointment_id)
        busy = mirror.status not in (AppointmentStatus.CANCELLED,)
        if not busy:
            if link is None:
                return False
            if link.ghl_event_id:
                await self.client.delete_event(link.ghl_event_id)
            else:  # a create that may have happened: find it to delete it
                made = await self._lost(mirror, calendar_id, None, blocked=True)
                if made is not None:
                    await self.client.delete_event(made)
            await db.delete_event_link(self.store, self.location_id, mirror.appointment_id)
            return True
        body = wire.BlockSlotWrite(
            calendar_id=calendar_id,
            title=BLOCK_TITLE,
            start_time=_iso(mirror.start, mirror.time_zone),
            end_time=_iso(mirror.end, mirror.time_zone),
        )
        digest = hashlib.sha256(msgspec.json.encode(body)).hexdigest()
        if link is not None and link.digest == digest:
            return False
        event_id = (link.ghl_event_id or None) if link is not None else None
        if event_id is not None:
            try:
                await self.client.update_block_slot(event_id, body)
            except NotFound:
                event_id = None
        if event_id is None:
            maybe_made = link is not None and not link.ghl_event_id
            await self._intend(mirror.appointment_id, "block")
            event_id = await self._lost(mirror, calendar_id, None, blocked=True) if maybe_made else None
            if event_id is None:
                try:
                    event_id = (await self.client.create_block_slot(body)).id
                except (Unavailable, Timeout, Rejected):
                    event_id = await self._lost(mirror, calendar_id, None, blocked=True)
                    if event_id is None:
                        raise
                if not event_id:
                    raise PushFailed("ghl_contract_changed", "GoHighLevel created a blocked slot and named no id")
            await db.save_event_link(self.store, self.location_id, mirror.appointment_id, event_id, "block", None)
        slots = await self.client.find_events(
            calendar_id, mirror.start - timedelta(minutes=1), mirror.end + timedelta(minutes=1), blocked=True
        )
        if not any(
            s.id == event_id and _instant(s.start_time) == mirror.start and _instant(s.end_time) == mirror.end
            for s in slots
        ):
            raise PushFailed("ghl_write_mismatch", "GoHighLevel does not show the blocked slot at the EMR's time")
        await db.save_event_link(self.store, self.location_id, mirror.appointment_id, event_id, "block", digest)
        return True


def _differs(body: wire.AppointmentWrite, stored: wire.Event) -> set[str]:
    wrong: set[str] = set()
    if _instant(stored.start_time) != _instant(body.start_time):
        wrong.add("startTime")
    if _instant(stored.end_time) != _instant(body.end_time):
        wrong.add("endTime")
    if stored.calendar_id and stored.calendar_id != body.calendar_id:
        wrong.add("calendarId")
    if (stored.appointment_status or "").lower() != (body.appointment_status or "").lower():
        wrong.add("appointmentStatus")
    return wrong
