"""Several `emr-gateway serve` processes (and optionally a `worker`) on one PostgreSQL, in front of one Cliniko
emulator served over loopback by this process, so a test can send to each replica and read the EMR's state.

Real subprocesses, not app objects in threads: whatever state a replica keeps in memory (caches, limiters, locks)
stays private to it, as in a deployment, and only what goes through the database is shared.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import msgspec
import pytest

from adapters.cliniko.emulator import AppointmentRec, ClinikoEmulator
from adapters.emulation import EmulatorSeed, ServerThread, default_seed
from gateway.crypto import Keyring, generate_key
from gateway.storage.store import Store
from tests.gateway.conftest import run_sync
from tests.limits import UNPACED

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0  # a cold start of two replicas on a loaded 2-core machine
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 40
T = TypeVar("T")

_STARTED = pytest.StashKey[list["Replicas"]]()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Tests that are not about pacing run with the EMR budgets out of reach (the real Cliniko one, 3/s after a burst of
# 20, would stretch a test to many seconds); a test about pacing passes its own, or "" for the adapters' defaults.
DEFAULT_ENV: dict[str, str] = {"EGW_EMR_RATE_LIMITS": msgspec.json.encode(UNPACED).decode()}


def replica_env(database_url: str, master_key: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus every EGW_* setting (a developer's own must not leak in), plus the shared
    database and master key, DEFAULT_ENV, and the caller's overrides."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("EGW_")}
    env["EGW_DATABASE_URL"] = database_url
    env["EGW_MASTER_KEY"] = master_key
    env.update(DEFAULT_ENV)
    env.update(overrides or {})
    return env


class GatewayProcess:
    """One `python -m gateway.cli …` subprocess with its stdout and stderr in a log file that outlives it."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        with log_path.open("ab") as log:  # the child keeps its own descriptor; ours is not needed past the fork
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *self.args],
                env=dict(env),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (uvicorn and the worker shut down gracefully on it), then SIGKILL if it hangs."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


class ServeProcess(GatewayProcess):
    """`emr-gateway serve` on its own loopback port."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path, *, worker: bool) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port), *([] if worker else ["--no-worker"])]
        super().__init__(name, args, env, log_path)

    def wait_ready(self, deadline: float) -> bool:
        """True once /readyz answers 200; False if the process exited first (e.g. its port was taken)."""
        with httpx.Client(timeout=5) as probe:
            while time.monotonic() < deadline:
                if not self.running:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if probe.get(f"{self.url}/readyz").status_code == 200:
                        return True
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready within {READY_TIMEOUT:.0f}s:\n{self.tail()}")


class Replicas:
    """What a scale-out test drives: each replica's base URL, one API key, and the emulator behind them all."""

    def __init__(
        self,
        *,
        serves: list[ServeProcess],
        worker: GatewayProcess | None,
        api_key: str,
        location_id: str,
        emulator: ClinikoEmulator,
        emulator_url: str,
        database_url: str,
        keyring: Keyring,
        master_key: str = "",
    ) -> None:
        self.master_key = master_key  # for a replica started later (after a crash) on the same database
        self.serves = serves
        self.worker = worker
        self.api_key = api_key
        self.location_id = location_id
        self.emulator = emulator
        self.emulator_url = emulator_url
        self.database_url = database_url
        self.keyring = keyring

    @property
    def urls(self) -> list[str]:
        return [serve.url for serve in self.serves]

    @property
    def processes(self) -> list[GatewayProcess]:
        return [*self.serves, *([self.worker] if self.worker else [])]

    def client(self, replica: int, **headers: str) -> httpx.Client:
        """A client of one replica, authenticated with the location's API key."""
        return httpx.Client(base_url=self.urls[replica], headers={"x-api-key": self.api_key, **headers}, timeout=60)

    def appointments(self, *, cancelled: bool = False) -> list[AppointmentRec]:
        """The appointments the EMR holds, as the clinic would see them in Cliniko: active ones, or with
        `cancelled=True` also cancelled and archived ones (a duplicate booked then cancelled is still two writes)."""
        # list() of a dict view runs in C under the GIL: a consistent snapshot even while the emulator serves.
        return [a for a in list(self.emulator.appointments.values()) if cancelled or a.active()]

    def appointments_at(self, instant: datetime.datetime) -> list[AppointmentRec]:
        """Every appointment ever booked at `instant`, cancelled ones included."""
        return [a for a in self.appointments(cancelled=True) if a.starts_at == instant]

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.tail()}" for p in self.processes)

    def assert_running(self) -> None:
        """A replica that died mid-test would turn every later check into noise: say so, with its log."""
        dead = [p for p in self.processes if not p.running]
        assert not dead, f"{[p.name for p in dead]} exited:\n{self.logs()}"


async def _provision(
    database_url: str, keyring: Keyring, emulator: ClinikoEmulator, emulator_url: str
) -> tuple[str, str]:
    """One location on the emulator's first business and one API key for it: (location id, key)."""
    store = await Store.open(database_url, keyring)
    try:
        settings, credentials = emulator.location_config(emulator_url)
        location = await store.create_location(
            emr=emulator.slug,
            name="Scale-out Clinic",
            settings_json=settings,
            credentials_json=credentials,
            time_zone=emulator.seed.time_zone,
        )
        issued = await store.issue_key(location.id)
        return location.id, issued.secret
    finally:
        await store.close()


