"""Explicit slug -> emulator factory map (used by `emr-gateway demo` and the contract suite)."""

from __future__ import annotations

from collections.abc import Callable

from adapters.cliniko.emulator import ClinikoEmulator
from adapters.emulation import Emulator, EmulatorSeed
from adapters.fhir.emulator import FhirEmulator
from adapters.halaxy.emulator import HalaxyEmulator
from adapters.jane.emulator import JaneEmulator
from adapters.nookal.emulator import NookalEmulator
from adapters.practicebetter.emulator import PracticeBetterEmulator
from adapters.simplepractice.emulator import SimplePracticeEmulator

EMULATORS: dict[str, Callable[[EmulatorSeed], Emulator]] = {
    ClinikoEmulator.slug: ClinikoEmulator,
    FhirEmulator.slug: FhirEmulator,
    HalaxyEmulator.slug: HalaxyEmulator,
    JaneEmulator.slug: JaneEmulator,
    NookalEmulator.slug: NookalEmulator,
    PracticeBetterEmulator.slug: PracticeBetterEmulator,
    SimplePracticeEmulator.slug: SimplePracticeEmulator,
}
