"""`locations verify`: read-only probes of a live EMR account, and what it shows about settings evidence marks
uncertain. Names, paths and types only: a report never carries a value read from the account."""

from __future__ import annotations

import enum

from schemas.common import Out


class ProbeStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to probe (e.g. no appointment in the window to read)


class ProbeResult(Out):
    name: str
    status: ProbeStatus
    detail: str | None = None
    field_path: str | None = None  # where a response stopped decoding (`$.treatments[0].scheduled_duration`)
    seen: str | None = None  # what was there instead (`missing required field`, `expected int, got str`)


class SettingCheck(Out):
    """One setting the evidence marks uncertain: what is configured, what the account shows, and where the doubt
    comes from. `agrees` None: the account shows nothing either way (e.g. no existing session to infer from)."""

    setting: str
    configured: str
    observed: str | None = None
    agrees: bool | None = None
    source: str = ""
    # `locations add` stores `observed` as this setting when the operator's --settings did not set it (e.g. a unit
    # inferred from the account's own sessions); `verify` only reports.
    adopt: bool = False


class VerifyReport(Out):
    emr: str
    ok: bool
    probes: list[ProbeResult]
    settings: list[SettingCheck]
    location_id: str | None = None
