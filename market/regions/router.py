"""HTTP: look regions up, list children, measure distances, flag poverty counties."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, UploadFile

from market.deps import PrincipalDep, SessionDep
from market.errors import Invalid
from market.organisations import service as organisations_service
from market.regions import service
from market.regions.schemas import (
    DistanceRead,
    PovertyFlag,
    PovertyImportResult,
    RegionPath,
    RegionRead,
)
from market.routing import MarketRoute

router = APIRouter(prefix="/regions", tags=["regions"], route_class=MarketRoute)
Code = Annotated[str, Path(pattern=r"^[0-9]{6}$", examples=["620421"])]
MAX_CSV_BYTES = 1_000_000


@router.get("", response_model=list[RegionRead], summary="Find regions by name or pinyin")
async def find_regions(
    session: SessionDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=50,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="靖远, 白银市, jingyuan or jy.",
        ),
    ],
    level: Annotated[Literal["province", "city", "county"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[RegionRead]:
    rows = await service.search(session, q=q, level=level, limit=limit)
    return [RegionRead.model_validate(r) for r in rows]


@router.get("/distance", response_model=DistanceRead, summary="Distance between two regions")
async def distance(
    session: SessionDep,
    from_code: Annotated[str, Query(alias="from", pattern=r"^[0-9]{6}$", examples=["620421"])],
    to_code: Annotated[str, Query(alias="to", pattern=r"^[0-9]{6}$", examples=["110000"])],
) -> DistanceRead:
    origin, destination, km = await service.distance(session, from_code, to_code)
    return DistanceRead(
        from_code=origin.code,
        to_code=destination.code,
        from_name=origin.name_zh,
        to_name=destination.name_zh,
        distance_km=Decimal(str(km)).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN),
    )


@router.get("/{code}", response_model=RegionPath, summary="A region by its code")
async def get_region(code: Code, session: SessionDep) -> RegionPath:
    region = await service.get_region(session, code)
    path = await service.path_names(session, region)
    return RegionPath(**RegionRead.model_validate(region).model_dump(), path=path)


@router.get("/{code}/children", response_model=list[RegionRead], summary="Regions inside a region")
async def children(code: Code, session: SessionDep) -> list[RegionRead]:
    return [RegionRead.model_validate(r) for r in await service.children(session, code)]


@router.put(
    "/{code}/poverty-county",
    response_model=RegionRead,
    summary="Set the designated-poverty-county flag (platform or authority in scope)",
)
async def set_poverty_county(
    code: Code, body: PovertyFlag, principal: PrincipalDep, session: SessionDep
) -> RegionRead:
    is_platform = await organisations_service.is_platform_operator(session, principal)
    scopes = await organisations_service.authority_scopes_of(session, principal)
    service.check_flag_scope(code, is_platform=is_platform, authority_scopes=scopes)
    region = await service.set_poverty_flag(session, code=code, designated=body.designated)
    return RegionRead.model_validate(region)


@router.post(
    "/poverty-counties/import",
    response_model=PovertyImportResult,
    summary="Import poverty-county flags from CSV (platform or authority)",
)
async def import_poverty_counties(
    file: UploadFile, principal: PrincipalDep, session: SessionDep
) -> PovertyImportResult:
    """CSV columns `code,designated` (UTF-8 or GB18030). Rows outside your regions are reported."""
    data = await file.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise Invalid.field("file", f"The file is larger than {MAX_CSV_BYTES} bytes.")
    is_platform = await organisations_service.is_platform_operator(session, principal)
    scopes = await organisations_service.authority_scopes_of(session, principal)
    if not is_platform and not scopes:
        service.check_flag_scope("000000", is_platform=False, authority_scopes=[])
    result = await service.import_poverty_counties(
        session, data=data, is_platform=is_platform, authority_scopes=scopes
    )
    return PovertyImportResult(**result.__dict__)
