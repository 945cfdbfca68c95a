"""An EMR answer that no longer decodes is remembered per location (health, metrics), wherever it was met: a
request, change detection, a health check or `locations verify`."""

from __future__ import annotations

from datetime import timedelta

from adapters.errors import ContractChanged
from gateway.metrics import Metrics
from gateway.storage import contract_changes
from gateway.storage.contract_changes import ContractChangeRecord
from gateway.storage.store import Store
from gateway.times import now_utc

# How long a contract change keeps a location's health at `emr_contract_changed` after it was last seen: long enough
# for an operator to notice, short enough that a fixed adapter (or EMR) clears it by itself.
SHOWN_FOR = timedelta(hours=24)


async def note(
    store: Store, location_id: str, exc: ContractChanged, metrics: Metrics | None = None, emr: str = ""
) -> None:
    if metrics is not None:
        metrics.contract_changed.labels(emr or "unknown", exc.path).inc()
    await contract_changes.record(store, location_id, exc.path, exc.problem, now_utc())


async def recent(store: Store, location_id: str) -> list[ContractChangeRecord]:
    return await contract_changes.recent(store, location_id, now_utc() - SHOWN_FOR)
