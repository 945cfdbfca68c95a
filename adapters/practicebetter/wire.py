"""Practice Better's own request and response shapes (as integrators read the vendor swagger; see the notes)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class Wire(msgspec.Struct, kw_only=True):
    """Responses: unknown fields are ignored (the API is beta and grows)."""


class Page(Wire, Generic[T]):
    """Every list operation: `{count, hasMore, items}`, paged with `after_id` / `before_id` / `limit`."""

    count: int = 0
    hasMore: bool = False
    items: list[T] = msgspec.field(default_factory=list)


class TokenResponse(Wire):
    access_token: str
    expires_in: int | None = None
    token_type: str | None = None


class Profile(Wire):
    firstName: str | None = None
    lastName: str | None = None
    emailAddress: str | None = None
    mobilePhone: str | None = None
    homePhone: str | None = None
    dateOfBirth: str | None = None


class ClientAccount(Wire):
    id: str | None = None
    emailAddress: str | None = None


class ClientRecord(Wire):
    id: str
    isActive: bool = True
    status: str | None = None
    dateCreated: datetime | None = None
    dateModified: datetime | None = None
    client: ClientAccount | None = None
    profile: Profile = msgspec.field(default_factory=Profile)


class MemberProfile(Wire):
    firstName: str | None = None
    lastName: str | None = None
    emailAddress: str | None = None


class Member(Wire):
    id: str
    activationStatus: str | None = None
    isOwner: bool = False
    isPractitioner: bool = False
    profile: MemberProfile = msgspec.field(default_factory=MemberProfile)


class Members(Wire):
    """The envelope key is UNCONFIRMED (`members` or `items`): both are read."""

    members: list[Member] | None = None
    items: list[Member] | None = None


class Service(Wire):
    id: str
    name: str
    duration: int | None = None  # minutes (swagger readers: w6w list-services, idx:55687388298)
    serviceTypes: list[str] | None = None
    isActive: bool = True


class AvailableSlot(Wire):
    startDate: str
    endDate: str | None = None
    duration: str | None = None  # ISO 8601, e.g. "PT1H"


class SlotsEnvelope(Wire):
    items: list[AvailableSlot] | None = None
    slots: list[AvailableSlot] | None = None


class RecordRef(Wire):
    id: str
    name: str | None = None


class ConsultantRef(Wire):
    id: str | None = None
    profile: MemberProfile | None = None


class Session(Wire):
    """`endDate` is required: it is the stored end write verification compares (the production integrator reads it
    off every created session); `duration` is in the account's unit, only used to learn that unit."""

    id: str
    sessionDate: str
    endDate: str
    duration: int | None = None
    cancelled: bool = False
    serviceId: str | None = None
    serviceType: str | None = None
    clientRecord: RecordRef | None = None
    consultant: ConsultantRef | None = None
    notes: str | None = None
    confirmationStatus: str | None = None
    dateCreated: datetime | None = None
    dateModified: datetime | None = None


# ---------------------------------------------------------------------------------------------- requests


class Body(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Request bodies: fields left unset are not sent."""


class SessionCreate(Body):
    clientRecordId: str
    serviceId: str
    serviceType: str
    sessionDate: str
    duration: int
    ignoreConflict: bool  # no default: always sent, so a conflict is Practice Better's 409, whatever its default
    notify: bool
    asConsultantId: str | None = None
    notes: str | None = None


class SessionDateUpdate(Body):
    sessionDate: str
    duration: int
    ignoreConflict: bool


class SessionCancel(Body):
    notify: bool  # always sent: Practice Better re-sends its e-mail on every cancel that asks for it
    notes: str | None = None


class ProfileCreate(Body):
    """`firstName`, `lastName` and `emailAddress` are required by the vendor's schema (w6w, from the swagger)."""

    firstName: str
    lastName: str
    emailAddress: str
    mobilePhone: str | None = None
    dateOfBirth: str | None = None


class ClientRecordCreate(Body):
    profile: ProfileCreate
    isActive: bool = True
    sendInvitation: bool = False  # True would e-mail a portal invitation: never from the gateway


# ---------------------------------------------------------------------------------------------- webhooks


class WebhookResource(msgspec.Struct, kw_only=True):
    id: str | None = None


class WebhookNotification(msgspec.Struct, kw_only=True):
    """The delivery envelope is not in the swagger: integrators read these alternatives, so does the gateway."""

    eventType: str | None = None
    event_type: str | None = None
    type: str | None = None
    resourceId: str | None = None
    resource_id: str | None = None
    data: WebhookResource | None = None
    resource: WebhookResource | None = None

    def kind(self) -> str | None:
        return self.eventType or self.event_type or self.type

    def resource_identifier(self) -> str | None:
        nested = (self.data.id if self.data else None) or (self.resource.id if self.resource else None)
        return self.resourceId or self.resource_id or nested
