"""The committed OpenAPI document is the app's, and the app keeps every promise it makes there: schemathesis with every
check (positive and negative data, the document's links followed statefully) finds nothing on either backend."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import ServerThread, default_seed
from adapters.emulators import EMULATORS
from gateway.commands.openapi import document
from gateway.crypto import Keyring
from gateway.ghl.store import issue_token
from gateway.storage.store import Store
from gateway.webhooks.outbox import publish_now
from tests.gateway.conftest import Harness, Site, _provision, run_sync, running_harness, two_business_seed
from tests.webhooks.conftest import sample_event

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "openapi" / "openapi.json"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

# Test cases per operation and phase; with these the run takes well under a minute per backend.
MAX_EXAMPLES = int(os.environ.get("EGW_FUZZ_MAX_EXAMPLES", "40"))
STATEFUL_STEPS = int(os.environ.get("EGW_FUZZ_STATEFUL_STEPS", "12"))
GHL_CONTACT = {"email": "fuzz.ghl@example.com", "first_name": "Fuzz", "last_name": "Ghl"}
# The one warning left, and why it cannot be fixed from here: the GHL marketplace route documents no request body
# (gateway/routes/ghl.py reads the raw body to check GHL's signature), so every schema-valid request is an empty body,
# which no signature makes acceptable (400). Declaring its body (MarketplaceEvent) there would let this test sign it.
UNFIXABLE_HERE: dict[str, list[str]] = {}
GHL_KEY = ed25519.Ed25519PrivateKey.generate()
GHL_PUBLIC = base64.b64encode(
    GHL_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
WEBHOOK_TARGET = "http://127.0.0.1:9/egw-fuzz"  # loopback, allowed below; nothing listens and no worker sends


def test_committed_document_matches_the_app() -> None:
    assert COMMITTED.exists(), "run `make openapi` and commit openapi/openapi.json"
    assert json.loads(COMMITTED.read_text()) == json.loads(document()), (
        "openapi/openapi.json is stale: run `make openapi` and commit it"
    )


def _seed(harness: FuzzHarness) -> dict[str, Any]:
    """Real data for schema-valid requests to reach: the catalog, open slots, three appointments (to read, move and
    cancel), a patient, and two webhooks (one to delete) with a delivery in the log."""
    with harness.client() as c:
        practitioner = c.get("/v1/practitioners").json()["items"][0]
        service = c.get("/v1/services").json()["items"][0]
        start = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
        until = (datetime.now(UTC) + timedelta(days=40)).strftime("%Y-%m-%d")
        query = {"practitioner_id": practitioner["id"], "service_id": service["id"], "from": start, "to": until}
        slots = []  # open slots that do not overlap one another
        for slot in c.get("/v1/availability", params=query).json()["items"]:
            if not slots or slot["start"] >= slots[-1]["end"]:
                slots.append(slot)
        assert len(slots) >= 10, slots
        booked = []
        for slot in slots[:3]:
            body = {
                "practitioner": {"id": practitioner["id"]},
                "service": {"id": service["id"]},
                "patient": {"email": "fuzz.seed@example.com", "first_name": "Fuzz", "last_name": "Seed"},
                "start": slot["start"],
            }
            answer = c.post("/v1/appointments", json=body)
            assert answer.status_code == 201, answer.text
            booked.append(answer.json())
        ghl = {"token": run_sync(_ghl_token(harness)), "contact": GHL_CONTACT}
        for action, slot in zip(("reschedule", "cancel"), slots[3:5], strict=True):
            ghl[action] = f"fuzz-seed-{action}"
            calendar = {"appointmentId": ghl[action], "startTime": slot["start"]}
            custom = {"practitioner_id": practitioner["id"], "service_id": service["id"]}
            body = {**GHL_CONTACT, "calendar": calendar, "customData": custom}
            answer = c.post("/ghl/v1/appointments/book", json=body)
            assert answer.status_code == 201, answer.text
        hooks = []
        for _ in range(2):
            answer = c.post("/v1/webhooks", json={"url": WEBHOOK_TARGET})
            assert answer.status_code == 201, answer.text
            hooks.append(answer.json()["id"])

    async def delivery() -> None:
        store = await Store.open(harness.database_url, harness.keyring)
        try:
            await publish_now(store, sample_event(harness.sites[0].location_id))
        finally:
            await store.close()

    run_sync(delivery())
    with harness.client() as c:
        deliveries = c.get(f"/v1/webhooks/{hooks[0]}/deliveries").json()["items"]
    assert deliveries, "the seeded event queued no delivery"
    return {
        "practitioner": {k: practitioner[k] for k in ("id", "email", "name")},
        "service": {k: service[k] for k in ("id", "name", "code") if service.get(k)},
        "starts": [slot["start"] for slot in slots[5:]],
        "range": {"from": start, "to": (datetime.now(UTC) + timedelta(days=8)).strftime("%Y-%m-%d")},
        "appointments": {"get": booked[0]["id"], "reschedule": booked[1]["id"], "cancel": booked[2]["id"]},
        "patient_id": booked[0]["patient_id"],
        "webhook_url": WEBHOOK_TARGET,
        "webhooks": {"keep": hooks[0], "delete": hooks[1]},
        "delivery_id": deliveries[0]["id"],
        "ghl": ghl,
        "practice_better": _practice_better(harness),
        "halaxy": _halaxy(harness),
        # GHL signs its marketplace webhooks: the hooks sign schema-valid bodies with this key, the gateway knows
        # its public half, so the route is exercised past its signature check.
        "ghl_marketplace": {"private_key": GHL_KEY.private_bytes_raw().hex()},
    }


def _practice_better(harness: FuzzHarness) -> dict[str, Any]:
    pb = harness.practice_better
    with httpx.Client(base_url=harness.base_url, headers={"x-api-key": pb.site.api_key}, timeout=30) as c:
        patients = c.get("/v1/patients", params={"email": "jane.citizen@example.com"}).json()["items"]
    assert patients, "the Practice Better emulator's seeded patient is missing"
    return {
        "location_id": pb.site.location_id,
        "verification_token": pb.verification_token,
        "signing_secret": pb.signing_secret,
        "client_id": patients[0]["id"],
    }


def _halaxy(harness: FuzzHarness) -> dict[str, Any]:
    hx = harness.halaxy
    with httpx.Client(base_url=harness.base_url, headers={"x-api-key": hx.site.api_key}, timeout=30) as c:
        patients = c.get("/v1/patients", params={"email": "jane.citizen@example.com"}).json()["items"]
    assert patients, "the Halaxy emulator's seeded patient is missing"
    return {"location_id": hx.site.location_id, "secret": hx.secret, "patient_id": patients[0]["id"]}


async def _ghl_token(harness: Harness) -> str:
    store = await Store.open(harness.database_url, harness.keyring)
    try:
        return (await issue_token(store, harness.sites[0].location_id)).secret
    finally:
        await store.close()


def _config(harness: Harness, report: Path) -> str:
    """schemathesis.toml: every check, both kinds of data, every phase (the stateful one follows the links)."""
    statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
    return f"""
