"""What a route needs about its caller's location: the adapter, the catalog and the zone, in one object."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from adapters.base import Capability
from gateway.catalog import Catalog
from gateway.emr import AnyAdapter
from gateway.errors import ValidationFailed
from gateway.runtime import Principal, Runtime
from gateway.storage import aliases
from schemas.appointments import Appointment
from schemas.commands import CancelCommand, RescheduleCommand
from schemas.problems import FieldError


class LocationScope:
    """Built per request from the principal; every EMR call for the request goes through `adapter`."""

    def __init__(self, runtime: Runtime, principal: Principal, adapter: AnyAdapter) -> None:
        self.runtime = runtime
        self.principal = principal
        self.adapter = adapter

    @property
    def location_id(self) -> str:
        return self.principal.location.id

    @property
    def time_zone(self) -> str:
        return self.principal.location.time_zone

    async def catalog(self) -> Catalog:
        return await self.runtime.catalogs.get(self.location_id, self.adapter)

    # Every entry point (REST, GoHighLevel, ClinicSync, voice) reads and writes appointments through these three, so
    # an id an EMR replaced on reschedule keeps working everywhere and the replacement is recorded once.

    async def current_id(self, appointment_id: str) -> str:
        if not self.adapter.reissues_ids:
            return appointment_id  # no alias can exist: no database read on the request path
        return await aliases.resolve(self.runtime.store, self.location_id, appointment_id)

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return await self.adapter.get_appointment(await self.current_id(appointment_id))

    async def reschedule(self, command: RescheduleCommand, *, end_is_hint: bool = False) -> Appointment:
        """`end_is_hint` as in `book_in`: a calendar slot's end, dropped where the EMR fixes the length."""
        current = await self.current_id(command.appointment_id)
        command = msgspec.structs.replace(command, appointment_id=current)
        if command.end is not None and not self.adapter.supports(Capability.CUSTOM_DURATION):
            if not end_is_hint:
                await self._refuse_custom_length(command)
            command = msgspec.structs.replace(command, end=None)
        moved = await self.adapter.reschedule(command)
        if moved.id != current:
            await aliases.record(self.runtime.store, self.location_id, current, moved.id)
            if moved.replaces_id is None:
                moved = msgspec.structs.replace(moved, replaces_id=current)
        return moved

    async def _refuse_custom_length(self, command: RescheduleCommand) -> None:
        existing = await self.adapter.get_appointment(command.appointment_id)
        start = command.start or existing.start
        service = next((s for s in (await self.catalog()).services if s.id == existing.service_id), None)
        if service is None or command.end is None or command.end - start == timedelta(minutes=service.duration_minutes):
            return
        raise ValidationFailed(
            f"{self.adapter.display_name} sets an appointment's length from its service "
            f"({service.duration_minutes} min): omit end",
            errors=[FieldError(field="end", message="this EMR books the service's length")],
        )

    async def cancel(self, command: CancelCommand) -> Appointment:
        current = await self.current_id(command.appointment_id)
        return await self.adapter.cancel(msgspec.structs.replace(command, appointment_id=current))


async def scope_for(runtime: Runtime, principal: Principal) -> LocationScope:
    return LocationScope(runtime, principal, await runtime.adapters.get(principal.location))


def encode(value: msgspec.Struct) -> bytes:
    return msgspec.json.encode(value)
