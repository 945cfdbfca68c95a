"""Practice Better's own webhooks, per location: the subscription handshake and signed event deliveries.

Subscribe with `endpointUrl = <gateway>/practicebetter/v1/webhooks/<location id>` and the location's
`webhook_verification_token` as `verificationToken`; store the `plaintextSigningSecret` Practice Better returns (once)
as the location's `webhook_signing_secret` credential. A delivery is a thin notification: the gateway re-reads the
affected client and their sessions and runs the change detector on them (a targeted sync), so subscribers hear of the
change now rather than at the next poll. A bad or stale signature is 401 and changes nothing; an EMR failure while
re-reading is 503, which makes Practice Better retry.
"""

from __future__ import annotations

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
from gateway.errors import Unauthorized
from gateway.routes.docs import PROBLEMS, PathId
from gateway.routes.emr_webhooks import emr_location, same_secret
from gateway.runtime import Runtime
from gateway.storage.records import LocationRecord
from gateway.sync.targeted import resync_patients

Req = Request[Any, Any, State]


class Challenge(msgspec.Struct, kw_only=True):
    challenge: str
    timestamp: int


class WebhookOutcome(msgspec.Struct, kw_only=True):
    accepted: bool
    events: int = 0
    reason: str | None = None


async def _location(runtime: Runtime, location_id: str) -> tuple[LocationRecord, PracticeBetterCredentials]:
    return await emr_location(
        runtime,
        location_id,
        slug=PracticeBetterAdapter.slug,
        name="Practice Better",
        credentials=PracticeBetterCredentials,
    )


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
    found = await resync_patients(runtime, location, adapter, {patient_id: patient})
    return WebhookOutcome(accepted=True, events=len(found.events) if found is not None else 0)


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
        if not same_secret(credentials.webhook_verification_token, verification_token):
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
