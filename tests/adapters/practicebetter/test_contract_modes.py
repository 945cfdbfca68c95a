"""The contract suite against the Practice Better emulator switched to its alternative behaviour: `duration` in
minutes and `sessionDate` read as an instant, as the swagger readers assume (tests/contract runs the default:
seconds and wall time, as the production integrator observed). The location's settings follow the emulator, so this
proves the two settings do what they say.

The transport-failure cases do not depend on these settings and run once, in tests/contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.emulation import ServerThread, default_seed
from adapters.practicebetter.emulator import PracticeBetterEmulator
from tests.adapters.practicebetter.conftest import DEFAULT_MODE, MODES, PB
from tests.contract.conftest import CLIENT_TIMEOUT, Harness
from tests.contract.test_contract import *  # noqa: F403 - the suite itself, collected here again

del test_read_under_transport_failure, test_slow_read_is_a_timeout  # noqa: F821

ALTERNATIVE = [m for m in MODES if m != DEFAULT_MODE]


@pytest.fixture(params=ALTERNATIVE, ids=[f"{unit}-{mode}" for unit, mode in ALTERNATIVE])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    unit, mode = request.param
    seed = default_seed()
    emulator = PracticeBetterEmulator(seed, duration_unit=unit, session_date_mode=mode)
    server = ServerThread(emulator.app())
    base_url = server.start()
    http = httpx.AsyncClient(timeout=httpx.Timeout(CLIENT_TIMEOUT))
    try:
        pb = PB(emulator=emulator, base_url=base_url, http=http)
        h = Harness(slug="practicebetter", seed=seed, emulator=emulator, base_url=base_url, http=http, adapter=None)  # type: ignore[arg-type]
        h.adapter = pb.adapter()
        h.build = lambda *, credentials=None, business_index=0: pb.adapter(business_index, credentials)  # type: ignore[method-assign]
        yield h
    finally:
        await http.aclose()
        server.stop()
