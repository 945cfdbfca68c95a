"""Explicit slug -> adapter class map, plus third-party adapters from the `emr_gateway.adapters` entry points."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

from adapters.base import EMRAdapter
from adapters.cliniko.adapter import ClinikoAdapter
from adapters.fhir.adapter import FhirAdapter
from adapters.halaxy.adapter import HalaxyAdapter
from adapters.jane.adapter import JaneAdapter
from adapters.nookal.adapter import NookalAdapter
from adapters.practicebetter.adapter import PracticeBetterAdapter
from adapters.simplepractice.adapter import SimplePracticeAdapter

AdapterClass = type[EMRAdapter]  # type: ignore[type-arg]

BUILTIN: dict[str, AdapterClass] = {
    ClinikoAdapter.slug: ClinikoAdapter,
    FhirAdapter.slug: FhirAdapter,
    HalaxyAdapter.slug: HalaxyAdapter,
    JaneAdapter.slug: JaneAdapter,
    NookalAdapter.slug: NookalAdapter,
    PracticeBetterAdapter.slug: PracticeBetterAdapter,
    SimplePracticeAdapter.slug: SimplePracticeAdapter,
}


class DuplicateAdapter(Exception):
    """Two adapters claim one slug."""


def load_registry() -> dict[str, AdapterClass]:
    registry = dict(BUILTIN)
    for ep in entry_points(group="emr_gateway.adapters"):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, EMRAdapter)):
            raise TypeError(f"entry point {ep.name} is not an EMRAdapter subclass")
        if cls.slug in registry:
            raise DuplicateAdapter(f"adapter slug {cls.slug!r} is registered twice ({ep.value})")
        registry[cls.slug] = cls
    return registry


@functools.cache
def registry() -> dict[str, AdapterClass]:
    """Read once per process: scanning installed distributions' entry points costs milliseconds, and they do not
    change while the process runs."""
    return load_registry()


def get_adapter_class(slug: str) -> AdapterClass:
    registry_ = registry()
    try:
        return registry_[slug]
    except KeyError:
        raise KeyError(f"unknown EMR {slug!r}; known: {', '.join(sorted(registry_))}") from None
