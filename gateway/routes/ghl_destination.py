"""`GET /v1/ghl/sync-log`: the location's GoHighLevel pushes, newest first (the queue is the log)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from gateway.auth import runtime_of
from gateway.routes.docs import API_KEY, PROBLEMS
from gateway.runtime import Principal
from gateway.storage import ghl_destination as db
from schemas.common import NAME_PATTERN, anchored
from schemas.ghl_sync import GhlPush, GhlPushState, GhlSyncLog

ID_PATTERN = anchored(r"[A-Za-z0-9_-]+")  # the log's own ids (ghp_…)


def _push(record: db.PushRecord) -> GhlPush:
    return GhlPush(
        id=record.id,
        patient_id=record.patient_id,
        event_type=record.event_type,
        state=GhlPushState(record.state),
        attempts=record.attempts,
        calls=record.calls,
        created_at=record.created_at,
        updated_at=record.updated_at,
        event_id=record.event_id,
        appointment_id=record.appointment_id,
        next_attempt_at=record.next_attempt_at,
        ghl_status=record.ghl_status,
        error_code=record.error_code,
        error=record.error,
    )


class GhlSyncLogController(Controller):
    path = "/v1/ghl"
    tags = ["gohighlevel"]
    security = API_KEY

    @get("/sync-log", responses=PROBLEMS, summary="What was pushed to GoHighLevel, skipped (unchanged) or failed")
    async def sync_log(
        self,
        request: Request[Any, Any, State],
        principal: NamedDependency[Principal],
        patient_id: Annotated[
            str | None,
            QueryParameter(
                name="patient_id",
                required=False,
                min_length=1,
                max_length=64,
                pattern=NAME_PATTERN,
                description="the EMR's patient id",
            ),
        ] = None,
        status: Annotated[GhlPushState | None, QueryParameter(name="status", required=False)] = None,
        before: Annotated[
            str | None,
            QueryParameter(
                name="before", required=False, min_length=1, max_length=40, pattern=ID_PATTERN, description="a push id"
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(name="limit", ge=1, le=500)] = 100,
    ) -> GhlSyncLog:
        records = await db.list_pushes(
            runtime_of(request.app.state).store,
            principal.location.id,
            patient_id=patient_id,
            states=[status.value] if status is not None else None,
            before=before,
            limit=limit,
        )
        return GhlSyncLog(
            items=[_push(r) for r in records], next_before=records[-1].id if len(records) == limit else None
        )
