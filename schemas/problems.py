"""RFC 9457 problem details with the stable machine codes callers branch on."""

from __future__ import annotations

import enum

from schemas.common import Out


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    SLOT_UNAVAILABLE = "slot_unavailable"
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"
    VALIDATION_FAILED = "validation_failed"
    UNKNOWN_PRACTITIONER = "unknown_practitioner"
    UNKNOWN_SERVICE = "unknown_service"
    UNKNOWN_PATIENT = "unknown_patient"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    RATE_LIMITED = "rate_limited"
    NOT_SUPPORTED = "not_supported"
    EMR_ERROR = "emr_error"
    EMR_AUTH_FAILED = "emr_auth_failed"
    EMR_UNAVAILABLE = "emr_unavailable"
    EMR_TIMEOUT = "emr_timeout"
    EMR_OUTCOME_UNKNOWN = "emr_outcome_unknown"
    EMR_CONTRACT_CHANGED = "emr_contract_changed"
    EMR_WRITE_MISMATCH = "emr_write_mismatch"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INTERNAL_ERROR = "internal_error"


class FieldError(Out):
    field: str
    message: str


class EMRDetail(Out):
    """What the EMR said, with secrets and patient data removed."""

    status: int | None = None
    message: str | None = None


class Problem(Out, omit_defaults=True):
    type: str
    title: str
    status: int
    code: ErrorCode
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    emr: EMRDetail | None = None
    operation_id: str | None = None
    retry_after: int | None = None
