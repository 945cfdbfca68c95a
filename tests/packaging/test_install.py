"""The product as users install it: the wheel, built as the Dockerfile builds it, in a fresh virtualenv without extras.

Every step runs the installed console script, never this checkout: `--help`, every module's import, `migrate --json`
on a fresh SQLite file, the Dockerfile's CMD and HEALTHCHECK, compose.yaml's commands and health check with its
environment (secrets become temporary files; on PostgreSQL when EGW_TEST_POSTGRES_DSN is set), and `demo --json`
until one booking through a printed key succeeds. Installing the dependencies needs the package index (or pip's
cache); there is no offline fallback, because a skipped install test is how issue 13 shipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from adapters.emulation import default_seed
from gateway.crypto import generate_key
from gateway.storage.migrate import head_revision
from tests.conftest import PG_DSN_ENV, PG_REQUIRE_ENV

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "adapters", "gateway")
READY_TIMEOUT = 90.0
STEP_TIMEOUT = 600.0
# uvicorn shuts down gracefully on SIGTERM and then re-raises it, so a clean stop of `serve` reads as -SIGTERM.
CLEAN_EXIT = (0, -signal.SIGTERM)


# ----------------------------------------------------------------------------------------------- the Dockerfile


@dataclass
class Dockerfile:
    """What the smoke test needs from the Dockerfile, read from it so the two cannot drift apart."""

    build_copies: list[str] = field(default_factory=list)  # sources the build stage copies
    build_run: list[str] = field(default_factory=list)  # the wheel-building command
    install_run: str = ""  # the runtime stage's install command
    env: dict[str, str] = field(default_factory=dict)  # the runtime stage's ENV
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> Iterator[str]:
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        yield current + line
        current = ""


def parse_dockerfile(path: Path) -> Dockerfile:
    parsed = Dockerfile()
    stage = ""
    for line in _logical_lines(path.read_text()):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stage = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
        elif instruction == "COPY" and stage == "build":
            parsed.build_copies.extend(shlex.split(rest)[:-1])
        elif instruction == "RUN" and stage == "build" and "pip wheel" in rest:
            parsed.build_run = shlex.split(rest)
        elif instruction == "RUN" and stage == "runtime" and "pip install" in rest:
            parsed.install_run = rest
        elif instruction == "ENV" and stage == "runtime":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                parsed.env[name] = value
        elif instruction == "ENTRYPOINT":
            parsed.entrypoint = json.loads(rest)
        elif instruction == "CMD":
            parsed.cmd = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            exec_form = rest[rest.index("CMD ") + 4 :]
            parsed.healthcheck = json.loads(exec_form)
    return parsed


DOCKERFILE = parse_dockerfile(REPO / "Dockerfile")


# ----------------------------------------------------------------------------------------------- the install


@dataclass
class Installed:
    venv: Path
    wheel: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """No EGW_* setting, PYTHONPATH or virtualenv of the developer's leaks in; the install's bin/ comes first,
        so `emr-gateway` in a command means the installed script."""
        drop = ("EGW_", "PYTHON", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def argv(self, command: Sequence[str]) -> list[str]:
        head, *tail = command
        return [str(self.bin / head) if (self.bin / head).exists() else head, *tail]

    def run(
        self, command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            cwd=self.workdir,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    # The build stage's context: exactly what the Dockerfile copies, so a file it forgets is missing here too.
    src = root / "src"
    src.mkdir()
    for name in DOCKERFILE.build_copies:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, src / name)
    assert DOCKERFILE.build_run[:3] == ["python", "-m", "pip"], DOCKERFILE.build_run
    build = subprocess.run(
        [sys.executable, *DOCKERFILE.build_run[1:]], cwd=src, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    _check(build, "the Dockerfile's wheel build")
    wheel_dir = src / DOCKERFILE.build_run[DOCKERFILE.build_run.index("--wheel-dir") + 1]
    [wheel] = wheel_dir.glob("emr_gateway-*.whl")
    venv = root / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    _check(made, "python -m venv")
    # The runtime stage's install, pointed at this wheel: no extras, nothing from this checkout.
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
    )
    _check(install, "pip install <wheel> (no extras)")
    workdir = root / "work"
    workdir.mkdir()
    return Installed(venv=venv, wheel=wheel, workdir=workdir)


def test_the_dockerfile_installs_the_wheel_without_extras() -> None:
    assert DOCKERFILE.build_run[:4] == ["python", "-m", "pip", "wheel"]
    assert "--no-deps" in DOCKERFILE.build_run, "the image must install the wheel's declared dependencies itself"
    wheel_dir = DOCKERFILE.build_run[DOCKERFILE.build_run.index("--wheel-dir") + 1]
    match = re.fullmatch(
        r"python -m pip install (?:--no-cache-dir )?(\S+)\.whl( && rm -rf \S+)?", DOCKERFILE.install_run
    )
    assert match, f"the runtime stage must install the built wheel and nothing else: {DOCKERFILE.install_run!r}"
    assert "[" not in match.group(1), "the image installs the wheel without extras"
    assert match.group(1).rstrip("/*").split("/")[-1] == Path(wheel_dir).name
    assert DOCKERFILE.entrypoint == ["emr-gateway"]


def test_no_test_tools_in_the_install(installed: Installed) -> None:
    """The venv really is the wheel without extras (otherwise every later step proves less)."""
    done = installed.run(
        [
            "python",
            "-c",
            "import importlib.util as u; print([m for m in ('pytest','mypy','ruff','schemathesis','openapi_core') "
            "if u.find_spec(m)])",
        ]
    )
    _check(done, "find_spec")
    assert done.stdout.strip() == "[]"


def test_help(installed: Installed) -> None:
    done = installed.run(["emr-gateway", "--help"])
    _check(done, "emr-gateway --help")
    for command in ("serve", "worker", "demo", "migrate", "healthcheck"):
        assert command in done.stdout


def test_every_module_imports_with_only_the_runtime_dependencies(installed: Installed) -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        f"for top in {PACKAGES!r}:\n"
        "    pkg = importlib.import_module(top)\n"
        "    assert 'site-packages' in pkg.__file__, pkg.__file__\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        if '.migrations.' in info.name and not info.name.endswith('migrations.versions'):\n"
        "            continue  # alembic loads env.py and the revisions itself (env.py needs alembic's context)\n"
        "        importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    done = installed.run(["python", "-c", script])
    _check(done, "importing every module")
    assert done.stdout.strip() == "ok"


def test_migrate_json_on_a_fresh_sqlite_file(installed: Installed) -> None:
    db = installed.workdir / "fresh-migrate.db"
    done = installed.run(["emr-gateway", "migrate", "--json"], env={"EGW_DATABASE_URL": f"sqlite:///{db}"})
    _check(done, "emr-gateway migrate --json")
    result = json.loads(done.stdout)
    assert result["previous_revision"] is None
    assert result["revision"] == head_revision()
    again = installed.run(["emr-gateway", "migrate", "--json"], env={"EGW_DATABASE_URL": f"sqlite:///{db}"})
    _check(again, "emr-gateway migrate --json (twice)")
    assert json.loads(again.stdout)["previous_revision"] == head_revision()


# ----------------------------------------------------------------------------------------------- long-running steps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    """A long-running installed command with its output in a file (shown when a step fails)."""

    def __init__(self, installed: Installed, command: Sequence[str], env: Mapping[str, str], name: str) -> None:
        self.name = name
        self.log = installed.workdir / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                installed.argv(command), cwd=installed.workdir, env=installed.env(env), stdout=out, stderr=out
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_for(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited {self.process.returncode}:\n{self.output()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: {url} not 200 within {READY_TIMEOUT:.0f}s:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.output()}") from None


@contextlib.contextmanager
def running(installed: Installed, command: Sequence[str], env: Mapping[str, str], name: str) -> Iterator[Running]:
    proc = Running(installed, command, env, name)
    try:
        yield proc
    finally:
        proc.stop()


def _assert_serving(installed: Installed, env: Mapping[str, str], healthcheck: Sequence[str], name: str) -> None:
    base = f"http://127.0.0.1:{env['EGW_PORT']}"
    # The console's templates and stylesheet came with the wheel (package data).
    for path in ("/healthz", "/readyz", "/console/sign-in", "/console/static/console.css"):
        response = httpx.get(base + path, timeout=5)
        assert response.status_code == 200, f"{name} {path}: {response.status_code} {response.text}"
    done = installed.run(healthcheck, env=env)
    _check(done, f"{name}'s health check {shlex.join(healthcheck)}")


def test_the_dockerfile_cmd_serves_and_passes_its_healthcheck(installed: Installed) -> None:
    """ENTRYPOINT + CMD with the image's ENV, in a fresh WORKDIR (the image's /data), plus a master key."""
    data = installed.workdir / "image-data"
    data.mkdir()
    env = {**DOCKERFILE.env, "EGW_HOST": "127.0.0.1", "EGW_PORT": str(_free_port()), "EGW_MASTER_KEY": generate_key()}
    env["EGW_DATABASE_URL"] = f"sqlite:///{data / 'emr-gateway.db'}"  # the image's default, ./ in WORKDIR /data
    with running(installed, [*DOCKERFILE.entrypoint, *DOCKERFILE.cmd], env, "image-cmd") as serve:
        serve.wait_for(f"http://127.0.0.1:{env['EGW_PORT']}/readyz")
        _assert_serving(installed, env, DOCKERFILE.healthcheck, "the image's CMD")
    assert serve.process.returncode in CLEAN_EXIT, serve.output()


# compose.yaml ---------------------------------------------------------------------------------------------------


def _compose() -> dict[str, dict[str, object]]:
    with (REPO / "compose.yaml").open() as handle:
        services: dict[str, dict[str, object]] = yaml.safe_load(handle)["services"]
    return services


@pytest.fixture
def compose_database(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for the compose layout: PostgreSQL where the suite has one, else a SQLite file."""
    dsn = os.environ.get(PG_DSN_ENV, "").strip()
    if not dsn:
        if os.environ.get(PG_REQUIRE_ENV) == "1":
            pytest.fail(f"{PG_DSN_ENV} is not set but {PG_REQUIRE_ENV}=1")
        yield f"sqlite:///{tmp_path / 'compose.db'}"
        return
    name = f"egw_compose_{uuid.uuid4().hex[:10]}"
    admin = make_url(dsn).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(dsn).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _service_env(service: Mapping[str, object], secrets: Path) -> dict[str, str]:
    """The service's environment with /run/secrets/<name> pointing at the test's secret files."""
    raw = service.get("environment") or {}
    assert isinstance(raw, dict)
    env = {str(k): str(v) for k, v in raw.items()}
    for name, value in env.items():
        if value.startswith("/run/secrets/"):
            env[name] = str(secrets / value.removeprefix("/run/secrets/"))
    return env


