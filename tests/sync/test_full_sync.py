"""`emr-gateway sync --full`: a full listing of a seeded Cliniko clinic at the page minimum, over real HTTP.

The Cliniko emulator runs on loopback with 250 patients, one appointment each at the location's business (and a
few at the account's other business); the gateway's own code lists them (`gateway.sync.full.sync_location`, and the
CLI in a subprocess). Requests are counted by the emulator, which is what Cliniko's budget would count.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import pty
import struct
import subprocess
import sys
import termios
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from time import time as wall_clock
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from adapters.base import FULL_LISTING
from adapters.cliniko import wire
from adapters.cliniko.adapter import ClinikoAdapter
from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import EmulatorSeed, SeedBusiness, SeedPatient, default_seed
from adapters.transport import EMRTransport
from gateway.commands.sync import Eta, pace_seconds
from gateway.crypto import Keyring, generate_key
from gateway.storage import sync as db
from gateway.storage.store import Store
from gateway.sync.full import CountingTransport, SyncResult, sync_location
from gateway.sync.scheduler import poll_location
from schemas.webhooks import AppointmentEventData, EventType, PatientSnapshot
from tests.gateway.conftest import Harness, running_harness
from tests.sync.support import ClinicScreens, Sync

PATIENTS = 250
ELSEWHERE = 30  # appointments at the account's other business: the location's feed and estimate leave them out
PAGE = 100
SEED_AGE = timedelta(days=1)
CATALOG_PATHS = ("/practitioners", "/users", "/appointment_types", "/businesses/")  # names for snapshots


def seed_of(patients: int) -> EmulatorSeed:
    """Two businesses of one account, the default practitioners and services, `patients` patients."""
    seed = default_seed()
    seed.businesses = [SeedBusiness(name="North Clinic"), SeedBusiness(name="South Clinic")]
    seed.patients = [
        SeedPatient(
            first_name=f"Given{i:05d}",
            last_name=f"Family{i:05d}",
            email=f"patient{i:05d}@example.com",
            phone=f"04{i:08d}",
            date_of_birth=date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
        )
        for i in range(patients)
    ]
    return seed


class Clock:
    """The emulator's clock, a day behind while it is seeded and a second on for each appointment: a clinic's
    records are stamped over time, and a cursor's `>=` re-reads only what was stamped in its own second."""

    def __init__(self) -> None:
        self.behind = SEED_AGE.total_seconds()

    def __call__(self) -> float:
        return wall_clock() - self.behind


