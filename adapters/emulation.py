"""What every EMR emulator shares: seed data, fault injection, traffic recording, control routes, a server thread.

An emulator is a Litestar app with in-memory state that answers like the EMR documents. `build_emulator_app` adds,
around any emulator's routes, the layers tests and the demo drive over HTTP: the `/_emulator` control routes, fault
injection, request counting and a bounded log of every exchange (for conformance checks against the EMR's own
OpenAPI document).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import datetime
import enum
import math
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, ClassVar, cast

import litestar
import msgspec
import uvicorn
from litestar import delete, get, post
from litestar.params import JSONBody
from litestar.types.composite_types import Dependencies

# Loose ASGI types: these layers only read a few keys, and Litestar's TypedDict unions get in the way.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_emulator"

# ---------------------------------------------------------------------------------------------- faults


class FaultKind(enum.StrEnum):
    LATENCY = "latency"  # sleep delay_ms, then serve normally
    ERROR_5XX = "error_5xx"  # answer `status` (default 503) without touching state
    RATE_LIMIT = "rate_limit"  # answer the EMR's own 429
    DROP = "drop"  # start the response then abort the connection
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"  # apply the write, then sleep delay_ms before answering
    TIMEOUT_BEFORE_APPLY = "timeout_before_apply"  # sleep delay_ms, then answer 503 without applying anything
    # Serve normally, but remove every member named `drop_field` from the JSON answer: an EMR that renamed or dropped
    # a field (what `locations verify` and `emr_contract_changed` must name).
    RESHAPE = "reshape"
    # Apply a create or move, but store the start `shift_minutes` later and/or `length_minutes` long: an EMR that read
    # the time in another zone or the length in another unit. Applied by each emulator's write handlers
    # (`FaultInjector.misstore`), answered normally, so only a comparison with what was asked can notice.
    MISSTORE = "misstore"
    # Answer `status` (504, as a load balancer that gave up would) at once, and apply the write `delay_ms` later
    # anyway: the EMR behind the proxy finished after the client stopped waiting.
    APPLY_LATE = "apply_late"
    # Refuse the request with the EMR's own error shape at `status` (422), its text quoting `message` (tests put a
    # patient's name, e-mail and phone there: none may reach a caller or a log).
    REJECT = "reject"


# Kinds the shared fault layer applies; the others are applied inside an emulator's handlers.
LAYER_KINDS = frozenset(set(FaultKind) - {FaultKind.MISSTORE})


class Fault(msgspec.Struct, kw_only=True):
    kind: FaultKind
    method: str | None = None
    path_prefix: str | None = None
    count: int = 1
    status: int = 503
    retry_after: int = 1
    delay_ms: int = 0
    drop_field: str | None = None  # RESHAPE
    shift_minutes: int = 0  # MISSTORE
    length_minutes: int | None = None  # MISSTORE
    message: str | None = None  # REJECT
    # Inactive until a request with this method has arrived: e.g. reads fail only once the create went through
    # (the post-write race check).
    armed_by: str | None = None

    def misstored(
        self, start: datetime.datetime, end: datetime.datetime
    ) -> tuple[datetime.datetime, datetime.datetime]:
        """(start, end) as a MISSTORE fault stores them."""
        start = start + datetime.timedelta(minutes=self.shift_minutes)
        if self.length_minutes is not None:
            return start, start + datetime.timedelta(minutes=self.length_minutes)
        return start, end + datetime.timedelta(minutes=self.shift_minutes)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class FaultInjector:
    """Faults waiting for matching requests; shared by an emulator app (event loop thread) and the tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.count < 1:
            return
        with self._lock:
            self._faults.append(msgspec.structs.replace(fault))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def observe(self, method: str) -> None:
        """Arm the faults waiting for a request with `method` (called for every request, before `take`)."""
        with self._lock:
            for fault in self._faults:
                if fault.armed_by is not None and fault.armed_by.upper() == method.upper():
                    fault.armed_by = None

    def take(self, method: str, path: str, kinds: frozenset[FaultKind] = LAYER_KINDS) -> Fault | None:
        """Consume one count of the first armed fault of `kinds` that matches, if any."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.armed_by is None and fault.kind in kinds and fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        del self._faults[i]
                    return fault
        return None

    def misstore(self, method: str, path: str) -> Fault | None:
        """For an emulator's create/move handler: the MISSTORE fault this write should apply, if any."""
        return self.take(method, path, frozenset({FaultKind.MISSTORE}))


