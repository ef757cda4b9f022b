"""Organisations, who may act for them, members, invitations, verification and audit regions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts import security
from market.accounts import service as accounts_service
from market.accounts.models import User
from market.db import among, utcnow
from market.deps import Principal
from market.errors import Conflict, Forbidden, Invalid, NotFound
from market.organisations import states
from market.organisations.models import AuthorityRegion, Invitation, Membership, Organisation
from market.pagination import PageParams, paginate
from market.regions import service as regions_service

ROLE_RANK = {"viewer": 0, "staff": 1, "owner": 2}


@dataclass(frozen=True)
class Access:
    """What the caller may do for one organisation."""

    organisation: Organisation
    role: str  # owner | staff | viewer, or "platform" for an operator looking in
    via_api_key: bool = False


def _not_found() -> NotFound:
    return NotFound("No such organisation, or you are not a member of it.")


async def is_platform_operator(session: AsyncSession, principal: Principal) -> bool:
    """Owners and staff of a verified platform organisation operate the marketplace."""
    if principal.user_id is None:
        return False
    found = await session.scalar(
        select(Membership.user_id)
        .join(Organisation, Organisation.id == Membership.organisation_id)
        .where(
            Membership.user_id == principal.user_id,
            Membership.role.in_(("owner", "staff")),
            Organisation.kind == "platform",
            Organisation.verification_status == "verified",
        )
        .limit(1)
    )
    return found is not None


async def require_platform_operator(session: AsyncSession, principal: Principal) -> None:
    if not await is_platform_operator(session, principal):
        raise Forbidden("Only platform operators may do this.", code="platform_only")


async def access(
    session: AsyncSession,
    principal: Principal,
    organisation_id: uuid.UUID,
    *,
    role: str = "viewer",
    scope: str | None = None,
    platform_may_view: bool = True,
) -> Access:
    """Authorise the caller for an organisation: 404 to outsiders, 403 when the role is short."""
    organisation = await session.get(Organisation, organisation_id)
    if principal.is_api_key:
        if organisation is None or principal.api_key_organisation_id != organisation_id:
            raise _not_found()
        if role == "owner":
            raise Forbidden("API keys cannot do this; an owner must sign in.", code="owner_only")
        if scope is None or scope not in principal.scopes:
            raise Forbidden(
                f"This API key lacks the scope {scope!r} needed here.", code="missing_scope"
            )
        return Access(organisation, "staff", via_api_key=True)
    if organisation is None:
        raise _not_found()
    member_role = await session.scalar(
        select(Membership.role).where(
            Membership.organisation_id == organisation_id,
            Membership.user_id == principal.user_id,
        )
    )
    if member_role is None:
        if (
            platform_may_view
            and role == "viewer"
            and await is_platform_operator(session, principal)
        ):
            return Access(organisation, "platform")
        raise _not_found()
    if ROLE_RANK[member_role] < ROLE_RANK[role]:
        raise Forbidden(
            f"This needs the {role} role in {organisation.name_zh}; you are {member_role}.",
            code="role_too_low",
        )
    return Access(organisation, member_role)


async def cooperative_access(
    session: AsyncSession,
    principal: Principal,
    organisation_id: uuid.UUID,
    *,
    domain: str,
    write: bool = False,
) -> Organisation:
    """The cooperative the caller acts for in `domain` (households, catalog, sourcing,
    listings, orders): reads need viewer or the `<domain>:read` scope, writes staff or
    `<domain>:write`; 404 to outsiders, 403 `not_a_cooperative` for other kinds."""
    return await kind_access(
        session,
        principal,
        organisation_id,
        kind="cooperative",
        domain=domain,
        write=write,
        why="only cooperatives keep households, products, lots and listings and fulfil orders",
    )


async def buyer_access(
    session: AsyncSession,
    principal: Principal,
    organisation_id: uuid.UUID,
    *,
    domain: str,
    write: bool = False,
) -> Organisation:
    """The buyer the caller acts for in `domain` (orders, bids): as cooperative_access, with
    403 `not_a_buyer` for other kinds."""
    return await kind_access(
        session,
        principal,
        organisation_id,
        kind="buyer",
        domain=domain,
        write=write,
        why="only buyers place orders and bids",
    )


async def kind_access(
    session: AsyncSession,
    principal: Principal,
    organisation_id: uuid.UUID,
    *,
    kind: str,
    domain: str,
    write: bool,
    why: str,
) -> Organisation:
    found = await access(
        session,
        principal,
        organisation_id,
        role="staff" if write else "viewer",
        scope=f"{domain}:{'write' if write else 'read'}",
    )
    if found.organisation.kind != kind:
        raise Forbidden(
            f"{found.organisation.name_zh} is a {found.organisation.kind}; {why}.",
            code=f"not_a_{kind}",
        )
    return found.organisation


# ---------------------------------------------------------------- organisations


async def create_organisation(
    session: AsyncSession, *, creator_id: uuid.UUID, data: dict[str, Any]
) -> Organisation:
    """Register an organisation (pending verification); its creator becomes the owner."""
    await regions_service.require_region(session, data["region_code"], field="region_code")
    organisation = Organisation(**data)
    session.add(organisation)
    await session.flush()
    session.add(Membership(organisation_id=organisation.id, user_id=creator_id, role="owner"))
    await session.flush()
    await session.refresh(organisation)
    return organisation


async def list_for_user(
    session: AsyncSession, *, user_id: uuid.UUID, page: PageParams
) -> tuple[list[Organisation], str | None]:
    stmt = (
        select(Organisation)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(Membership.user_id == user_id)
    )
    return await paginate(session, stmt, page, [Organisation.created_at, Organisation.id])


async def update_organisation(
    session: AsyncSession, organisation: Organisation, changes: dict[str, Any]
) -> Organisation:
    for name, value in changes.items():
        setattr(organisation, name, value)
    organisation.updated_at = utcnow()
    await session.flush()
    return organisation


async def memberships_of(
    session: AsyncSession, user_id: uuid.UUID
) -> list[tuple[Organisation, str]]:
    rows = await session.execute(
        select(Organisation, Membership.role)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(Membership.user_id == user_id)
        .order_by(Organisation.created_at)
    )
    return [(org, role) for org, role in rows.all()]


# ---------------------------------------------------------------- verification


async def list_by_status(
    session: AsyncSession, *, status: str | None, kind: str | None, page: PageParams
) -> tuple[list[Organisation], str | None]:
    stmt = select(Organisation)
    if status:
        stmt = stmt.where(Organisation.verification_status == status)
    if kind:
        stmt = stmt.where(Organisation.kind == kind)
    return await paginate(session, stmt, page, [Organisation.created_at, Organisation.id])


async def get_organisation(session: AsyncSession, *, organisation_id: uuid.UUID) -> Organisation:
    """Any organisation by id, for facts other domains need (its region, its name)."""
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None:
        raise NotFound("No such organisation.")
    return organisation


async def names_of(
    session: AsyncSession, organisation_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Chinese names by organisation id, in one query."""
    rows = await session.execute(
        select(Organisation.id, Organisation.name_zh).where(
            Organisation.id.in_(set(organisation_ids))
        )
    )
    return {organisation_id: name for organisation_id, name in rows}