def test_compose_layout_commands(installed: Installed, compose_database: str, tmp_path: Path) -> None:
    """migrate, then two API replicas and a worker, with compose.yaml's commands, environment and health check."""
    services = _compose()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "egw_master_key").write_text(generate_key() + "\n")
    (secrets / "egw_database_url").write_text(compose_database)
    gateway_services = {name: s for name, s in services.items() if s.get("image") == "emr-gateway:latest"}
    assert set(gateway_services) == {"migrate", "api", "worker"}

    migrate = gateway_services["migrate"]
    done = installed.run(["emr-gateway", *migrate["command"]], env=_service_env(migrate, secrets))  # type: ignore[misc]
    _check(done, "compose migrate")
    assert json.loads(done.stdout)["revision"] == head_revision()

    api, worker = gateway_services["api"], gateway_services["worker"]
    deploy = api.get("deploy")
    assert isinstance(deploy, dict)
    assert deploy["replicas"] >= 2
    healthcheck = api["healthcheck"]
    assert isinstance(healthcheck, dict)
    check = healthcheck["test"]
    assert isinstance(check, list)
    assert check[0] == "CMD"
    with contextlib.ExitStack() as stack:
        replicas = []
        for index in range(2):
            env = {**_service_env(api, secrets), "EGW_HOST": "127.0.0.1", "EGW_PORT": str(_free_port())}
            command = ["emr-gateway", *api["command"]]  # type: ignore[misc]
            replica = stack.enter_context(running(installed, command, env, f"api-{index}"))
            replicas.append((replica, env))
        worker_proc = stack.enter_context(
            running(installed, ["emr-gateway", *worker["command"]], _service_env(worker, secrets), "worker")  # type: ignore[misc]
        )
        for replica, env in replicas:
            replica.wait_for(f"http://127.0.0.1:{env['EGW_PORT']}/readyz")
            _assert_serving(installed, env, check[1:], replica.name)
        time.sleep(2)  # the worker has polled and delivered at least once by now
        assert worker_proc.process.poll() is None, f"the worker exited:\n{worker_proc.output()}"
    for replica, _env in replicas:
        assert replica.process.returncode in CLEAN_EXIT, replica.output()
    assert worker_proc.process.returncode in CLEAN_EXIT, worker_proc.output()