# ---------------------------------------------------------------------------------------------- seed


class SeedPractitioner(msgspec.Struct):
    first_name: str
    last_name: str
    email: str


class SeedService(msgspec.Struct):
    name: str
    duration_minutes: int
    code: str | None = None


class SeedPatient(msgspec.Struct):
    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = None
    date_of_birth: datetime.date | None = None


class SeedBusiness(msgspec.Struct):
    name: str


class EmulatorSeed(msgspec.Struct, kw_only=True):
    """One EMR account. Every practitioner works at every business and offers every service."""

    time_zone: str = "Australia/Melbourne"
    businesses: list[SeedBusiness] = msgspec.field(default_factory=lambda: [SeedBusiness(name="Demo Clinic")])
    practitioners: list[SeedPractitioner] = msgspec.field(default_factory=list)
    services: list[SeedService] = msgspec.field(default_factory=list)
    patients: list[SeedPatient] = msgspec.field(default_factory=list)
    open_weekdays: list[int] = msgspec.field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])  # Monday = 0
    open_from: str = "09:00"  # local wall time in time_zone
    open_until: str = "17:00"
    slot_step_minutes: int = 15


def default_seed() -> EmulatorSeed:
    return EmulatorSeed(
        practitioners=[
            SeedPractitioner(first_name="Alice", last_name="Nguyen", email="alice.nguyen@example.com"),
            SeedPractitioner(first_name="Ben", last_name="Carter", email="ben.carter@example.com"),
        ],
        services=[
            SeedService(name="Standard Consultation", duration_minutes=30, code="STD30"),
            SeedService(name="Initial Assessment", duration_minutes=60, code="INIT60"),
        ],
        patients=[
            SeedPatient(
                first_name="Jane",
                last_name="Citizen",
                email="jane.citizen@example.com",
                phone="+61 412 345 678",
                date_of_birth=datetime.date(1985, 4, 12),
            )
        ],
    )


# ---------------------------------------------------------------------------------------------- rate limits


class WindowLimiter:
    """A fixed window per caller (one minute unless a test shortens it), opened by its first request: the model of
    "N requests per minute"."""

    def __init__(self, limit: int, clock: Callable[[], float], window: float = 60.0) -> None:
        self.limit = limit
        self.clock = clock
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def hit(self, caller: str = "") -> float | None:
        """Count a request; None when allowed, else the epoch second (fractional) at which the window resets."""
        now = self.clock()
        with self._lock:
            start, count = self._windows.get(caller, (now, 0))
            if now >= start + self.window:
                start, count = now, 0
            count += 1
            self._windows[caller] = (start, count)
            if count > self.limit:
                return start + self.window
        return None


class SlidingWindowLimiter:
    """`limit` requests in any `window` seconds per caller (Halaxy: 500 a minute, a sliding window)."""

    def __init__(self, limit: int, clock: Callable[[], float], window: float = 60.0) -> None:
        self.limit = limit
        self.clock = clock
        self.window = window
        self._lock = threading.Lock()
        self._hits: dict[str, collections.deque[float]] = {}

    def hit(self, caller: str = "") -> tuple[int, int | None]:
        """(remaining after this request, None) when allowed; (0, whole seconds to wait) when refused."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(caller, collections.deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return 0, max(1, math.ceil(hits[0] + self.window - now))
            hits.append(now)
            return self.limit - len(hits), None


# ---------------------------------------------------------------------------------------------- traffic


class EmulatorStats(msgspec.Struct):
    requests: int
    appointments: int
    active_appointments: int
    rate_limited: int = 0  # requests answered 429 (the EMR's limit or an injected fault)


class Exchange(msgspec.Struct, kw_only=True):
    """One request the emulator received and the response it sent (for conformance checks)."""

    method: str
    path: str
    query: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    response_content_type: str | None
    response_headers: list[tuple[str, str]]
    response_body: bytes

    def request_header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.request_headers if k == name), None)


class Traffic:
    """Counts EMR requests (control routes excluded) and keeps the last `max_exchanges` exchanges."""

    def __init__(self, max_exchanges: int = 2000) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.rate_limited = 0
        self.exchanges: collections.deque[Exchange] = collections.deque(maxlen=max_exchanges)

    def count(self) -> None:
        with self._lock:
            self.requests += 1

    def record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            if exchange.status == 429:
                self.rate_limited += 1


class RawResponse(msgspec.Struct):
    """A response an emulator layer answers by itself (fault, auth refusal, rate limit)."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)

    async def send(self, send: Send) -> None:
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers]
        if self.content_type is not None:
            headers.append((b"content-type", self.content_type.encode()))
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