base-url = "{harness.base_url}"
headers = {{ "x-api-key" = "{harness.sites[0].api_key}" }}
seed = 20261130
workers = 1
request-timeout = 10
generation.max-examples = {MAX_EXAMPLES}
generation.mode = "all"
generation.database = "none"
checks.positive_data_acceptance.expected-statuses = {json.dumps(statuses)}
phases.stateful.max-steps = {STATEFUL_STEPS}
reports.json.enabled = true
reports.json.path = "{report}"

# Each of these re-reads a client and their sessions from Practice Better's (Halaxy's) emulator: fewer, for the time
# budget.
[[operations]]
include-name = "POST /practicebetter/v1/webhooks/{{location_id}}"
generation.max-examples = {max(MAX_EXAMPLES // 4, 5)}

[[operations]]
include-name = "POST /halaxy/v1/webhooks/{{location_id}}"
generation.max-examples = {max(MAX_EXAMPLES // 4, 5)}
"""


class PracticeBetter:
    """The Practice Better location: its key, and the webhook secrets its subscription would hold."""

    def __init__(self, site: Site, credentials: dict[str, Any]) -> None:
        self.site = site
        self.verification_token = str(credentials["webhook_verification_token"])
        self.signing_secret = str(credentials["webhook_signing_secret"])


class Halaxy:
    """The Halaxy location: its key, and the Authentication Header value its webhooks in Halaxy would send."""

    def __init__(self, site: Site, credentials: dict[str, Any]) -> None:
        self.site = site
        self.secret = str(credentials["webhook_secret"])


class FuzzHarness(Harness):
    def __init__(self, base: Harness, practice_better: PracticeBetter, halaxy: Halaxy) -> None:
        super().__init__(base.base_url, base.sites, base.emulator, base.emulator_url, base.database_url, base.keyring)
        self.practice_better = practice_better
        self.halaxy = halaxy


@contextlib.contextmanager
def running_fuzz_harness(database_url: str, keyring: Keyring) -> Iterator[FuzzHarness]:
    """Cliniko without its 200-a-minute limit (a fuzz run sends thousands), loopback webhooks allowed, and a Practice
    Better and a Halaxy location beside it for the routes their own webhooks call."""
    emulator = ClinikoEmulator(two_business_seed(), rate_limit_per_minute=1_000_000)
    overrides = {"webhook_allowed_subnets": ("127.0.0.0/8",), "ghl_ed25519_public_key": GHL_PUBLIC}
    pb = EMULATORS["practicebetter"](default_seed())
    pb_thread = ServerThread(pb.app())
    pb_url = pb_thread.start()
    hx = EMULATORS["halaxy"](default_seed())
    hx_thread = ServerThread(hx.app())
    hx_url = hx_thread.start()
    zone = default_seed().time_zone
    try:
        with running_harness("cliniko", database_url, keyring, overrides, emulator=emulator) as harness:
            site = run_sync(_provision(database_url, keyring, pb, pb_url, 1, zone))[0]
            credentials = msgspec.json.decode(pb.location_config(pb_url)[1])
            hx_site = run_sync(_provision(database_url, keyring, hx, hx_url, 1, zone))[0]
            hx_credentials = msgspec.json.decode(hx.location_config(hx_url)[1])
            yield FuzzHarness(harness, PracticeBetter(site, credentials), Halaxy(hx_site, hx_credentials))
    finally:
        hx_thread.stop()
        pb_thread.stop()


@pytest.fixture
def fuzz_harness(database_url: str, keyring: Keyring) -> Iterator[FuzzHarness]:
    with running_fuzz_harness(database_url, keyring) as harness:
        yield harness


def fuzz(harness: FuzzHarness, workdir: Path, *extra: str) -> tuple[dict[str, Any], str, float]:
    """Seeds the data, runs `schemathesis run` on the committed document; the JSON report, the output, seconds."""
    seed = _seed(harness)
    report = workdir / "report.json"
    config = workdir / "schemathesis.toml"
    config.write_text(_config(harness, report))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.gateway.fuzz_hooks",
        "EGW_FUZZ_SEED": json.dumps(seed),
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    command = [str(SCHEMATHESIS), "--config-file", str(config), "run", str(COMMITTED), "--checks", "all", "--no-color"]
    run = subprocess.run(
        [*command, *extra],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert report.exists(), output
    return json.loads(report.read_text()), output, elapsed


def test_schemathesis_with_every_check_finds_nothing(fuzz_harness: FuzzHarness, tmp_path: Path) -> None:
    """The document against the live app (emulated Cliniko behind it) as any client generator reads it."""
    result, output, elapsed = fuzz(fuzz_harness, tmp_path)
    output = output[-30000:]
    warnings = {kind: labels for kind, labels in result["warnings"].items() if labels}
    print(f"schemathesis: {result['test_cases']['generated']} cases in {elapsed:.0f} s")
    assert result["failures"] == [], output
    assert result["errors"] == [], output
    assert {kind: labels for kind, labels in warnings.items() if labels != UNFIXABLE_HERE.get(kind)} == {}, output
    assert result["exit_code"] == 0, output
    assert result["operations"]["tested"] == result["operations"]["selected"], output
