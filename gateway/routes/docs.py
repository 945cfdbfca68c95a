"""The problem responses every API route can give, documented once for the OpenAPI document."""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement
from litestar.params import Parameter

from schemas.problems import Problem

_STATUSES = {
    400: "Malformed request (bad_request)",
    401: "Missing, unknown or revoked x-api-key (unauthorized)",
    404: "No such resource at this location (not_found)",
    409: "slot_unavailable | idempotency_in_flight | appointment_cancelled",
    413: "Body too large (payload_too_large)",
    422: "validation_failed | unknown_practitioner | unknown_service | idempotency_mismatch",
    429: "rate_limited (Retry-After says when to retry)",
    500: "internal_error",
    501: "not_supported by this EMR",
    502: "emr_error | emr_auth_failed",
    503: "emr_unavailable",
    504: "emr_timeout | emr_outcome_unknown",
}

PROBLEMS: dict[int, ResponseSpec] = {
    status: ResponseSpec(
        data_container=Problem, media_type="application/problem+json", description=text, generate_examples=False
    )
    for status, text in _STATUSES.items()
}

API_KEY: list[SecurityRequirement] = [{"apiKey": []}]

# An id in a path: the EMR's or the gateway's, opaque, never empty or longer than any id either issues.
PathId = Annotated[str, Parameter(min_length=1, max_length=255)]
