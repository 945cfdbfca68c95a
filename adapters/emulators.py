"""Explicit slug -> emulator factory map (used by `emr-gateway demo` and the contract suite)."""

from __future__ import annotations

from collections.abc import Callable

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import Emulator, EmulatorSeed

EMULATORS: dict[str, Callable[[EmulatorSeed], Emulator]] = {
    ClinikoEmulator.slug: ClinikoEmulator,
}
