"""Plain async factories: build users, organisations and tokens through the services."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts import service as accounts_service
from market.accounts.models import User
from market.organisations import service as organisations_service
from market.organisations.models import Membership, Organisation

PASSWORD = "correct-horse-42"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.cn"


async def make_user(
    session: AsyncSession, *, email: str | None = None, name: str = "测试用户"
) -> User:
    user = await accounts_service.register(
        session, email=email or unique_email(), password=PASSWORD, display_name=name
    )
    await session.flush()
    return user


async def make_org(
    session: AsyncSession,
    *,
    owner: User,
    kind: str = "cooperative",
    region_code: str = "620421",
    name_zh: str | None = None,
    verified: bool = True,
) -> Organisation:
    organisation = await organisations_service.create_organisation(
        session,
        creator_id=owner.id,
        data={
            "kind": kind,
            "name_zh": name_zh or f"测试{kind}{uuid.uuid4().hex[:4]}",
            "region_code": region_code,
        },
    )
    if verified:
        await organisations_service.verify(
            session, organisation_id=organisation.id, operator_id=owner.id
        )
    return organisation


async def add_member(
    session: AsyncSession, organisation: Organisation, user: User, role: str
) -> None:
    session.add(Membership(organisation_id=organisation.id, user_id=user.id, role=role))
    await session.flush()


async def token_for(
    session: AsyncSession, user: User, *, ttl: dt.timedelta = dt.timedelta(hours=1)
) -> str:
    secret, _ = await accounts_service.issue_token(session, user=user, ttl=ttl)
    await session.flush()
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def platform_operator(session: AsyncSession) -> tuple[User, str]:
    user = await make_user(session, name="平台运营")
    await make_org(session, owner=user, kind="platform", region_code="110000")
    return user, await token_for(session, user)


async def member_with_token(
    session: AsyncSession, *, kind: str = "cooperative", region_code: str = "620421"
) -> tuple[User, Organisation, str]:
    """An owner of a fresh verified organisation, with a bearer token."""
    user = await make_user(session)
    organisation = await make_org(session, owner=user, kind=kind, region_code=region_code)
    return user, organisation, await token_for(session, user)