def _start_serves(count: int, env: Mapping[str, str], workdir: Path, *, worker: bool) -> list[ServeProcess]:
    """Start `count` replicas at once, then wait for each; a replica that lost its port to a race is restarted."""
    serves: list[ServeProcess] = []
    try:
        serves = [ServeProcess(f"serve-{i}", env, workdir / f"serve-{i}.log", worker=worker) for i in range(count)]
        deadline = time.monotonic() + READY_TIMEOUT
        for i in range(count):
            for _attempt in range(3):
                if serves[i].wait_ready(deadline):
                    break
                serves[i].stop()
                serves[i] = ServeProcess(f"serve-{i}", env, workdir / f"serve-{i}.log", worker=worker)
            else:
                raise RuntimeError(f"serve-{i} kept exiting at start-up:\n{serves[i].tail()}")
        return serves
    except BaseException:
        for serve in serves:
            serve.stop()
        raise


@contextlib.contextmanager
def running_replicas(
    database_url: str,
    master_key: str,
    workdir: Path,
    *,
    count: int = 2,
    emulator_options: Mapping[str, Any] | None = None,
    seed: EmulatorSeed | None = None,
    env: Mapping[str, str] | None = None,
    serve_worker: bool = True,
    worker: bool = False,
) -> Iterator[Replicas]:
    """`count` serve replicas (each with its in-process worker unless `serve_worker=False`, i.e. `--no-worker`) and,
    with `worker=True`, one separate `emr-gateway worker`, all on `database_url`, in front of a Cliniko emulator
    built with `emulator_options` (e.g. `rate_limit_per_minute`). `env` overrides the replicas' EGW_* settings."""
    workdir.mkdir(parents=True, exist_ok=True)
    keyring = Keyring.parse(master_key)
    emulator = ClinikoEmulator(seed or default_seed(), **dict(emulator_options or {}))
    emulator_thread = ServerThread(emulator.app())
    emulator_url = emulator_thread.start()
    try:
        location_id, api_key = run_sync(_provision(database_url, keyring, emulator, emulator_url))
        process_env = replica_env(database_url, master_key, env)
        serves = _start_serves(count, process_env, workdir, worker=serve_worker)
        separate: GatewayProcess | None = None
        try:
            if worker:
                separate = GatewayProcess("worker", ["worker"], process_env, workdir / "worker.log")
            replicas = Replicas(
                serves=serves,
                worker=separate,
                api_key=api_key,
                location_id=location_id,
                emulator=emulator,
                emulator_url=emulator_url,
                database_url=database_url,
                keyring=keyring,
                master_key=master_key,
            )
            replicas.assert_running()
            yield replicas
        finally:
            for process in [*serves, *([separate] if separate else [])]:
                process.stop()
    finally:
        emulator_thread.stop()


class StartReplicas(Protocol):
    def __call__(
        self,
        *,
        count: int = 2,
        emulator_options: Mapping[str, Any] | None = None,
        seed: EmulatorSeed | None = None,
        env: Mapping[str, str] | None = None,
        serve_worker: bool = True,
        worker: bool = False,
    ) -> Replicas: ...


@pytest.fixture
def start_replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartReplicas]:
    """Starts replicas on the session's PostgreSQL database (emptied first); everything stops at teardown.

    Needs EGW_TEST_POSTGRES_DSN: without it the test skips with the standard reason (fails under
    EGW_TEST_REQUIRE_POSTGRES=1). Mark tests using it `@pytest.mark.postgres`.
    """
    database = request.getfixturevalue("_postgres_database")
    database.truncate()
    url: str = database.url
    master_key = generate_key("k1")
    started = request.node.stash.setdefault(_STARTED, [])
    with contextlib.ExitStack() as stack:

        def start(
            *,
            count: int = 2,
            emulator_options: Mapping[str, Any] | None = None,
            seed: EmulatorSeed | None = None,
            env: Mapping[str, str] | None = None,
            serve_worker: bool = True,
            worker: bool = False,
        ) -> Replicas:
            replicas = stack.enter_context(
                running_replicas(
                    url,
                    master_key,
                    tmp_path / f"replicas-{len(started)}",
                    count=count,
                    emulator_options=emulator_options,
                    seed=seed,
                    env=env,
                    serve_worker=serve_worker,
                    worker=worker,
                )
            )
            started.append(replicas)
            return replicas

        yield start


@pytest.fixture
def replicas(start_replicas: StartReplicas) -> Replicas:
    """Two serve replicas with the defaults: in-process workers, EMR budgets out of reach, the emulator's documented
    200 requests/min."""
    return start_replicas()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test shows the replicas' logs next to its traceback."""
    report = yield
    if report.failed:
        started: list[Replicas] = item.stash.get(_STARTED, [])
        for index, replicas in enumerate(started):
            report.sections.append((f"replica logs ({report.when}, set {index})", replicas.logs()))
    return report


def fire_together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call on its own thread, released at the same instant by a barrier; results in call order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))
