"""Why a push did not finish: a stable code for the sync log, GHL's status, and whether trying again can help.
Messages are the gateway's own words, never GHL's text (it can quote a patient's e-mail or phone)."""

from __future__ import annotations


class PushFailed(Exception):
    def __init__(self, code: str, message: str, *, ghl_status: int | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ghl_status = ghl_status
        self.final = final  # trying again cannot help (a conflict only a person can settle)
