"""Every Nookal test starts with nothing shared: what getLocations showed is kept per process (issue 17), and a
later emulator may be served at a port an earlier one used."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.nookal.locations import LOCATIONS


@pytest.fixture(autouse=True)
def _no_shared_locations() -> Iterator[None]:
    LOCATIONS.clear()
    yield
    LOCATIONS.clear()