# demo --------------------------------------------------------------------------------------------------------------


def test_demo_books_through_a_printed_key(installed: Installed, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        installed.argv(["emr-gateway", "demo", "--json", "--port", "0", "--dir", str(tmp_path / "demo")]),
        cwd=installed.workdir,
        env=installed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first, f"demo printed nothing: {proc.stderr.read() if proc.stderr else ''}"
        info = json.loads(first)
        location = next(loc for loc in info["locations"] if loc["emr"] == "cliniko")
        seed = default_seed()
        day = datetime.now(ZoneInfo(seed.time_zone)).date() + timedelta(days=1)
        while day.weekday() not in seed.open_weekdays:
            day += timedelta(days=1)
        practitioner, service, patient = seed.practitioners[0], seed.services[0], seed.patients[0]
        body = {
            "practitioner": {"email": practitioner.email},
            "service": {"name": service.name},
            "patient": {"email": patient.email, "first_name": patient.first_name, "last_name": patient.last_name},
            "start": f"{day.isoformat()}T10:00:00",
            "time_zone": seed.time_zone,
        }
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        with httpx.Client(base_url=info["base_url"], headers={"x-api-key": location["api_key"]}, timeout=30) as c:
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"demo exited: {proc.stderr.read() if proc.stderr else ''}"
                try:
                    response = c.post("/v1/appointments", json=body, headers={"Idempotency-Key": "smoke-1"})
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                    time.sleep(0.2)
                    continue
                assert response.status_code == 201, response.text
                booked = c.get(f"/v1/appointments/{response.json()['id']}")
                assert booked.status_code == 200, booked.text
                assert booked.json()["status"] == "booked", booked.text
                return
        raise AssertionError(f"the demo never answered a booking ({last})")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
