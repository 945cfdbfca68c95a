"""A stored location's operator actions, shared by the CLI and the console: `locations verify`'s read-only probes
of the live EMR account, and one sync of its change feed now (`emr-gateway sync LOCATION`, the console's
"Sync now")."""

from __future__ import annotations

import httpx
import msgspec

from adapters.errors import ContractChanged
from adapters.transport import EMRTransport
from gateway import emr_contract
from gateway.config import GatewayConfig
from gateway.emr import EMRPacing, location_adapter
from gateway.storage.records import LocationRecord
from gateway.storage.store import Store
from gateway.sync.full import CountingTransport, SyncResult, sync_location
from schemas.verify import VerifyReport


class EMRUnreachable(Exception):
    """The EMR could not be reached at all (the transport failed before any answer): the class name of why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def verify_location(
    store: Store, location: LocationRecord, *, http: httpx.AsyncClient, pacing: EMRPacing, actor: str
) -> VerifyReport:
    """`EMRAdapter.verify()` against the live account through the clinic's shared budget (`pacing`). A field path a
    probe reports is noted as a contract change (so `/v1/health` on every replica shows it); the run is audited.
    Raises EMRUnreachable when no answer came at all."""
    credentials = await store.get_credentials(location.id)
    try:
        adapter = location_adapter(location, credentials, http=http, store=store, pacing=pacing)
        report = await adapter.verify()
    except httpx.HTTPError as exc:
        raise EMRUnreachable(type(exc).__name__) from None
    for probe in report.probes:
        if probe.field_path:
            seen = ContractChanged("", path=probe.field_path, problem=probe.seen or "unreadable")
            await emr_contract.note(store, location.id, seen, emr=location.emr)
    await store.audit(location_id=location.id, actor=actor, action="location.verify", target=location.id)
    return msgspec.structs.replace(report, location_id=location.id)


async def sync_now(store: Store, config: GatewayConfig, location: LocationRecord, *, actor: str) -> SyncResult:
    """One sync of the change feed from the stored cursor, as `emr-gateway sync LOCATION` runs it (the same
    `sync_location`), with its EMR requests counted; recorded as a `manual` run and audited. Adapter errors and
    httpx transport errors propagate to the caller, which words them."""
    counter = CountingTransport(EMRTransport())
    timeout = httpx.Timeout(config.emr_timeout_seconds, connect=config.emr_connect_timeout_seconds)
    async with httpx.AsyncClient(timeout=timeout, transport=counter, follow_redirects=False) as http:
        result = await sync_location(store, http, config, location, full=False, counter=counter)
    await store.audit(location_id=location.id, actor=actor, action="location.sync", target=location.id)
    return result
