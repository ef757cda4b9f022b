"""HTTP: organisations, members, invitations, and the platform's verification queue."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from market.db import utcnow
from market.deps import CurrentUserId, Idempotent, PrincipalDep, SessionDep, SettingsDep
from market.organisations import service
from market.organisations.models import Invitation
from market.organisations.schemas import (
    AuditRegionsSet,
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberAdd,
    MemberRead,
    MemberUpdate,
    OrganisationCreate,
    OrganisationRead,
    OrganisationUpdate,
    Rejection,
)
from market.pagination import Page, PageDep
from market.routing import MarketRoute

router = APIRouter(route_class=MarketRoute)
MEMBERS = "members"
ORGS = "organisations"
PLATFORM = "platform"


def _member(membership: object, user: object) -> MemberRead:
    return MemberRead(
        user_id=user.id,  # type: ignore[attr-defined]
        email=user.email,  # type: ignore[attr-defined]
        display_name=user.display_name,  # type: ignore[attr-defined]
        role=membership.role,  # type: ignore[attr-defined]
        joined_at=membership.created_at,  # type: ignore[attr-defined]
    )


@router.post(
    "/organisations",
    tags=[ORGS],
    status_code=status.HTTP_201_CREATED,
    response_model=OrganisationRead,
    summary="Register an organisation",
)
async def create_organisation(
    body: OrganisationCreate, user_id: CurrentUserId, session: SessionDep, _: Idempotent
) -> OrganisationRead:
    """The caller becomes its owner. It stays `pending` until the platform verifies it."""
    organisation = await service.create_organisation(
        session, creator_id=user_id, data=body.model_dump()
    )
    return OrganisationRead.model_validate(organisation)


@router.get(
    "/organisations",
    tags=[ORGS],
    response_model=Page[OrganisationRead],
    summary="My organisations",
)
async def list_organisations(
    user_id: CurrentUserId, session: SessionDep, page: PageDep
) -> Page[OrganisationRead]:
    rows, cursor = await service.list_for_user(session, user_id=user_id, page=page)
    return Page(items=[OrganisationRead.model_validate(o) for o in rows], next_cursor=cursor)


@router.get(
    "/organisations/{organisation_id}",
    tags=[ORGS],
    response_model=OrganisationRead,
    summary="An organisation's profile (members only)",
)
async def get_organisation(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> OrganisationRead:
    found = await service.access(session, principal, organisation_id, scope="organisation:read")
    return OrganisationRead.model_validate(found.organisation)


@router.patch(
    "/organisations/{organisation_id}",
    tags=[ORGS],
    response_model=OrganisationRead,
    summary="Update the profile (owner)",
)
async def update_organisation(
    organisation_id: uuid.UUID,
    body: OrganisationUpdate,
    principal: PrincipalDep,
    session: SessionDep,
) -> OrganisationRead:
    found = await service.access(session, principal, organisation_id, role="owner")
    changes = body.model_dump(exclude_unset=True)
    organisation = await service.update_organisation(session, found.organisation, changes)
    return OrganisationRead.model_validate(organisation)


@router.post(
    "/organisations/{organisation_id}/resubmit",
    tags=[ORGS],
    response_model=OrganisationRead,
    summary="Ask for verification again after a rejection (owner)",
)
async def resubmit(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> OrganisationRead:
    found = await service.access(session, principal, organisation_id, role="owner")
    return OrganisationRead.model_validate(await service.resubmit(session, found.organisation))


# ---------------------------------------------------------------- members


@router.get(
    "/organisations/{organisation_id}/members",
    tags=[MEMBERS],
    response_model=list[MemberRead],
    summary="List members",
)
async def list_members(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[MemberRead]:
    await service.access(session, principal, organisation_id, scope="members:read")
    return [_member(m, u) for m, u in await service.list_members(session, organisation_id)]


@router.post(
    "/organisations/{organisation_id}/members",
    tags=[MEMBERS],
    status_code=status.HTTP_201_CREATED,
    response_model=MemberRead,
    summary="Add an existing account as a member (owner)",
)
async def add_member(
    organisation_id: uuid.UUID,
    body: MemberAdd,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> MemberRead:
    await service.access(session, principal, organisation_id, role="owner")
    membership, user = await service.add_member(
        session, organisation_id=organisation_id, email=body.email, role=body.role
    )
    return _member(membership, user)


@router.patch(
    "/organisations/{organisation_id}/members/{user_id}",
    tags=[MEMBERS],
    response_model=MemberRead,
    summary="Change a member's role (owner)",
)
async def change_role(
    organisation_id: uuid.UUID,
    user_id: uuid.UUID,
    body: MemberUpdate,
    principal: PrincipalDep,
    session: SessionDep,
) -> MemberRead:
    await service.access(session, principal, organisation_id, role="owner")
    membership, user = await service.change_role(
        session, organisation_id=organisation_id, user_id=user_id, role=body.role
    )
    return _member(membership, user)


@router.delete(
    "/organisations/{organisation_id}/members/{user_id}",
    tags=[MEMBERS],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (owner, or the member themself)",
)
async def remove_member(
    organisation_id: uuid.UUID, user_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    leaving_self = principal.user_id == user_id
    await service.access(
        session, principal, organisation_id, role="viewer" if leaving_self else "owner"
    )
    await service.remove_member(session, organisation_id=organisation_id, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/organisations/{organisation_id}/invitations",
    tags=[MEMBERS],
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationCreated,
    summary="Invite someone by e-mail (owner)",
)
async def invite(
    organisation_id: uuid.UUID,
    body: InvitationCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> InvitationCreated:
    """Returns the invitation token once; the invitee accepts it after signing in."""
    import datetime as dt

    await service.access(session, principal, organisation_id, role="owner")
    token, invitation = await service.invite(
        session,
        organisation_id=organisation_id,
        email=body.email,
        role=body.role,
        invited_by_id=principal.user_id,
        ttl=dt.timedelta(hours=settings.invitation_ttl_hours),
    )
    return InvitationCreated(**InvitationRead.model_validate(invitation).model_dump(), token=token)


def _invitation_read(invitation: Invitation) -> InvitationRead:
    status_now = service.invitation_status(invitation, utcnow())
    return InvitationRead.model_validate(invitation).model_copy(update={"status": status_now})


@router.get(
    "/organisations/{organisation_id}/invitations",
    tags=[MEMBERS],
    response_model=Page[InvitationRead],
    summary="The organisation's invitations, newest first (owner)",
)
async def list_invitations(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[InvitationRead]:
    await service.access(session, principal, organisation_id, role="owner")
    rows, cursor = await service.list_invitations(
        session, organisation_id=organisation_id, page=page
    )
    return Page(items=[_invitation_read(i) for i in rows], next_cursor=cursor)


@router.delete(
    "/organisations/{organisation_id}/invitations/{invitation_id}",
    tags=[MEMBERS],
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an open invitation (owner)",
    description="Its token no longer lets anyone in. 409 `invitation_accepted` for one already "
    "accepted (remove the member instead).",
)
async def revoke_invitation(
    organisation_id: uuid.UUID,
    invitation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> Response:
    await service.access(session, principal, organisation_id, role="owner")
    await service.revoke_invitation(
        session, organisation_id=organisation_id, invitation_id=invitation_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/invitations/accept",
    tags=[MEMBERS],
    response_model=OrganisationRead,
    summary="Accept an invitation",
)
async def accept_invitation(
    body: InvitationAccept, user_id: CurrentUserId, session: SessionDep
) -> OrganisationRead:
    _, organisation = await service.accept_invitation(session, user_id=user_id, token=body.token)
    return OrganisationRead.model_validate(organisation)


# ---------------------------------------------------------------- platform


@router.get(
    "/platform/organisations",
    tags=[PLATFORM],
    response_model=Page[OrganisationRead],
    summary="Organisations by verification status (platform)",
)
async def platform_list(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    verification_status: Annotated[
        Literal["pending", "verified", "rejected"] | None, Query()
    ] = "pending",
    kind: Annotated[
        Literal["cooperative", "buyer", "organiser", "authority", "platform"] | None, Query()
    ] = None,
) -> Page[OrganisationRead]:
    await service.require_platform_operator(session, principal)
    rows, cursor = await service.list_by_status(
        session, status=verification_status, kind=kind, page=page
    )
    return Page(items=[OrganisationRead.model_validate(o) for o in rows], next_cursor=cursor)


@router.post(
    "/platform/organisations/{organisation_id}/verify",
    tags=[PLATFORM],
    response_model=OrganisationRead,
    summary="Verify an organisation (platform)",
)
async def platform_verify(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> OrganisationRead:
    await service.require_platform_operator(session, principal)
    assert principal.user_id is not None
    organisation = await service.verify(
        session, organisation_id=organisation_id, operator_id=principal.user_id
    )
    return OrganisationRead.model_validate(organisation)


@router.post(
    "/platform/organisations/{organisation_id}/reject",
    tags=[PLATFORM],
    response_model=OrganisationRead,
    summary="Reject an organisation with a reason (platform)",
)
async def platform_reject(
    organisation_id: uuid.UUID, body: Rejection, principal: PrincipalDep, session: SessionDep
) -> OrganisationRead:
    await service.require_platform_operator(session, principal)
    assert principal.user_id is not None
    organisation = await service.reject(
        session, organisation_id=organisation_id, operator_id=principal.user_id, reason=body.reason
    )
    return OrganisationRead.model_validate(organisation)


@router.get(
    "/organisations/{organisation_id}/audit-regions",
    tags=[ORGS],
    response_model=list[str],
    summary="Regions an authority may audit",
)
async def get_audit_regions(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> list[str]:
    await service.access(session, principal, organisation_id, scope="organisation:read")
    return await service.audit_regions(session, organisation_id)


@router.put(
    "/platform/organisations/{organisation_id}/audit-regions",
    tags=[PLATFORM],
    response_model=list[str],
    summary="Set the regions an authority may audit (platform)",
)
async def set_audit_regions(
    organisation_id: uuid.UUID, body: AuditRegionsSet, principal: PrincipalDep, session: SessionDep
) -> list[str]:
    await service.require_platform_operator(session, principal)
    assert principal.user_id is not None
    return await service.set_audit_regions(
        session,
        organisation_id=organisation_id,
        region_codes=body.region_codes,
        granted_by_id=principal.user_id,
    )