# ---------------------------------------------------------------------------------------------- the emulator base


class Emulator(abc.ABC):
    """One per EMR; a running instance owns its in-memory state."""

    slug: ClassVar[str]
    faults: FaultInjector

    @abc.abstractmethod
    def app(self) -> litestar.Litestar: ...

    @abc.abstractmethod
    def stats(self) -> EmulatorStats: ...

    @abc.abstractmethod
    def location_config(self, base_url: str, business_index: int = 0) -> tuple[bytes, bytes]:
        """(settings JSON, credentials JSON) for a gateway location on that seeded business at `base_url`."""

    @abc.abstractmethod
    def bad_credentials(self, base_url: str, business_index: int = 0) -> bytes:
        """Credentials JSON the EMR refuses."""


# ---------------------------------------------------------------------------------------------- app assembly

Gate = Callable[[Scope], RawResponse | None]
FaultAnswer = Callable[[Fault], RawResponse]


def plain_error(fault: Fault) -> RawResponse:
    return RawResponse(status=fault.status, body=b"Service Unavailable", content_type="text/plain; charset=utf-8")


def json_rejection(fault: Fault) -> RawResponse:
    """A REJECT in the common `{"message", "errors"}` shape; emulators whose EMR answers otherwise pass their own."""
    text = fault.message or "Validation failed"
    status = fault.status if fault.status != 503 else 422
    return RawResponse(status=status, body=msgspec.json.encode({"message": text, "errors": {"base": [text]}}))


def control_handlers(emulator: Emulator) -> list[Any]:
    """`POST|DELETE /_emulator/faults`, `GET /_emulator/stats` for one emulator."""

    @post(f"{CONTROL_PREFIX}/faults", status_code=204, sync_to_thread=False)
    def add_fault(data: JSONBody[Fault]) -> None:
        emulator.faults.add(data)

    @delete(f"{CONTROL_PREFIX}/faults", status_code=204, sync_to_thread=False)
    def clear_faults() -> None:
        emulator.faults.clear()

    @get(f"{CONTROL_PREFIX}/stats", sync_to_thread=False)
    def stats() -> EmulatorStats:
        return emulator.stats()

    return [add_fault, clear_faults, stats]


