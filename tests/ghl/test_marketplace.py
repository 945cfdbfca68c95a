"""Marketplace-app webhooks: signed by GHL (Ed25519, legacy RSA) over the raw body; keys generated here."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from tests.gateway.conftest import Harness
from tests.ghl.conftest import emr_appointment, link, sample, workflow_body

ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_PUBLIC = base64.b64encode(
    ED_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
RSA_PUBLIC = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
KEYS = pytest.mark.gateway_config(ghl_ed25519_public_key=ED_PUBLIC, ghl_rsa_public_key=RSA_PUBLIC)
URL = "/ghl/v1/marketplace/webhooks"
GHL_LOCATION = "0007BWpSzSwfiuSl0tR2"  # the samples' locationId
GHL_APPOINTMENT = "0007BWpSzSwfiuSl0tR2"  # the samples' appointment.id


def signed_ed25519(body: bytes) -> dict[str, str]:
    return {"X-GHL-Signature": base64.b64encode(ED_KEY.sign(body)).decode(), "content-type": "application/json"}


def signed_rsa(body: bytes) -> dict[str, str]:
    sig = RSA_KEY.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return {"x-wh-signature": base64.b64encode(sig).decode(), "content-type": "application/json"}


def event(name: str, start: str | None = None, end: str | None = None, status: str | None = None) -> bytes:
    body = sample(f"{name}.json")
    if start:
        body["appointment"]["startTime"] = start
        body["appointment"]["endTime"] = end or start
    if status:
        body["appointment"]["appointmentStatus"] = status
    return msgspec.json.encode(body)


def book_via_workflow(h: Harness) -> tuple[str, datetime]:
    d = datetime.now(ZoneInfo("America/Chicago")).date() + timedelta(days=5)
    body = workflow_body(GHL_APPOINTMENT, f"{d}T10:00:00", None)
    body["location"]["id"] = GHL_LOCATION
    with h.client() as c:
        r = c.post("/ghl/v1/appointments/book", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"], datetime.fromisoformat(r.json()["start"])


def emr_start(h: Harness, appointment_id: str) -> datetime:
    return datetime.fromisoformat(emr_appointment(h, appointment_id)["starts_at"].replace("Z", "+00:00"))


@KEYS
def test_update_reschedules_and_delete_cancels_the_linked_appointment(harness: Harness) -> None:
    link(harness, GHL_LOCATION)
    emr_id, start = book_via_workflow(harness)
    new_start = start + timedelta(days=1, hours=1)
    body = event("AppointmentUpdate", new_start.astimezone(ZoneInfo("Asia/Kolkata")).isoformat())
    with harness.anonymous() as c:
        created = c.post(URL, content=event("AppointmentCreate"), headers=signed_ed25519(event("AppointmentCreate")))
        assert created.status_code == 200
        assert created.json()["ignored"] is True

        r = c.post(URL, content=body, headers=signed_ed25519(body))
        assert r.status_code == 200, r.text
        assert r.json()["id"] == emr_id
        assert emr_start(harness, emr_id) == new_start
        # GHL retries the delivery: same outcome, replayed
        again = c.post(URL, content=body, headers=signed_ed25519(body))
        assert again.status_code == 200
        assert again.headers.get("idempotent-replayed") == "true"

        deleted = event("AppointmentDelete")
        r = c.post(URL, content=deleted, headers=signed_rsa(deleted))  # the legacy header still works
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
    assert emr_appointment(harness, emr_id)["cancelled_at"] is not None


@KEYS
def test_a_bad_or_missing_signature_is_401_and_changes_nothing(harness: Harness) -> None:
    link(harness, GHL_LOCATION)
    emr_id, start = book_via_workflow(harness)
    body = event("AppointmentUpdate", (start + timedelta(hours=3)).isoformat())
    tampered = body.replace(b"Some dummy note", b"Some dummy nite")
    with harness.anonymous() as c:
        for headers in (
            signed_ed25519(tampered),  # signature of other bytes
            {"X-GHL-Signature": "bm90IGEgc2lnbmF0dXJl"},
            {"x-wh-signature": base64.b64encode(b"x" * 256).decode()},
            {},
        ):
            r = c.post(URL, content=body, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "unauthorized"
        cancel = event("AppointmentDelete")
        assert c.post(URL, content=cancel, headers=signed_rsa(tampered)).status_code == 401
    assert emr_start(harness, emr_id) == start
    assert emr_appointment(harness, emr_id)["cancelled_at"] is None


@KEYS
def test_events_for_an_unlinked_location_or_appointment_are_acknowledged_and_ignored(harness: Harness) -> None:
    body = event("AppointmentDelete")
    with harness.anonymous() as c:
        r = c.post(URL, content=body, headers=signed_ed25519(body))  # no location linked yet
        assert r.status_code == 200
        assert r.json()["ignored"] is True
        link(harness, GHL_LOCATION)
        r = c.post(URL, content=body, headers=signed_ed25519(body))  # linked location, unknown appointment
        assert r.status_code == 200
        assert "not linked" in r.json()["reason"]
        contact = msgspec.json.encode(sample("AppointmentCreate.json") | {"type": "ContactCreate"})
        assert c.post(URL, content=contact, headers=signed_ed25519(contact)).json()["ignored"] is True
    assert harness.emulator.stats().appointments == 0
