"""customData keys -> references: each EMR's words from the ClinicSync seed, plus neutral keys."""

from __future__ import annotations

import pytest

from gateway.ghl.references import practitioner_ref, service_ref
from schemas.refs import PractitionerRef, ServiceRef


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ({"staff_member": "practitioner@email.com"}, PractitionerRef(email="practitioner@email.com")),  # Jane/Cliniko
        ({"staff_member": "Dr. Jane Doe"}, PractitionerRef(name="Dr. Jane Doe")),
        ({"practitionerName": "Dr. Jane Doe"}, PractitionerRef(name="Dr. Jane Doe")),  # Nookal
        ({"clinicianEmail": "therapist@example.com"}, PractitionerRef(email="therapist@example.com")),  # SP
        ({"consultantEmail": "p@clinic.com"}, PractitionerRef(email="p@clinic.com")),  # Practice Better
        ({"practitioner_id": "consultant_456", "practitioner": "Ann"}, PractitionerRef(id="consultant_456")),
        ({"Practitioner": " Ann Lee "}, PractitionerRef(name="Ann Lee")),
        ({"practitionerId": 123}, PractitionerRef(id="123")),
        ({"roomName": "Room 2", "practitioner": ""}, None),
    ],
)
def test_practitioner_keys(custom: dict[str, object], expected: PractitionerRef | None) -> None:
    assert practitioner_ref(custom) == expected


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ({"treatment_name": "Physio Consult"}, ServiceRef(name="Physio Consult")),  # Jane
        ({"appt_type_name": "Physio Consult", "appt_type_duration": "30"}, ServiceRef(name="Physio Consult")),
        ({"serviceCode": "PHYSIO30"}, ServiceRef(code="PHYSIO30")),  # Nookal, SimplePractice
        ({"serviceName": "Initial Consultation"}, ServiceRef(name="Initial Consultation")),  # Practice Better
        ({"service_id": "svc_1", "service": "x"}, ServiceRef(id="svc_1")),
        ({"service": "Massage"}, ServiceRef(name="Massage")),
        ({"emr": "cliniko"}, None),
    ],
)
def test_service_keys(custom: dict[str, object], expected: ServiceRef | None) -> None:
    assert service_ref(custom) == expected
