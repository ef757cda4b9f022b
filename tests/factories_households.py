"""Factories for household tests: valid ID numbers, registry CSVs, officials with audit regions,
registered households with poor periods, and memberships."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from market.accounts.models import User
from market.households import service as households_service
from market.households.models import CooperativeMember, Household, PoorStatusPeriod
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from tests.factories import make_org, make_user, token_for

HEADER = households_service.REGISTRY_COLUMNS


def id_number(serial: int, *, region: str = "620421", birth: str = "19800101") -> str:
    """A resident ID number that passes the GB 11643 check (serial 0-999)."""
    first17 = f"{region}{birth}{serial:03d}"
    return first17 + households_service.id_check_character(first17)


def registry_csv(rows: list[dict[str, str]], *, header: tuple[str, ...] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, "") for name in header})
    return out.getvalue()


def registry_row(
    registry_id: str,
    serial: int,
    *,
    county_code: str = "620421",
    head_name: str = "张建国",
    phone: str = "13812345678",
    village: str = "东湾镇砂梁村",
    poor_from: str = "",
    poor_until: str = "",
) -> dict[str, str]:
    return {
        "registry_id": registry_id,
        "county_code": county_code,
        "head_name": head_name,
        "id_number": id_number(serial, region=county_code),
        "phone": phone,
        "village": village,
        "poor_from": poor_from,
        "poor_until": poor_until,
    }


async def official(
    session: AsyncSession,
    *,
    regions: tuple[str, ...] = ("620400",),
    region_code: str = "620400",
    verified: bool = True,
) -> tuple[User, Organisation, str]:
    """The owner of an authority organisation that audits `regions`, with a bearer token."""
    user = await make_user(session, name="乡村振兴局干部")
    authority = await make_org(
        session, owner=user, kind="authority", region_code=region_code, verified=verified
    )
    if regions:
        await organisations_service.set_audit_regions(
            session, organisation_id=authority.id, region_codes=list(regions), granted_by_id=user.id
        )
    return user, authority, await token_for(session, user)


async def registered_household(
    session: AsyncSession,
    *,
    key: bytes,
    registry_id: str | None = None,
    serial: int = 1,
    county_code: str = "620421",
    head_name: str = "张建国",
    phone: str | None = "13812345678",
    village: str | None = "东湾镇砂梁村",
    periods: tuple[tuple[dt.date, dt.date | None], ...] = (),
    registry_organisation: Organisation | None = None,
) -> Household:
    number = id_number(serial, region=county_code)
    household = Household(
        registry_id=registry_id or f"R-{uuid.uuid4().hex[:10]}",
        county_code=county_code,
        head_name=head_name,
        id_number_hash=households_service.hash_id_number(key, number),
        id_number_last4=number[-4:],
        phone=phone,
        village=village,
        registry_organisation_id=registry_organisation.id if registry_organisation else None,
    )
    session.add(household)
    await session.flush()
    for valid_from, valid_until in periods:
        session.add(
            PoorStatusPeriod(
                household_id=household.id, valid_from=valid_from, valid_until=valid_until
            )
        )
    await session.flush()
    return household


async def membership(
    session: AsyncSession,
    *,
    cooperative: Organisation,
    household: Household,
    joined_on: dt.date = dt.date(2020, 1, 1),
    left_on: dt.date | None = None,
) -> CooperativeMember:
    member = CooperativeMember(
        cooperative_id=cooperative.id,
        household_id=household.id,
        joined_on=joined_on,
        left_on=left_on,
    )
    session.add(member)
    await session.flush()
    return member