def seeded_emulator(patients: int, elsewhere: int = 0) -> tuple[ClinikoEmulator, list[str]]:
    """One appointment per patient at the first business (from a week ago to months ahead, 30-minute slots), and
    `elsewhere` at the second, all stamped a day ago; returns the emulator and the first business's appointments."""
    clock = Clock()
    em = ClinikoEmulator(seed_of(patients), rate_limit_per_minute=1_000_000, clock=clock)
    here, there = em.business_ids()
    practitioners = list(em.practitioners)
    service = next(iter(em.appointment_types))
    zone = ZoneInfo(em.seed.time_zone)
    today = datetime.now(zone).date()
    ids: list[str] = []
    for i, patient_id in enumerate(em.patients):
        for business in [here] + ([there] if i < elsewhere else []):
            day = today + timedelta(days=i % 120 - 7)
            start = datetime.combine(day, time(9), zone) + timedelta(minutes=30 * (i // 120 % 16))
            body = wire.IndividualAppointmentCreate(
                patient_id=patient_id,
                practitioner_id=practitioners[i % len(practitioners)],
                appointment_type_id=service,
                business_id=business,
                starts_at=start.astimezone(UTC),
            )
            _, new_id = em.create_appointment("http://seed", msgspec.json.encode(body))
            clock.behind -= 1.0
            if business == here:
                ids.append(new_id)
    clock.behind = 0.0
    return em, ids


class Seeded(msgspec.Struct, frozen=True):
    emulator: ClinikoEmulator
    appointment_ids: list[str]
    master_key: str


@pytest.fixture
def seeded(database_url: str) -> Iterator[tuple[Harness, Seeded]]:
    master_key = generate_key()
    emulator, ids = seeded_emulator(PATIENTS, ELSEWHERE)
    with running_harness("cliniko", database_url, Keyring.parse(master_key), emulator=emulator) as h:
        yield h, Seeded(emulator=emulator, appointment_ids=ids, master_key=master_key)


def pages(records: int) -> int:
    return max(1, math.ceil(records / PAGE))


def requests_since(em: ClinikoEmulator, before: int) -> list[str]:
    """The paths and queries of the EMR requests after the first `before`."""
    return [f"{e.path}?{e.query}" for e in em.exchanges[before:]]


class Observed:
    """What `sync_location` tells a progress display."""

    def __init__(self) -> None:
        self.estimates: list[int | None] = []
        self.listings: list[tuple[int, int]] = []

    def estimated(self, requests: int | None) -> None:
        self.estimates.append(requests)

    def listed(self, patients: int, appointments: int) -> None:
        self.listings.append((patients, appointments))


def full_sync(sync: Sync, site: int = 0, *, full: bool = True) -> tuple[SyncResult, int | None]:
    """`sync_location` as the CLI runs it: the EMR transport behind a counting one; returns the estimate too."""
    observed = Observed()

    async def go(store: Store, _http: httpx.AsyncClient) -> SyncResult:
        location = await store.get_location(sync.h.sites[site].location_id)
        assert location is not None
        counter = CountingTransport(EMRTransport())
        async with httpx.AsyncClient(transport=counter, timeout=10) as http:
            return await sync_location(
                store, http, sync.config, location, full=full, counter=counter, observer=observed
            )

    result = sync.run(go)
    [estimate] = observed.estimates
    assert observed.listings == [(result.patients, result.appointments)]
    return result, estimate


def state_of(sync: Sync, site: int = 0) -> db.SyncState:
    async def get(store: Store, _http: httpx.AsyncClient) -> db.SyncState:
        found = await db.get_state(store, sync.h.sites[site].location_id)
        assert found is not None
        return found

    return sync.run(get)


def test_a_full_sync_reads_each_page_once_announces_nothing_and_completes_the_facts(
    seeded: tuple[Harness, Seeded],
) -> None:
    h, s = seeded
    sync = Sync(h)
    before = len(s.emulator.exchanges)
    result, expected = full_sync(sync)
    sent = requests_since(s.emulator, before)

    listing = pages(PATIENTS) + pages(PATIENTS)  # the other business's appointments are not this location's
    assert expected == listing + 2
    feed = [r for r in sent if r.startswith(("/v1/patients?", "/v1/individual_appointments?"))]
    assert len(feed) == listing + 2  # the two per_page=1 probes, then every page exactly once
    assert sum("per_page=1&" in r or r.endswith("per_page=1") for r in feed) == 2
    catalog = [r for r in sent if r not in feed]
    assert all(any(path in r for path in CATALOG_PATHS) for r in catalog), catalog
    assert result.requests == len(sent)  # counted at the transport = counted by the EMR
    assert (result.patients, result.appointments, result.events, result.facts_complete) == (
        PATIENTS,
        PATIENTS,
        0,
        True,
    )
    assert sync.events() == []  # records merely seen for the first time are not news
    assert state_of(sync).facts_complete_at is not None


def test_after_a_full_sync_a_cancellation_costs_the_feed_and_one_patient_batch(
    seeded: tuple[Harness, Seeded],
) -> None:
    h, s = seeded
    sync, clinic = Sync(h), ClinicScreens(h)
    full_sync(sync)
    cancelled = s.appointment_ids[200]
    clinic.cancel(cancelled)
    here = h.sites[0].location_id
    before = len(s.emulator.exchanges)

    async def poll(store: Store, http: httpx.AsyncClient) -> int:
        [state] = [x for x in await db.claim_due(store, "w", datetime.now(UTC), 30, 10) if x.location_id == here]
        return await poll_location(store, http, sync.config, state, "w")

    assert sync.run(poll) == 2
    sent = requests_since(s.emulator, before)
    feed = "updated_at%3A%3E%3D"  # q[]=updated_at:>=
    by_kind = Counter("feed" if feed in r else "patients" if r.startswith("/v1/patients?") else "catalog" for r in sent)
    assert by_kind["feed"] == 2, sent  # patients and appointments changed since the cursor
    assert by_kind["patients"] == 1  # the cancelled appointment's patient, in one batch read
    # Names for the event: practitioners, their users, appointment types, the business (once, though the catalog
    # asks for services and locations at the same time: both need it).
    assert by_kind["catalog"] == 4, "\n".join(sent)
    assert not [r for r in sent if "patient_id" in r]  # no patient's appointments listed: the facts are complete
    cancel, updated = sync.new_events()
    assert (cancel.type, updated.type) == (EventType.APPOINTMENT_CANCELLED, EventType.PATIENT_UPDATED)
    assert isinstance(cancel.data, AppointmentEventData)
    assert cancel.data.appointment.id == cancelled
    assert cancel.data.patient is not None
    assert cancel.data.patient.id == s.emulator.appointments[cancelled].patient_id
    assert isinstance(updated.data, PatientSnapshot)
    assert (updated.data.total_appointments, updated.data.cancellation_count) == (1, 1)

    before = len(s.emulator.exchanges)
    assert sync.run(poll) == 0  # nothing new: the feed, nothing else
    assert len(requests_since(s.emulator, before)) == 2
    clinic.close()


def test_a_full_sync_gives_a_never_polled_location_its_cursor_and_leaves_a_polled_ones_alone(
    seeded: tuple[Harness, Seeded],
) -> None:
    h, _ = seeded
    sync = Sync(h)
    result, _ = full_sync(sync, site=0)
    cursor = state_of(sync, 0).cursor
    assert cursor is not None
    assert cursor > FULL_LISTING  # the latest record listed: the first poll continues from it
    assert result.facts_complete

    sync.tick()  # both locations: site 1's first poll starts its feed now
    polled = state_of(sync, 1).cursor
    assert polled is not None
    full_sync(sync, site=1)
    assert state_of(sync, 1).cursor == polled  # the worker's cursor is the worker's

    again, estimate = full_sync(sync, site=0, full=False)  # "Sync now": the feed from the cursor
    assert (again.full, again.facts_complete, again.patients, again.requests, estimate) == (False, False, 0, 2, None)


# ----------------------------------------------------------------------------------------------- the CLI


def _env(h: Harness, s: Seeded) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
    env.update({"EGW_DATABASE_URL": h.database_url, "EGW_MASTER_KEY": s.master_key})
    return env


def _cli(h: Harness, s: Seeded, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sync", *args],
        capture_output=True,
        text=True,
        env=_env(h, s),
        timeout=120,
        check=False,
    )


def _no_patient_data(output: str, em: ClinikoEmulator) -> None:
    for patient in em.patients.values():
        assert patient.last_name not in output
        assert patient.email is None or patient.email not in output


def test_the_cli_prints_json_progress_and_counts_never_patients(seeded: tuple[Harness, Seeded]) -> None:
    h, s = seeded
    here = h.sites[0].location_id
    done = _cli(h, s, here, "--full", "--json")  # Cliniko's real pacing: 20 at once, then 3 a second
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert Counter(line["event"] for line in lines[:-1]).keys() == {"progress", "listed"}
    progress, last = [line for line in lines if line["event"] == "progress"], lines[-1]
    assert [p["requests"] for p in progress] == list(range(1, len(progress) + 1))
    [listed] = [line for line in lines if line["event"] == "listed"]
    expected = 2 * pages(PATIENTS) + 2
    assert (listed["patients"], listed["appointments"], listed["requests"]) == (PATIENTS, PATIENTS, expected)
    assert [p["expected"] for p in progress[:2]] == [None, None]  # the two probes that tell the rest
    assert {p["expected"] for p in progress[2:]} == {expected}
    assert all(p["eta_seconds"] is not None for p in progress[2:])
    assert progress[2]["paced_per_second"] == 3.0
    assert last["event"] == "done"
    assert {k: last[k] for k in ("location_id", "full", "patients", "appointments", "events", "facts_complete")} == {
        "location_id": here,
        "full": True,
        "patients": PATIENTS,
        "appointments": PATIENTS,
        "events": 0,
        "facts_complete": True,
    }
    assert last["requests"] == len(progress)
    _no_patient_data(done.stdout + done.stderr, s.emulator)

    plain = _cli(h, s, here)  # not a terminal, no --json: a summary line, progress lines on stderr
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith(f"{here}: change feed: ")
    assert "EMR requests" in plain.stderr

    unknown = _cli(h, s, "loc_nosuchlocation", "--full", "--json")
    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert "no location 'loc_nosuchlocation'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_the_cli_draws_a_bar_with_an_eta_on_a_terminal(seeded: tuple[Harness, Seeded]) -> None:
    h, s = seeded
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # rows, columns
    command = [sys.executable, "-m", "gateway.cli", "sync", h.sites[0].location_id, "--full"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, text=True, env=_env(h, s)) as child:
        os.close(terminal)  # the child holds the only other end: reading ends when it exits
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            drawn += chunk
        os.close(controller)
        assert child.stdout is not None
        stdout = child.stdout.read()
    assert child.returncode == 0
    text = drawn.decode(errors="replace")
    assert "ETA" in text
    assert f"{2 * pages(PATIENTS) + 2}/" in text or "100%" in text
    assert "EMR requests" in text
    assert stdout.startswith(f"{h.sites[0].location_id}: full listing: {PATIENTS} patients")
    _no_patient_data(stdout + text, s.emulator)


def test_the_eta_is_the_listing_at_the_emrs_paced_rate() -> None:
    """Cliniko's budget (20 at once, then 3/s): 5,000 patients with an appointment each are 2 + 50 + 50 requests,
    82 of them paced, about 27 s; an EMR that cannot tell how many requests its listing takes gets no ETA."""
    limits = ClinikoAdapter.rate_limits
    assert pace_seconds(2 + 50 + 50, limits) == pytest.approx(82 / 3)
    eta = Eta(limits)
    assert eta.seconds() is None
    eta.expected = 102
    assert eta.seconds() == pytest.approx(82 / 3, abs=0.5)
    eta.sent = 102
    assert eta.seconds() == 0.0