class _Recorder:
    """Outermost layer: records the exchange as the client saw it."""

    def __init__(self, app: ASGIApp, traffic: Traffic) -> None:
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        self.traffic.count()
        request_body = bytearray()
        status = 0
        response_headers: list[tuple[str, str]] = []
        response_body = bytearray()

        async def recv() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            content_type = next((v for k, v in response_headers if k.lower() == "content-type"), None)
            self.traffic.record(
                Exchange(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope["query_string"].decode("latin-1"),
                    request_headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
                    request_body=bytes(request_body),
                    status=status,
                    response_content_type=content_type,
                    response_headers=response_headers,
                    response_body=bytes(response_body),
                )
            )

        async def snd(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
                if status in (204, 304):
                    record()  # no body follows that a client would wait for: record before it can see the answer
            elif message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    record()  # before the client can see the end of the response, so a test never reads stale traffic
            await send(message)

        try:
            await self.app(scope, recv, snd)
        finally:
            record()


def _drop(value: object, name: str) -> object:
    if isinstance(value, dict):
        return {k: _drop(v, name) for k, v in value.items() if k != name}
    if isinstance(value, list):
        return [_drop(v, name) for v in value]
    return value


class _Reshaper:
    """Buffers one response and removes every JSON member called `name` before sending it on (RESHAPE)."""

    def __init__(self, send: Send, name: str) -> None:
        self.send = send
        self.name = name
        self.start: Message | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        assert self.start is not None
        body = bytes(self.body)
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if b"json" in content_type:
            with contextlib.suppress(msgspec.DecodeError):
                body = msgspec.json.encode(_drop(msgspec.json.decode(body), self.name))
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class _FaultLayer:
    """Applies injected faults, then the emulator's gate (auth, rate limits), then the routes."""

    def __init__(
        self,
        app: ASGIApp,
        faults: FaultInjector,
        rate_limited: FaultAnswer,
        server_error: FaultAnswer,
        gate: Gate,
        rejected: FaultAnswer,
    ) -> None:
        self.app = app
        self.faults = faults
        self.rate_limited = rate_limited
        self.server_error = server_error
        self.gate = gate
        self.rejected = rejected
        self._late: set[asyncio.Task[None]] = set()  # writes applied after their client was answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        self.faults.observe(scope["method"])
        if fault is None:
            await self._serve(scope, receive, send)
            return
        delay = fault.delay_ms / 1000
        match fault.kind:
            case FaultKind.LATENCY:
                await asyncio.sleep(delay)
                await self._serve(scope, receive, send)
            case FaultKind.ERROR_5XX:
                await self.server_error(fault).send(send)
            case FaultKind.RATE_LIMIT:
                await self.rate_limited(fault).send(send)
            case FaultKind.TIMEOUT_BEFORE_APPLY:
                await asyncio.sleep(delay)
                await self.server_error(msgspec.structs.replace(fault, status=503)).send(send)
            case FaultKind.APPLY_LATE:
                await self._apply_late(scope, receive, send, fault)
            case FaultKind.REJECT:
                await self.rejected(fault).send(send)
            case FaultKind.RESHAPE:
                await self._serve(scope, receive, _Reshaper(send, fault.drop_field or ""))
            case FaultKind.TIMEOUT_AFTER_APPLY:
                held: list[Message] = []

                async def hold(message: Message) -> None:
                    held.append(message)

                await self._serve(scope, receive, hold)
                await asyncio.sleep(delay)
                for message in held:
                    await send(message)
            case FaultKind.DROP:
                # Promise a body, send part of it, and return: uvicorn then closes the connection mid-response.
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"', "more_body": True})

    async def _apply_late(self, scope: Scope, receive: Receive, send: Send, fault: Fault) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status = fault.status if fault.status != 503 else 504
        await RawResponse(status=status, body=b"Gateway Timeout", content_type="text/plain").send(send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return {"type": "http.disconnect"}
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        async def discard(message: Message) -> None:
            return None

        async def later() -> None:
            await asyncio.sleep(fault.delay_ms / 1000)
            await self._serve(dict(scope), replay, discard)

        task = asyncio.get_running_loop().create_task(later())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.gate(scope)
        if refusal is not None:
            await refusal.send(send)
            return
        await self.app(scope, receive, send)


def build_emulator_app(
    emulator: Emulator,
    route_handlers: Sequence[Any],
    *,
    traffic: Traffic,
    rate_limited: FaultAnswer,
    server_error: FaultAnswer = plain_error,
    rejected: FaultAnswer = json_rejection,
    gate: Gate = lambda scope: None,
    exception_handlers: dict[Any, Any] | None = None,
    dependencies: Dependencies | None = None,
) -> litestar.Litestar:
    """A Litestar app serving `route_handlers` plus the control routes, wrapped in recording and fault layers.

    The layers wrap `app.asgi_handler` (what Litestar runs after lifespan handling), so they also see requests no
    route matches: an emulator answers unknown paths the way its EMR does, and those exchanges are recorded too.
    """
    app = litestar.Litestar(
        route_handlers=[*route_handlers, *control_handlers(emulator)],
        exception_handlers=exception_handlers or {},
        dependencies=dependencies,
        openapi_config=None,
        logging_config=None,  # an emulator must not reconfigure the host process's logging
        debug=False,
    )
    faulted = _FaultLayer(cast(ASGIApp, app.asgi_handler), emulator.faults, rate_limited, server_error, gate, rejected)
    app.asgi_handler = cast(Any, _Recorder(faulted, traffic))
    return app


# ---------------------------------------------------------------------------------------------- server thread


class ServerThread:
    """Runs an ASGI app under uvicorn on 127.0.0.1 in a daemon thread (tests, the demo)."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets it sees as TCP; without it, 40 ms stalls.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(app, lifespan="on", log_level="critical", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._started = threading.Event()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator server failed to start")
            self._started.wait(0.01)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()