async def _locked(session: AsyncSession, organisation_id: uuid.UUID) -> Organisation:
    organisation = await session.scalar(
        select(Organisation).where(Organisation.id == organisation_id).with_for_update()
    )
    if organisation is None:
        raise NotFound("No such organisation.")
    return organisation


async def verify(
    session: AsyncSession, *, organisation_id: uuid.UUID, operator_id: uuid.UUID
) -> Organisation:
    organisation = await _locked(session, organisation_id)
    organisation.verification_status = states.transition(organisation.verification_status, "verify")
    organisation.rejection_reason = None
    organisation.verified_at = utcnow()
    organisation.verified_by_id = operator_id
    await session.flush()
    return organisation


async def reject(
    session: AsyncSession, *, organisation_id: uuid.UUID, operator_id: uuid.UUID, reason: str
) -> Organisation:
    organisation = await _locked(session, organisation_id)
    organisation.verification_status = states.transition(organisation.verification_status, "reject")
    organisation.rejection_reason = reason
    organisation.verified_at = None
    organisation.verified_by_id = operator_id
    await session.flush()
    return organisation


async def resubmit(session: AsyncSession, organisation: Organisation) -> Organisation:
    organisation.verification_status = states.transition(
        organisation.verification_status, "resubmit"
    )
    organisation.rejection_reason = None
    await session.flush()
    return organisation


