"""The committed OpenAPI document is usable as published: a Python client generated from it (openapi-python-client,
as a client author would run it) books, reschedules and cancels an appointment through the live gateway."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.gateway.conftest import Harness

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "openapi" / "openapi.json"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "egw_generated_client"


@pytest.fixture(scope="module")
def client_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("generated")
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(COMMITTED), "--meta", "none", "--output-path", str(out / PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        # Its post-generation hook runs `ruff` from PATH: the one installed beside this interpreter (`make test` calls
        # .venv/bin/ruff by path, so .venv/bin need not be on PATH).
        env={**os.environ, "PATH": os.pathsep.join([str(GENERATOR.parent), os.environ.get("PATH", "")])},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr  # nothing in the document was skipped
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_generated_client_books_reschedules_and_cancels(client_package: ModuleType, harness: Harness) -> None:
    models = _module("models")
    client = client_package.AuthenticatedClient(
        base_url=harness.base_url,
        token=harness.sites[0].api_key,
        prefix="",
        auth_header_name="x-api-key",
        raise_on_unexpected_status=True,
    )
    with client:
        practitioners = _module("api.catalog.v1_practitioners_practitioners").sync(client=client)
        services = _module("api.catalog.v1_services_services").sync(client=client)
        practitioner, service = practitioners.items[0], services.items[0]
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")

        # The grouped query parameters ("exactly one of practitioner_id, _email, _name") as the client exposes them.
        next_slot = _module("api.availability.v1_availability_next_next_slot").sync(
            client=client,
            practitioner=models.V1AvailabilityNextNextSlotPractitioner(practitioner_email=practitioner.email),
            service=models.V1AvailabilityNextNextSlotService(service_id=service.id),
            from_=tomorrow,
        )
        assert isinstance(next_slot, models.NextSlot), next_slot
        assert next_slot.slot is not None
        slot = next_slot.slot

        booked = _module("api.appointments.v1_appointments_book").sync(
            client=client,
            body=models.BookAppointment(
                practitioner=models.PractitionerRef(id=slot.practitioner_id),
                service=models.ServiceRef(name=service.name),
                patient=models.PatientRef(email="gen.client@example.com", first_name="Gen", last_name="Client"),
                start=slot.start.isoformat(),
                notes="booked by a generated client",
            ),
            idempotency_key="generated-client-book-1",
        )
        assert isinstance(booked, models.Appointment), booked
        assert booked.status == models.AppointmentStatus.BOOKED
        assert booked.start == slot.start

        later = slot.start + timedelta(days=1)
        moved = _module("api.appointments.v1_appointments_appointment_id_reschedule").sync(
            appointment_id=booked.id,
            client=client,
            body=models.RescheduleAppointment(start=later.isoformat()),
        )
        assert isinstance(moved, models.Appointment), moved
        assert (moved.id, moved.start) == (booked.id, later)

        cancelled = _module("api.appointments.v1_appointments_appointment_id_cancel_cancel").sync(
            appointment_id=booked.id,
            client=client,
            body=models.CancelAppointment(reason=models.CancelReason.SICK, note="generated client"),
        )
        assert isinstance(cancelled, models.Appointment), cancelled
        assert cancelled.status == models.AppointmentStatus.CANCELLED

        again = _module("api.appointments.v1_appointments_appointment_id_get_one").sync(
            appointment_id=booked.id, client=client
        )
        assert isinstance(again, models.Appointment), again
        assert again.status == models.AppointmentStatus.CANCELLED

        # An error comes back as the document's Problem, not as an undocumented answer.
        refused = _module("api.appointments.v1_appointments_book").sync(
            client=client,
            body=models.BookAppointment(
                practitioner=models.PractitionerRef(name="Nobody Here"),
                service=models.ServiceRef(id=service.id),
                patient=models.PatientRef(email="gen.client@example.com"),
                start=later.isoformat(),
            ),
        )
        assert isinstance(refused, models.Problem), refused
        assert refused.code == models.ErrorCode.UNKNOWN_PRACTITIONER
