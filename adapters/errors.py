"""One error hierarchy every adapter maps its EMR's failures onto; the gateway maps it to problem codes."""

from __future__ import annotations


class AdapterError(Exception):
    """Base: `emr_status`/`emr_message` are what the EMR said, already free of secrets and patient data."""

    def __init__(self, message: str, *, emr_status: int | None = None, emr_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.emr_status = emr_status
        self.emr_message = emr_message


class NotFound(AdapterError):
    """The EMR has no such record (or it belongs to another business/location)."""


class SlotUnavailable(AdapterError):
    """The requested time is taken or outside the practitioner's bookable hours."""


class InvalidReference(AdapterError):
    """An id the caller gave does not exist in the EMR or the EMR rejected a field."""

    def __init__(self, message: str, *, field: str | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.field = field


class Rejected(AdapterError):
    """The EMR refused the request for a reason we cannot classify further (4xx)."""


class AlreadyCancelled(Rejected):
    """The change needs a live appointment and this one is cancelled (e.g. a reschedule): the caller's request
    conflicts with the record's state, which the adapter saw before it asked the EMR anything."""


class AuthFailed(AdapterError):
    """The EMR refused the stored credentials."""


class RateLimited(AdapterError):
    def __init__(self, message: str, *, retry_after: int, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Unavailable(AdapterError):
    """The EMR answered 5xx or could not be reached; nothing was written."""


class Timeout(AdapterError):
    """The EMR did not answer in time on a read."""


class OutcomeUnknown(AdapterError):
    """A write may or may not have happened and reconciliation could not tell."""

    def __init__(self, message: str, *, operation_id: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.operation_id = operation_id


class Unsupported(AdapterError):
    """The EMR cannot do this operation at all."""


class ContractChanged(AdapterError):
    """The EMR answered with a shape the adapter cannot read (a required field missing or renamed, another type).

    `path` is where (`$.treatments[0].scheduled_duration`) and `problem` what (`missing required field`,
    `expected int, got str`): names and types only, never a value, so both may be shown and logged.
    """

    def __init__(self, message: str, *, path: str, problem: str, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.path = path
        self.problem = problem


class WriteMismatch(AdapterError):
    """The EMR stored something other than what was asked (another zone, another length, another practitioner).

    The write has been undone (`undone`) or could not be (`undone` False: a person must look at `appointment_id`).
    `differences` are field names with minutes where they are times; `settings` name what governs each field.
    """

    def __init__(
        self,
        message: str,
        *,
        differences: list[tuple[str, int | None]],
        settings: dict[str, str],
        undone: bool,
        appointment_id: str,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.differences = differences
        self.settings = settings
        self.undone = undone
        self.appointment_id = appointment_id