# ---------------------------------------------------------------- members


async def list_members(
    session: AsyncSession, organisation_id: uuid.UUID
) -> list[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.organisation_id == organisation_id)
        .order_by(Membership.created_at, User.email)
    )
    return [(m, u) for m, u in rows.all()]


@dataclass(frozen=True)
class Member:
    """Who a member is, as a notification's e-mail needs it (no credentials)."""

    user_id: uuid.UUID
    email: str
    display_name: str


async def members_of(
    session: AsyncSession, organisation_ids: Iterable[uuid.UUID], *, roles: tuple[str, ...]
) -> dict[uuid.UUID, list[Member]]:
    """The users holding one of `roles` in each organisation, in list_members' order, in one
    query (e.g. the recipients of many notifications at once)."""
    ids = list(set(organisation_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Membership.organisation_id, User.id, User.email, User.display_name)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.organisation_id == among(ids),
            Membership.role.in_(roles),
        )
        .order_by(Membership.organisation_id, Membership.created_at, User.email)
    )
    members: dict[uuid.UUID, list[Member]] = {}
    for organisation_id, user_id, email, display_name in rows:
        members.setdefault(organisation_id, []).append(Member(user_id, email, display_name))
    return members


async def add_member(
    session: AsyncSession, *, organisation_id: uuid.UUID, email: str, role: str
) -> tuple[Membership, User]:
    user = await accounts_service.find_user_by_email(session, email)
    if user is None:
        raise Invalid.field(
            "email", "No account uses this e-mail address; send an invitation instead."
        )
    exists = await session.get(Membership, (organisation_id, user.id))
    if exists is not None:
        raise Conflict(f"{email} is already a member ({exists.role}).", code="already_member")
    membership = Membership(organisation_id=organisation_id, user_id=user.id, role=role)
    session.add(membership)
    await session.flush()
    await session.refresh(membership)
    return membership, user


async def _owners_left(session: AsyncSession, organisation_id: uuid.UUID) -> int:
    # lock the owner rows so that two concurrent removals cannot both leave zero owners
    owners = await session.scalars(
        select(Membership.user_id)
        .where(Membership.organisation_id == organisation_id, Membership.role == "owner")
        .with_for_update()
    )
    return len(list(owners))


