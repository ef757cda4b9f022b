"""HTTP: the poor-household registry for officials, member households for cooperatives,
and logged reveals of personal data."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, UploadFile, status

from market.calendar import china_today
from market.deps import Idempotent, PrincipalDep, SessionDep, SettingsDep
from market.errors import Invalid
from market.households import service
from market.households.models import Household
from market.households.schemas import (
    HouseholdDetail,
    HouseholdRead,
    MemberHouseholdDetail,
    MemberHouseholdRead,
    MembershipEnd,
    MembershipLink,
    MembershipRead,
    PoorPeriodRead,
    RegistryImportResult,
    RevealCreate,
    RevealedHousehold,
    RevealRead,
    RowError,
    UnregisteredHouseholdCreate,
)
from market.organisations import service as organisations_service
from market.pagination import Page, PageDep
from market.routing import MarketRoute

router = APIRouter(tags=["households"], route_class=MarketRoute)
MAX_CSV_BYTES = 10_000_000
CountyCode = Annotated[
    str | None, Query(pattern=r"^[0-9]{6}$", examples=["620421"], description="One county.")
]


def _masked(household: Household) -> HouseholdRead:
    return HouseholdRead.model_validate(service.masked_view(household))


def _member(member: service.Member) -> MemberHouseholdRead:
    return MemberHouseholdRead(
        membership_id=member.membership.id,
        cooperative_id=member.membership.cooperative_id,
        household=_masked(member.household),
        joined_on=member.membership.joined_on,
        left_on=member.membership.left_on,
        poor=member.poor,
        as_of=member.as_of,
    )


# ---------------------------------------------------------------- the registry (officials)


@router.post(
    "/authority/households/import",
    response_model=RegistryImportResult,
    summary="Import the poor-household registry from CSV (authority)",
)
async def import_registry(
    file: UploadFile,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    mode: Annotated[
        service.ImportMode,
        Query(
            description="`partial`: valid households are written and bad rows reported; "
            "`all_or_nothing`: any bad row refuses the whole file (422 listing the rows)."
        ),
    ] = service.ImportMode.partial,
) -> RegistryImportResult:
    """CSV (UTF-8 with or without BOM, or GB18030) with the header
    `registry_id,county_code,head_name,id_number,phone,village,poor_from,poor_until`.

    One row per poor period (dates `YYYY-MM-DD`, both inclusive; `poor_until` empty while still
    poor); a household that was never poor has one row with `poor_from` empty. The file is
    authoritative for the households it names: their details and all their periods are
    replaced. `id_number` must pass the GB 11643 check; only its keyed hash and last four
    characters are stored. Rows whose county lies outside your audit regions are refused. Each
    bad row is reported with its line number; a household with a bad row is not imported at
    all. Re-importing the same file changes nothing (`unchanged`)."""
    official = await service.official_of(session, principal)
    data = await file.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise Invalid.field(
            "file",
            f"The file is larger than {MAX_CSV_BYTES} bytes; use `market households import`.",
        )
    result = await service.import_registry(
        session, data=data, key=settings.hashing_key(), official=official, mode=mode
    )
    return RegistryImportResult(
        mode=result.mode.value,
        rows=result.rows,
        households=result.households,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        refused=result.refused,
        errors=[RowError.model_validate(e) for e in result.errors],
    )


@router.get(
    "/authority/households",
    response_model=Page[HouseholdRead],
    summary="Households in my regions (authority; masked)",
)
async def list_registry(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    county_code: CountyCode = None,
    poor_on: Annotated[
        dt.date | None, Query(description="Only households the registry lists as poor that day.")
    ] = None,
    registered: Annotated[
        bool | None, Query(description="true: registry households; false: unregistered ones.")
    ] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=50, description="Registry id prefix, village or name."),
    ] = None,
) -> Page[HouseholdRead]:
    official = await service.official_of(session, principal)
    rows, cursor = await service.list_registry(
        session,
        official=official,
        page=page,
        county_code=county_code,
        poor_on_date=poor_on,
        registered=registered,
        q=q,
    )
    return Page(items=[_masked(h) for h in rows], next_cursor=cursor)


@router.get(
    "/authority/households/{household_id}",
    response_model=HouseholdDetail,
    summary="A household with its poor periods (authority in scope; masked)",
)
async def get_household(
    household_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> HouseholdDetail:
    official = await service.official_of(session, principal)
    household = await service.get_in_scope(session, official=official, household_id=household_id)
    periods = await service.poor_periods(session, household.id)
    memberships = await service.memberships_of(session, household.id)
    return HouseholdDetail(
        **service.masked_view(household),
        poor_today=await service.is_poor_on(session, household_id=household.id, on=china_today()),
        poor_periods=[PoorPeriodRead.model_validate(p) for p in periods],
        registry_organisation_id=household.registry_organisation_id,
        added_by_cooperative_id=household.added_by_cooperative_id,
        memberships=[MembershipRead.model_validate(m) for m in memberships],
    )


@router.post(
    "/authority/households/{household_id}/reveal",
    response_model=RevealedHousehold,
    summary="Reveal a household's name and phone, with a reason (authority in scope; logged)",
)
async def reveal(
    household_id: uuid.UUID, body: RevealCreate, principal: PrincipalDep, session: SessionDep
) -> RevealedHousehold:
    """Every call writes a log entry (who, for which authority, when, why), readable at
    `GET /authority/households/{household_id}/reveals`. The full ID number is never stored."""
    official = await service.official_of(session, principal)
    household, logged = await service.reveal(
        session, official=official, household_id=household_id, reason=body.reason
    )
    return RevealedHousehold(
        id=household.id,
        registry_id=household.registry_id,
        county_code=household.county_code,
        village=household.village,
        head_name=household.head_name,
        phone=household.phone,
        id_number_last4=household.id_number_last4,
        reveal=RevealRead.model_validate(logged),
    )


@router.get(
    "/authority/households/{household_id}/reveals",
    response_model=Page[RevealRead],
    summary="Who revealed this household's personal data, newest first (authority in scope)",
)
async def list_reveals(
    household_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[RevealRead]:
    official = await service.official_of(session, principal)
    rows, cursor = await service.list_reveals(
        session, official=official, household_id=household_id, page=page
    )
    return Page(items=[RevealRead.model_validate(r) for r in rows], next_cursor=cursor)


# ---------------------------------------------------------------- member households (cooperatives)


@router.get(
    "/organisations/{organisation_id}/households",
    response_model=Page[MemberHouseholdRead],
    summary="Member households (masked)",
)
async def list_members(
    organisation_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    on: Annotated[
        dt.date | None,
        Query(description="Only memberships on that day; `poor` is then as of that day."),
    ] = None,
) -> Page[MemberHouseholdRead]:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="households"
    )
    members, cursor = await service.list_members(
        session, cooperative_id=organisation_id, page=page, on=on
    )
    return Page(items=[_member(m) for m in members], next_cursor=cursor)


@router.get(
    "/organisations/{organisation_id}/households/{household_id}",
    response_model=MemberHouseholdDetail,
    summary="A member household and its memberships here (masked)",
)
async def get_member(
    organisation_id: uuid.UUID,
    household_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
) -> MemberHouseholdDetail:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="households"
    )
    household, memberships, poor_today = await service.member_household(
        session, cooperative_id=organisation_id, household_id=household_id
    )
    return MemberHouseholdDetail(
        household=_masked(household),
        poor_today=poor_today,
        memberships=[MembershipRead.model_validate(m) for m in memberships],
    )


@router.post(
    "/organisations/{organisation_id}/households/link",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberHouseholdRead,
    summary="Link a registered household by its registry id (staff)",
)
async def link_registered(
    organisation_id: uuid.UUID,
    body: MembershipLink,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> MemberHouseholdRead:
    """Its poor status always comes from the registry; no field here can set it.
    Overlapping memberships of the same household are refused with 409."""
    cooperative = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="households", write=True
    )
    member = await service.link_registered(
        session,
        cooperative=cooperative,
        registry_id=body.registry_id,
        joined_on=body.joined_on,
        left_on=body.left_on,
    )
    return _member(member)


@router.post(
    "/organisations/{organisation_id}/households/unregistered",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberHouseholdRead,
    summary="Add a household the registry does not list; it is never poor (staff)",
)
async def add_unregistered(
    organisation_id: uuid.UUID,
    body: UnregisteredHouseholdCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> MemberHouseholdRead:
    cooperative = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="households", write=True
    )
    member = await service.add_unregistered(session, cooperative=cooperative, **body.model_dump())
    return _member(member)


@router.post(
    "/organisations/{organisation_id}/households/{household_id}/end",
    response_model=MemberHouseholdRead,
    summary="End the membership that covers a day (staff)",
)
async def end_membership(
    organisation_id: uuid.UUID,
    household_id: uuid.UUID,
    body: MembershipEnd,
    principal: PrincipalDep,
    session: SessionDep,
) -> MemberHouseholdRead:
    cooperative = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="households", write=True
    )
    member = await service.end_membership(
        session, cooperative=cooperative, household_id=household_id, left_on=body.left_on
    )
    return _member(member)
