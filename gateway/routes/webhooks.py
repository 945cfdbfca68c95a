"""/v1/webhooks: subscriptions for patient-update webhooks, secret rotation, and the operator's delivery controls."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from gateway.apidoc import Link, Rule, documented
from gateway.auth import runtime_of
from gateway.errors import NotFoundError, ValidationFailed
from gateway.routes.docs import API_KEY, PROBLEMS, PathId
from gateway.runtime import Principal
from gateway.storage.webhooks import DeliveryRecord, EndpointRecord, WebhookStore
from gateway.times import read_date_time
from gateway.usecases import webhooks as hooks
from gateway.webhooks.ssrf import TargetRefused, check_target, parse_networks
from schemas.common import INSTANT_PATTERN
from schemas.deliveries import Delivery, DeliveryList, DeliveryState, ReplayResult
from schemas.problems import FieldError
from schemas.webhooks import CreateWebhook, Webhook, WebhookList


def _webhook(record: EndpointRecord, secret: str | None = None) -> Webhook:
    return Webhook(
        id=record.id,
        url=record.url,
        event_types=record.event_types,
        format=record.format,
        enabled=record.enabled,
        created_at=record.created_at,
        description=record.description,
        disabled_reason=record.disabled_reason,
        secret=secret,
    )


def _delivery(record: DeliveryRecord) -> Delivery:
    return Delivery(
        id=record.id,
        endpoint_id=record.endpoint_id,
        event_id=record.event_id,
        event_type=record.event_type,
        state=DeliveryState(record.state),
        attempts=record.attempts,
        created_at=record.created_at,
        updated_at=record.updated_at,
        next_attempt_at=record.next_attempt_at,
        last_attempt_at=record.last_attempt_at,
        last_status_code=record.last_status_code,
        last_error=record.last_error,
        last_response_body=record.last_response_body,
    )


def _missing(webhook_id: str) -> NotFoundError:
    return NotFoundError(f"no webhook {webhook_id} at this location")


def _store(request: Request[Any, Any, State]) -> WebhookStore:
    return WebhookStore(runtime_of(request.app.state).store)


GET = "V1WebhooksWebhookIdGetWebhook"
DELETE = "V1WebhooksWebhookIdDeleteWebhook"
DELIVERIES = "V1WebhooksWebhookIdDeliveriesDeliveries"
RETRY = "V1WebhooksWebhookIdDeliveriesDeliveryIdRetryRetry"
ENABLE = "V1WebhooksWebhookIdEnableEnable"
ROTATE = "V1WebhooksWebhookIdRotateSecretRotateSecret"
REPLAY = "V1WebhooksWebhookIdReplayReplay"


def _follow(status: int) -> tuple[Link, ...]:
    """From an answer carrying a webhook to what can be done with it next."""
    ident = {"path.webhook_id": "$response.body#/id"}
    return (
        Link("get", status, GET, ident, description="Read the subscription"),
        Link("deliveries", status, DELIVERIES, ident, description="Its delivery log"),
        Link("enable", status, ENABLE, ident, description="Re-enable it"),
        Link("rotate_secret", status, ROTATE, ident, description="Rotate its secret"),
        Link("replay", status, REPLAY, ident, description="Queue past events again"),
        Link("delete", status, DELETE, ident, description="Unsubscribe"),
    )


RETRY_FIRST = Link(
    "retry",
    200,
    RETRY,
    {"path.webhook_id": "$request.path.webhook_id", "path.delivery_id": "$response.body#/items/0/id"},
    description="Send the newest delivery again",
)
URL_RULE = Rule(
    "url",
    "must resolve only to public addresses (not loopback, private, link-local, …) unless EGW_WEBHOOK_ALLOWED_SUBNETS "
    "allows them",
)


class WebhooksController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]
    security = API_KEY

    @post(
        "/",
        responses=PROBLEMS,
        status_code=201,
        summary="Subscribe a URL; the whsec_ secret is shown only now",
        operation_class=documented(rules=(URL_RULE,), links=_follow(201)),
    )
    async def create(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], data: JSONBody[CreateWebhook]
    ) -> Webhook:
        runtime = runtime_of(request.app.state)
        try:
            await check_target(data.url, parse_networks(runtime.config.webhook_allowed_subnets))
        except TargetRefused as exc:
            raise ValidationFailed(str(exc), errors=[FieldError(field="url", message=str(exc))]) from None
        if not data.event_types:
            raise ValidationFailed(
                "subscribe to at least one event type",
                errors=[FieldError(field="event_types", message="must not be empty")],
            )
        record, secret = await _store(request).create_endpoint(principal.location.id, data)
        return _webhook(record, secret)

    @get("/", responses=PROBLEMS, summary="List this location's webhook subscriptions")
    async def list_webhooks(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal]
    ) -> WebhookList:
        records = await _store(request).list_endpoints(principal.location.id)
        return WebhookList(items=[_webhook(r) for r in records])

    @get(
        "/{webhook_id:str}",
        responses=PROBLEMS,
        summary="One webhook subscription",
        operation_id=GET,
        operation_class=documented(links=_follow(200)[1:]),
    )
    async def get_webhook(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], webhook_id: PathId
    ) -> Webhook:
        record = await _store(request).get_endpoint(principal.location.id, webhook_id)
        if record is None:
            raise _missing(webhook_id)
        return _webhook(record)

    @delete(
        "/{webhook_id:str}",
        responses=PROBLEMS,
        status_code=204,
        summary="Unsubscribe (its delivery log goes too)",
        operation_id=DELETE,
    )
    async def delete_webhook(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], webhook_id: PathId
    ) -> None:
        if not await _store(request).delete_endpoint(principal.location.id, webhook_id):
            raise _missing(webhook_id)

    @post(
        "/{webhook_id:str}/rotate-secret",
        responses=PROBLEMS,
        status_code=200,
        summary="New secret (shown once); the old one keeps signing alongside it for the grace period",
        operation_id=ROTATE,
    )
    async def rotate_secret(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], webhook_id: PathId
    ) -> Webhook:
        rt = runtime_of(request.app.state)
        grace = rt.config.webhook_secret_grace_seconds
        rotated = await hooks.rotate_secret(
            rt.store, principal.location.id, webhook_id, grace, actor=hooks.api_actor(principal.key)
        )
        if rotated is None:
            raise _missing(webhook_id)
        record, secret = rotated
        return _webhook(record, secret)

    @post(
        "/{webhook_id:str}/enable",
        responses=PROBLEMS,
        status_code=200,
        summary="Re-enable a disabled endpoint",
        operation_id=ENABLE,
    )
    async def enable(
        self, request: Request[Any, Any, State], principal: NamedDependency[Principal], webhook_id: PathId
    ) -> Webhook:
        record = await hooks.enable(
            runtime_of(request.app.state).store, principal.location.id, webhook_id, actor=hooks.api_actor(principal.key)
        )
        if record is None:
            raise _missing(webhook_id)
        return _webhook(record)

    @get(
        "/{webhook_id:str}/deliveries",
        responses=PROBLEMS,
        summary="The endpoint's delivery log, newest first",
        operation_id=DELIVERIES,
        operation_class=documented(links=(RETRY_FIRST,)),
    )
    async def deliveries(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        webhook_id: PathId,
        state_filter: Annotated[DeliveryState | None, QueryParameter(name="state", required=False)] = None,
        limit: Annotated[int, QueryParameter(name="limit", required=False, ge=1, le=500)] = 100,
    ) -> DeliveryList:
        records = await _store(request).list_deliveries(
            principal.location.id, webhook_id, state=state_filter.value if state_filter else None, limit=limit
        )
        if records is None:
            raise _missing(webhook_id)
        return DeliveryList(items=[_delivery(r) for r in records])

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/retry",
        responses=PROBLEMS,
        status_code=202,
        summary="Send one delivery again now (dead-lettered ones too), with a fresh retry schedule",
        operation_id=RETRY,
    )
    async def retry(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        webhook_id: PathId,
        delivery_id: PathId,
    ) -> Delivery:
        record = await hooks.retry_delivery(
            runtime_of(request.app.state).store,
            principal.location.id,
            webhook_id,
            delivery_id,
            actor=hooks.api_actor(principal.key),
        )
        if record is None:
            raise NotFoundError(f"no delivery {delivery_id} for webhook {webhook_id} at this location")
        return _delivery(record)

    @post(
        "/{webhook_id:str}/replay",
        responses=PROBLEMS,
        status_code=202,
        summary="Queue again every subscribed event since a time (same webhook-id as the first time)",
        operation_id=REPLAY,
    )
    async def replay(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        webhook_id: PathId,
        since: Annotated[
            str,
            QueryParameter(name="since", pattern=INSTANT_PATTERN, description="RFC 3339 instant with an offset"),
        ],
    ) -> ReplayResult:
        when = read_date_time(since, field="since")  # the pattern holds an offset: an instant
        queued = await hooks.replay(
            runtime_of(request.app.state).store,
            principal.location.id,
            webhook_id,
            when,
            actor=hooks.api_actor(principal.key),
        )
        if queued is None:
            raise _missing(webhook_id)
        return ReplayResult(queued=queued)