async def change_role(
    session: AsyncSession, *, organisation_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> tuple[Membership, User]:
    membership = await session.get(Membership, (organisation_id, user_id))
    if membership is None:
        raise NotFound("This user is not a member of the organisation.")
    if (
        membership.role == "owner"
        and role != "owner"
        and await _owners_left(session, organisation_id) <= 1
    ):
        raise Conflict("An organisation needs at least one owner.", code="last_owner")
    membership.role = role
    await session.flush()
    return membership, await accounts_service.get_user(session, user_id)


async def remove_member(
    session: AsyncSession, *, organisation_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    membership = await session.get(Membership, (organisation_id, user_id))
    if membership is None:
        raise NotFound("This user is not a member of the organisation.")
    if membership.role == "owner" and await _owners_left(session, organisation_id) <= 1:
        raise Conflict(
            "The last owner cannot leave; make someone else owner first.", code="last_owner"
        )
    await session.execute(
        delete(Membership).where(
            Membership.organisation_id == organisation_id, Membership.user_id == user_id
        )
    )


# ---------------------------------------------------------------- invitations


async def invite(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    email: str,
    role: str,
    invited_by_id: uuid.UUID | None,
    ttl: dt.timedelta,
) -> tuple[str, Invitation]:
    secret = security.new_secret(security.INVITATION_PREFIX)
    invitation = Invitation(
        organisation_id=organisation_id,
        email=email,
        role=role,
        token_hash=security.secret_hash(secret),
        invited_by_id=invited_by_id,
        expires_at=utcnow() + ttl,
    )
    session.add(invitation)
    await session.flush()
    await session.refresh(invitation)
    return secret, invitation


async def list_invitations(
    session: AsyncSession, *, organisation_id: uuid.UUID, page: PageParams
) -> tuple[list[Invitation], str | None]:
    """The organisation's invitations, newest first: open, accepted, revoked and expired."""
    stmt = select(Invitation).where(Invitation.organisation_id == organisation_id)
    return await paginate(
        session, stmt, page, [Invitation.created_at, Invitation.id], descending=True
    )


async def revoke_invitation(
    session: AsyncSession, *, organisation_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation:
    """Withdraw an invitation that is still open: its token no longer lets anyone in. 404 for
    another organisation's; 409 naming what became of one already accepted; revoking twice
    changes nothing."""
    invitation = await session.scalar(
        select(Invitation)
        .where(Invitation.id == invitation_id, Invitation.organisation_id == organisation_id)
        .with_for_update()
    )
    if invitation is None:
        raise NotFound("No such invitation.")
    if invitation.accepted_at is not None:
        raise Conflict(
            "This invitation was already accepted: remove the member instead.",
            code="invitation_accepted",
        )
    if invitation.revoked_at is None:
        invitation.revoked_at = utcnow()
        await session.flush()
    return invitation


def invitation_status(invitation: Invitation, now: dt.datetime) -> str:
    """open, accepted, revoked or expired."""
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    return "expired" if invitation.expires_at <= now else "open"


async def accept_invitation(
    session: AsyncSession, *, user_id: uuid.UUID, token: str
) -> tuple[Membership, Organisation]:
    invitation = await session.scalar(
        select(Invitation)
        .where(Invitation.token_hash == security.secret_hash(token))
        .with_for_update()
    )
    user = await accounts_service.get_user(session, user_id)
    if (
        invitation is None
        or invitation.revoked_at is not None
        or invitation.accepted_at is not None
        or invitation.expires_at <= utcnow()
    ):
        raise NotFound("This invitation is unknown, already used or expired.")
    if invitation.email.lower() != user.email.lower():
        raise Forbidden(
            "This invitation was sent to another e-mail address.", code="invitation_email"
        )
    if invitation.invited_by_id is not None:
        # it speaks for its sender: an owner since removed or demoted grants nothing any more
        # (not even to an address of their own, to come back as owner)
        sender = await session.get(
            Membership, (invitation.organisation_id, invitation.invited_by_id)
        )
        if sender is None or sender.role != "owner":
            raise NotFound(
                "This invitation is no longer valid: whoever sent it is no longer an owner of "
                "the organisation. Ask an owner for a new one."
            )
    existing = await session.get(Membership, (invitation.organisation_id, user_id))
    if existing is not None:
        raise Conflict(f"You are already a member ({existing.role}).", code="already_member")
    membership = Membership(
        organisation_id=invitation.organisation_id, user_id=user_id, role=invitation.role
    )
    session.add(membership)
    invitation.accepted_at = utcnow()
    await session.flush()
    organisation = await session.get(Organisation, invitation.organisation_id)
    assert organisation is not None
    return membership, organisation


# ---------------------------------------------------------------- authority regions


async def audit_regions(session: AsyncSession, organisation_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(AuthorityRegion.region_code)
        .where(AuthorityRegion.organisation_id == organisation_id)
        .order_by(AuthorityRegion.region_code)
    )
    return list(rows)


async def set_audit_regions(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    region_codes: list[str],
    granted_by_id: uuid.UUID,
) -> list[str]:
    organisation = await _locked(session, organisation_id)
    if organisation.kind != "authority":
        raise Invalid.field(
            "organisation", "Only authority organisations audit regions.", code="not_authority"
        )
    for index, code in enumerate(region_codes):
        await regions_service.require_region(session, code, field=f"region_codes.{index}")
    await session.execute(
        delete(AuthorityRegion).where(AuthorityRegion.organisation_id == organisation_id)
    )
    for code in sorted(set(region_codes)):
        session.add(
            AuthorityRegion(
                organisation_id=organisation_id, region_code=code, granted_by_id=granted_by_id
            )
        )
    await session.flush()
    return await audit_regions(session, organisation_id)


async def authority_scopes_of(session: AsyncSession, principal: Principal) -> list[str]:
    """Region codes the caller may act on as an official (verified authorities only)."""
    if principal.user_id is None:
        return []
    rows = await session.scalars(
        select(AuthorityRegion.region_code)
        .join(Organisation, Organisation.id == AuthorityRegion.organisation_id)
        .join(Membership, Membership.organisation_id == Organisation.id)
        .where(
            Membership.user_id == principal.user_id,
            Membership.role.in_(("owner", "staff")),
            Organisation.kind == "authority",
            Organisation.verification_status == "verified",
        )
    )
    return sorted(set(rows))
