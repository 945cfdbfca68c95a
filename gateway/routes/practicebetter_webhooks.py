"""Practice Better's own webhooks, per location: the subscription handshake and signed event deliveries.

Subscribe with `endpointUrl = <gateway>/practicebetter/v1/webhooks/<location id>` and the location's
`webhook_verification_token` as `verificationToken`; store the `plaintextSigningSecret` Practice Better returns (once)
as the location's `webhook_signing_secret` credential. A delivery is a thin notification: the gateway re-reads the
affected client and their sessions and runs the change detector on them (a targeted sync), so subscribers hear of the
change now rather than at the next poll. A bad or stale signature is 401 and changes nothing; an EMR failure while
re-reading is 503, which makes Practice Better retry.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromQuery, HeaderParameter, JSONBody

from adapters.errors import NotFound
from adapters.practicebetter import signature
from adapters.practicebetter.adapter import PracticeBetterAdapter
from adapters.practicebetter.settings import PracticeBetterCredentials
from adapters.practicebetter.wire import WebhookNotification
from gateway.auth import runtime_of
from gateway.catalog import Catalog
from gateway.errors import NotFoundError, Unauthorized
from gateway.routes.docs import PROBLEMS, PathId
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord
from gateway.sync.detector import detect
from gateway.times import now_utc
from gateway.webhooks import wakeup
from schemas.changes import ChangeSet
from schemas.commands import AppointmentQuery

Req = Request[Any, Any, State]


class Challenge(msgspec.Struct, kw_only=True):
    challenge: str
    timestamp: int


class WebhookOutcome(msgspec.Struct, kw_only=True):
    accepted: bool
    events: int = 0
    reason: str | None = None


async def _location(runtime: Runtime, location_id: str) -> tuple[LocationRecord, PracticeBetterCredentials]:
    location = await runtime.store.get_location(location_id)
    if location is None or location.emr != PracticeBetterAdapter.slug:
        raise NotFoundError("no Practice Better location with this id")
    raw = await runtime.store.get_credentials(location.id)
    return location, msgspec.json.decode(raw, type=PracticeBetterCredentials)


async def _targeted_sync(runtime: Runtime, location: LocationRecord, event: WebhookNotification) -> WebhookOutcome:
    kind = (event.kind() or "").lower()
    resource = event.resource_identifier()
    if not resource:
        return WebhookOutcome(accepted=False, reason="no resource id in the notification")
    adapter = await runtime.adapters.get(location)
    try:
        if kind.startswith("session"):
            patient_id = (await adapter.get_appointment(resource)).patient_id
        elif kind.startswith("client"):
            patient_id = resource
        else:
            return WebhookOutcome(accepted=False, reason="event type not handled")
        patient = await adapter.get_patient(patient_id)
    except NotFound:
        return WebhookOutcome(accepted=False, reason="the record no longer exists")
    sessions = await adapter.list_appointments(AppointmentQuery(patient_id=patient_id))

    async def catalog() -> Catalog:
        return await runtime.catalogs.get(location.id, adapter)

    found = await detect(
        runtime.store,
        adapter,
        location,
        ChangeSet(patients=[patient], appointments=sessions, cursor=""),
        catalog=catalog,
        now=now_utc(),
        resnapshot=frozenset({patient_id}),
    )
    if found.events:
        wakeup.notify()
    return WebhookOutcome(accepted=True, events=len(found.events))


SignatureHeader = HeaderParameter(
    name=signature.HEADER,
    required=False,
    description='`t=<unix seconds>,v1=<hex HMAC-SHA256(signing secret, "<t>.<body>")>`; without a valid one: 401',
)


class PracticeBetterWebhooksController(Controller):
    """Authenticated by Practice Better's verification token (handshake) and `PB-Signature` (events), not a key."""

    path = "/practicebetter/v1/webhooks/{location_id:str}"
    tags = ["practice better"]

    @get("/", responses=PROBLEMS, summary="Practice Better's subscription handshake")
    async def handshake(
        self,
        request: Req,
        location_id: PathId,
        challenge: FromQuery[str],
        verification_token: FromQuery[str],
    ) -> Challenge:
        _, credentials = await _location(runtime_of(request.app.state), location_id)
        expected = credentials.webhook_verification_token
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a mismatch).
        if not expected or not hmac.compare_digest(expected.encode(), verification_token.encode()):
            raise Unauthorized("the verification token does not match this location's")
        return Challenge(challenge=challenge, timestamp=int(time.time()))

    @post("/", responses=PROBLEMS, status_code=200, summary="A Practice Better event: re-read the client, detect")
    async def receive(
        self,
        request: Req,
        location_id: PathId,
        data: JSONBody[WebhookNotification],
        pb_signature: Annotated[str | None, SignatureHeader] = None,
    ) -> WebhookOutcome:
        """The signature is checked over the body's bytes as they arrived; a body that is not Practice Better's JSON
        is refused (400/422) before that, and changes nothing either."""
        runtime = runtime_of(request.app.state)
        location, credentials = await _location(runtime, location_id)
        secret = credentials.webhook_signing_secret
        if not secret or not signature.verify(secret, pb_signature, await request.body()):
            raise Unauthorized("the PB-Signature is missing, stale or wrong")
        return await _targeted_sync(runtime, location, data)
