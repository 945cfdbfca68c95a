"""One patient -> one GHL contact: found by the stored link, else by GHL's duplicate search on e-mail and phone,
else created; written without tags (an upsert's `tags` would replace the agency's), read back and compared.

Defences against the upsert's documented defects (destination.md §1.3): the upsert is not used at all (it updates
whichever contact GHL matches first, tags included), so a contact is found by the duplicate search and made by the
plain create; tags only through the tag endpoints; a field GHL dropped silently is sent again once, then
reported; a create that failed (a 422 that still created the contact, GHL issue #64, or an answer lost in transit)
is followed by a new duplicate search before anything is created again; a contact already linked to another
patient is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from adapters.errors import NotFound, Rejected, Timeout, Unavailable
from adapters.ghl import wire
from adapters.ghl.client import GhlClient
from adapters.locks import LoopLocks
from adapters.phones import e164, region_for_zone
from gateway.ghl.destination import fields, tags
from gateway.ghl.destination.errors import PushFailed
from gateway.ghl.destination.settings import ExtraField, GhlSettings
from gateway.storage import ghl_destination as db
from gateway.storage.store import Store
from schemas.patients import Patient
from schemas.webhooks import PatientSnapshot

SOURCE = "EMR Gateway"
CREATE_LOCK_SECONDS = 30.0  # a holder that died frees it after this
CREATE_LOCK_WAIT = 20.0
_HOLDER = f"{socket.gethostname()[:60]}:{os.getpid()}"
_LOCAL_LOCKS = LoopLocks()  # one lock per location and event loop


class Target(msgspec.Struct, kw_only=True):
    """What one push wants a contact to be."""

    body: wire.ContactWrite
    tags: set[str] | None  # None: leave tags as they are (no snapshot to decide them from)
    lapses_at: datetime | None
    digest: str


class Contacts:
    def __init__(
        self, store: Store, client: GhlClient, location_id: str, emr: str, zone: str, settings: GhlSettings
    ) -> None:
        self.store = store
        self.client = client
        self.location_id = location_id
        self.emr = emr
        self.zone = zone
        self.settings = settings

    # -- what to write --------------------------------------------------------------------------------------------

    def target(
        self, patient: Patient, snapshot: PatientSnapshot | None, field_ids: dict[str, str], now: datetime
    ) -> Target:
        custom: list[wire.FieldValue] | None = None
        wanted: set[str] | None = None
        lapses_at = None
        if snapshot is not None:
            values = fields.values_of(snapshot, self.emr, self.zone)
            custom = [
                wire.FieldValue(id=field_ids[key], field_value=value)
                for key, value in sorted(values.items())
                if key in field_ids
            ]
            wanted = tags.desired(snapshot, self.settings, now)
            lapses_at = tags.lapses_at(snapshot, self.settings, now)
        body = wire.ContactWrite(
            first_name=patient.first_name or None,
            last_name=patient.last_name or None,
            email=patient.email or None,
            phone=patient.phones[0] if patient.phones else None,
            date_of_birth=(
                patient.date_of_birth.isoformat()
                if patient.date_of_birth and ExtraField.DATE_OF_BIRTH in self.settings.extra_fields
                else None
            ),
            source=SOURCE,
            custom_fields=custom,
        )
        digest = hashlib.sha256(msgspec.json.encode([body, sorted(wanted) if wanted is not None else None])).hexdigest()
        return Target(body=body, tags=wanted, lapses_at=lapses_at, digest=digest)

    # -- finding or creating ------------------------------------------------------------------------------------

    async def _unowned(self, found: wire.Contact | None, patient_id: str) -> wire.Contact | None:
        if found is None:
            return None
        owner = await db.contact_owner(self.store, self.location_id, found.id)
        return found if owner in (None, patient_id) else None

    async def _find(self, body: wire.ContactWrite, patient_id: str) -> tuple[wire.Contact | None, bool]:
        """(a contact this patient may take, whether GHL holds a duplicate that belongs to another patient)."""
        if not body.email and not body.phone:
            return None, False
        found = await self.client.find_duplicate(body.email, body.phone)
        mine = await self._unowned(found, patient_id)
        return mine, found is not None and mine is None

    async def _create(self, target: Target, patient_id: str) -> tuple[str, bool]:
        """(a new contact, True), with GHL's create (never the upsert: it would update whichever contact GHL matches,
        which can be another patient's) carrying the whole target, tags included (a contact the gateway makes holds
        no agency tags yet). (an existing contact, False) when the create failed but the contact is there after
        all. A location that forbids duplicates refuses the create when one exists."""
        body = msgspec.structs.replace(target.body, tags=sorted(target.tags) if target.tags else None)
        try:
            return (await self.client.create_contact(body)).id, True
        except (Rejected, Unavailable, Timeout) as exc:
            # A 422 that still created it (GHL #64), a duplicate GHL's search had not shown, or an answer lost:
            # look before anyone creates again.
            again, taken = await self._find(body, patient_id)
            if again is not None:
                return again.id, False
            if isinstance(exc, Rejected) and taken:
                raise PushFailed(
                    "ghl_duplicate_refused",
                    "GoHighLevel refused a second contact with this e-mail or phone (the location does not allow "
                    "duplicates) and the existing one belongs to another patient",
                    ghl_status=exc.emr_status,
                    final=True,
                ) from None
            raise

    async def ensure(self, patient_id: str, target: Target) -> tuple[str, db.ContactLink | None, bool]:
        """The contact's id, linked before anything else is written to it (a crash after this never creates a
        second contact), the link as it stood before, and whether this call created it with `target`'s body.
        Finding and creating run under the location's creation lease, so two patients who share a phone are never
        matched to one new contact at once."""
        link = await db.contact_link(self.store, self.location_id, patient_id)
        if link is not None:
            return link.contact_id, link, False
        async with self._creating():
            link = await db.contact_link(self.store, self.location_id, patient_id)
            if link is not None:
                return link.contact_id, link, False
            found, _ = await self._find(target.body, patient_id)
            contact_id, created = (found.id, False) if found is not None else await self._create(target, patient_id)
            await self._link(patient_id, contact_id, digest=None, owned=[], lapses_at=None)
        return contact_id, None, created

    @contextlib.asynccontextmanager
    async def _creating(self) -> AsyncIterator[None]:
        local = _LOCAL_LOCKS.get(self.location_id)
        async with local:
            holder = f"{_HOLDER}:{id(self)}"
            deadline = time.monotonic() + CREATE_LOCK_WAIT
            while not await db.take_create_lock(self.store, self.location_id, holder, CREATE_LOCK_SECONDS):
                if time.monotonic() > deadline:
                    raise PushFailed("ghl_busy", "another worker is creating a contact here; tried again shortly")
                await asyncio.sleep(0.05)
            try:
                yield
            finally:
                await db.release_create_lock(self.store, self.location_id, holder)

    async def _link(
        self, patient_id: str, contact_id: str, *, digest: str | None, owned: list[str], lapses_at: datetime | None
    ) -> None:
        try:
            await db.save_contact_link(
                self.store, self.location_id, patient_id, contact_id, digest=digest, tags=owned, lapses_at=lapses_at
            )
        except db.LinkConflict:
            raise PushFailed(
                "ghl_contact_conflict", "this GHL contact is linked to another patient of the location", final=True
            ) from None

    # -- the push -------------------------------------------------------------------------------------------------

    async def push(self, patient_id: str, target: Target) -> bool:
        """Writes the contact when it differs from what was last written; False when nothing needed a call."""
        link = await db.contact_link(self.store, self.location_id, patient_id)
        if link is not None and link.digest == target.digest:
            return False
        contact_id, link, created = await self.ensure(patient_id, target)
        try:
            if not created:  # a contact just made from this very target needs no second write
                await self.client.update_contact(contact_id, target.body)
        except NotFound:
            # The agency deleted the contact: find or create it again on the next attempt.
            await db.forget_contact(self.store, self.location_id, patient_id)
            raise PushFailed(
                "ghl_contact_gone", "the linked GHL contact was deleted; it is found or made again"
            ) from None
        stored = await self._verify(patient_id, contact_id, target)
        owned = tags.owned(stored.tags, self.settings)
        if target.tags is not None:
            await self._tags(contact_id, owned, target.tags)
            owned = set(target.tags)
        elif link is not None:
            owned = set(link.tags)
        await self._link(patient_id, contact_id, digest=target.digest, owned=sorted(owned), lapses_at=target.lapses_at)
        return True

    async def _tags(self, contact_id: str, have: set[str], want: set[str]) -> None:
        if add := sorted(want - have):
            await self.client.add_tags(contact_id, add)
        if remove := sorted(have - want):
            await self.client.remove_tags(contact_id, remove)

    async def _verify(self, patient_id: str, contact_id: str, target: Target) -> wire.Contact:
        """Read back; what GHL silently dropped is sent once more, then reported."""
        for attempt in range(2):
            stored = await self.client.get_contact(contact_id)
            if stored is None:
                await db.forget_contact(self.store, self.location_id, patient_id)
                raise PushFailed("ghl_contact_gone", "the GHL contact vanished right after it was written")
            missing = dropped(target.body, stored, region_for_zone(self.zone))
            if not missing:
                return stored
            if attempt == 0:
                await self.client.update_contact(contact_id, _only(target.body, missing))
        raise PushFailed(
            "ghl_field_dropped",
            "GoHighLevel did not keep: " + ", ".join(sorted(missing)),
        )


def _same(wanted: object, stored: object) -> bool:
    if isinstance(wanted, int | float) and not isinstance(wanted, bool):
        try:
            return float(str(stored)) == float(wanted)
        except ValueError:
            return False
    if wanted == "":
        return stored in (None, "", [])
    return str(wanted) == str(stored)


def dropped(body: wire.ContactWrite, stored: wire.Contact, region: str | None = None) -> set[str]:
    """Names (never values) of what the contact should hold and does not. Phones are compared as E.164
    (adapters.phones), a national form GoHighLevel shows read in the location's country."""
    missing: set[str] = set()
    if body.email and (stored.email or "").lower() != body.email.lower():
        missing.add("email")
    if body.phone and e164(stored.phone, region) != e164(body.phone, region):
        missing.add("phone")
    if body.first_name and (stored.first_name or "").lower() != body.first_name.lower():
        missing.add("firstName")
    if body.last_name and (stored.last_name or "").lower() != body.last_name.lower():
        missing.add("lastName")
    have = {item.id: item.value for item in stored.custom_fields if item.id}
    for item in body.custom_fields or []:
        if not _same(item.field_value, have.get(item.id)):
            missing.add(f"customField:{item.id}")
    return missing


def _only(body: wire.ContactWrite, missing: set[str]) -> wire.ContactWrite:
    return wire.ContactWrite(
        email=body.email if "email" in missing else None,
        phone=body.phone if "phone" in missing else None,
        first_name=body.first_name if "firstName" in missing else None,
        last_name=body.last_name if "lastName" in missing else None,
        custom_fields=[item for item in body.custom_fields or [] if f"customField:{item.id}" in missing] or None,
    )
