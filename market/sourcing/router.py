"""HTTP: cooperatives' lots and sourcing records, officials' view of lots in their regions,
chain verification, and the public trace page."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from market.catalog import service as catalog_service
from market.catalog.models import ProductCategory
from market.deps import Idempotent, Principal, PrincipalDep, SessionDep, idempotent
from market.errors import Forbidden, NotFound
from market.idempotency.service import Claim
from market.inputs import has_control
from market.organisations import service as organisations_service
from market.organisations.models import Organisation
from market.pagination import Page, PageDep
from market.regions import service as regions_service
from market.routing import MarketRoute
from market.sourcing import service
from market.sourcing.models import Lot, SourcingRecord
from market.sourcing.schemas import (
    Amendment,
    AmendmentRead,
    LotCreate,
    LotRead,
    PurchaseCreate,
    RecordRead,
    Reversal,
    ShareRead,
    TraceRead,
    VerificationRead,
)
from market.templating import templates

router = APIRouter(route_class=MarketRoute)
TAG = "sourcing"
StockMoving = Annotated[Claim | None, Depends(idempotent(required=True))]
Seq = Annotated[int, Path(ge=1, le=2**63 - 1, description="The record's place in the ledger.")]


def share_read(share: service.LotShare) -> ShareRead:
    return ShareRead(
        quantity=share.quantity,
        value_fen=share.value_fen,
        poor_quantity=share.poor_quantity,
        poor_value_fen=share.poor_value_fen,
        poor_share_bp=share.poor_share_bp,
        poor_quantity_share_bp=share.poor_quantity_share_bp,
        households=share.households,
        poor_households=share.poor_households,
        records=share.records,
    )


def lot_read(lot: Lot, share: service.LotShare) -> LotRead:
    return LotRead(
        id=lot.id,
        cooperative_id=lot.cooperative_id,
        product_id=lot.product_id,
        trace_code=lot.trace_code,
        harvest_date=lot.harvest_date,
        production_date=lot.production_date,
        grade=lot.grade,
        storage_place=lot.storage_place,
        note=lot.note,
        created_at=lot.created_at,
        share=share_read(share),
    )


def record_read(record: SourcingRecord) -> RecordRead:
    return RecordRead(
        seq=record.seq,
        id=record.id,
        lot_id=record.lot_id,
        household_id=record.household_id,
        kind=record.kind,
        reverses_seq=record.reverses_seq,
        quantity=record.quantity,
        unit_price_fen=record.unit_price_fen,
        amount_fen=record.amount_fen,
        purchase_date=record.purchase_date,
        evidence_ref=record.evidence_ref,
        evidence_url=record.evidence_url,
        reason=record.reason,
        recorded_at=record.recorded_at,
        hash=record.hash.hex(),
    )


async def _lots_page(session: SessionDep, lots: list[Lot], cursor: str | None) -> Page[LotRead]:
    shares = await service.lot_shares(session, [lot.id for lot in lots])
    return Page(items=[lot_read(lot, shares[lot.id]) for lot in lots], next_cursor=cursor)


# ---------------------------------------------------------------- cooperatives


@router.post(
    "/organisations/{organisation_id}/lots",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=LotRead,
    summary="Open a lot",
)
async def open_lot(
    organisation_id: uuid.UUID,
    body: LotCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: Idempotent,
) -> LotRead:
    """A lot of one of your products; it gets a public trace code. Append records next."""
    cooperative = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="sourcing", write=True
    )
    lot = await service.open_lot(
        session,
        cooperative_id=organisation_id,
        county_code=cooperative.region_code,
        data=body.model_dump(),
    )
    return lot_read(lot, service.LotShare.empty(lot.id))


@router.get(
    "/organisations/{organisation_id}/lots",
    tags=[TAG],
    response_model=Page[LotRead],
    summary="Lots with their poor-household shares",
)
async def list_lots(
    organisation_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[LotRead]:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="sourcing"
    )
    lots, cursor = await service.list_lots(session, page=page, cooperative_id=organisation_id)
    return await _lots_page(session, lots, cursor)


@router.get(
    "/organisations/{organisation_id}/lots/{lot_id}",
    tags=[TAG],
    response_model=LotRead,
    summary="A lot and its share",
)
async def get_lot(
    organisation_id: uuid.UUID, lot_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> LotRead:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="sourcing"
    )
    lot = await service.get_lot(session, lot_id=lot_id, cooperative_id=organisation_id)
    return lot_read(lot, await service.lot_share(session, lot.id))


@router.get(
    "/organisations/{organisation_id}/lots/{lot_id}/records",
    tags=[TAG],
    response_model=Page[RecordRead],
    summary="The lot's sourcing records, in ledger order",
)
async def list_records(
    organisation_id: uuid.UUID,
    lot_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
) -> Page[RecordRead]:
    await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="sourcing"
    )
    lot = await service.get_lot(session, lot_id=lot_id, cooperative_id=organisation_id)
    records, cursor = await service.list_records(session, lot_id=lot.id, page=page)
    return Page(items=[record_read(r) for r in records], next_cursor=cursor)


async def _ledger_writer(
    session: AsyncSession, principal: Principal, organisation_id: uuid.UUID
) -> None:
    """Writes to the sourcing ledger (permanent, shown on the public trace page) come from a
    cooperative the platform verifies: one it rejected keeps its records, adds none."""
    cooperative = await organisations_service.cooperative_access(
        session, principal, organisation_id, domain="sourcing", write=True
    )
    if cooperative.verification_status != "verified":
        raise Forbidden(
            f"{cooperative.name_zh} is not verified by the platform; its sourcing records "
            "cannot change until it is.",
            code="not_verified",
        )


@router.post(
    "/organisations/{organisation_id}/lots/{lot_id}/records",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=RecordRead,
    summary="Append a purchase from a member household",
)
async def append_purchase(
    organisation_id: uuid.UUID,
    lot_id: uuid.UUID,
    body: PurchaseCreate,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> RecordRead:
    """Adds stock to the lot, so an `Idempotency-Key` is required. The household must be a
    member of the cooperative on the purchase date; its poor status comes from the registry."""
    await _ledger_writer(session, principal, organisation_id)
    lot = await service.get_lot(session, lot_id=lot_id, cooperative_id=organisation_id, lock=True)
    record = await service.append_purchase(
        session,
        lot=lot,
        household_id=body.household_id,
        quantity=body.quantity,
        unit_price_fen=body.unit_price_fen,
        purchase_date=body.purchase_date,
        evidence_ref=body.evidence_ref,
        evidence_url=str(body.evidence_url) if body.evidence_url else None,
        recorded_by_id=principal.user_id,
    )
    return record_read(record)


@router.post(
    "/organisations/{organisation_id}/lots/{lot_id}/records/{seq}/reverse",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=RecordRead,
    summary="Reverse a purchase (a new, reversing record)",
)
async def reverse_record(
    organisation_id: uuid.UUID,
    lot_id: uuid.UUID,
    seq: Seq,
    body: Reversal,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> RecordRead:
    await _ledger_writer(session, principal, organisation_id)
    lot = await service.get_lot(session, lot_id=lot_id, cooperative_id=organisation_id, lock=True)
    record = await service.reverse(
        session, lot=lot, seq=seq, reason=body.reason, recorded_by_id=principal.user_id
    )
    return record_read(record)


@router.post(
    "/organisations/{organisation_id}/lots/{lot_id}/records/{seq}/amend",
    tags=[TAG],
    status_code=status.HTTP_201_CREATED,
    response_model=AmendmentRead,
    summary="Correct a purchase (a reversal plus a corrected purchase)",
)
async def amend_record(
    organisation_id: uuid.UUID,
    lot_id: uuid.UUID,
    seq: Seq,
    body: Amendment,
    principal: PrincipalDep,
    session: SessionDep,
    _: StockMoving,
) -> AmendmentRead:
    await _ledger_writer(session, principal, organisation_id)
    lot = await service.get_lot(session, lot_id=lot_id, cooperative_id=organisation_id, lock=True)
    reversal, replacement = await service.amend(
        session,
        lot=lot,
        seq=seq,
        reason=body.reason,
        recorded_by_id=principal.user_id,
        changes=body.model_dump(exclude={"reason"}),
    )
    return AmendmentRead(reversal=record_read(reversal), replacement=record_read(replacement))


# ---------------------------------------------------------------- officials


async def _official_scopes(session: SessionDep, principal: PrincipalDep) -> list[str] | None:
    """Region codes the caller audits; None for platform operators (everything)."""
    if await organisations_service.is_platform_operator(session, principal):
        return None
    scopes = await organisations_service.authority_scopes_of(session, principal)
    if not scopes:
        raise Forbidden("Only officials and platform operators may do this.", code="officials_only")
    return scopes


@router.get(
    "/authority/lots",
    tags=[TAG],
    response_model=Page[LotRead],
    summary="Lots of cooperatives in your audit regions (officials)",
)
async def authority_lots(
    principal: PrincipalDep,
    session: SessionDep,
    page: PageDep,
    region_code: Annotated[
        str | None, Query(pattern=r"^[0-9]{6}$", description="Narrow to a region.")
    ] = None,
) -> Page[LotRead]:
    scopes = await _official_scopes(session, principal)
    if region_code is not None:
        if scopes is not None and not regions_service.in_scope(region_code, scopes):
            # a narrower region inside a scope is fine; one wider than or beside it is not
            scopes = [s for s in scopes if regions_service.in_scope(s, [region_code])]
        else:
            scopes = [region_code]
    lots, cursor = await service.list_lots(session, page=page, regions=scopes)
    return await _lots_page(session, lots, cursor)


@router.get(
    "/authority/lots/{lot_id}/records",
    tags=[TAG],
    response_model=Page[RecordRead],
    summary="A lot's sourcing records (officials in scope)",
)
async def authority_records(
    lot_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, page: PageDep
) -> Page[RecordRead]:
    """Records name households by id only; officials see personal data through the
    registry's logged reveal."""
    scopes = await _official_scopes(session, principal)
    lot = await service.get_lot(session, lot_id=lot_id)
    cooperative = await session.get(Organisation, lot.cooperative_id)
    assert cooperative is not None
    if scopes is not None and not regions_service.in_scope(cooperative.region_code, scopes):
        raise NotFound("No such lot in your audit regions.")
    records, cursor = await service.list_records(session, lot_id=lot.id, page=page)
    return Page(items=[record_read(r) for r in records], next_cursor=cursor)


@router.get(
    "/sourcing/verify",
    tags=[TAG],
    response_model=VerificationRead,
    summary="Recompute the sourcing ledger's hash chain (officials, platform)",
)
async def verify(principal: PrincipalDep, session: SessionDep) -> VerificationRead:
    """Names the first record whose content or link does not verify."""
    await _official_scopes(session, principal)
    result = await service.verify_chain(session)
    broken = result.first_break
    return VerificationRead(
        ok=result.ok,
        checked=result.checked,
        head_seq=result.head_seq,
        first_break_seq=broken.seq if broken else None,
        first_break_record_id=broken.record_id if broken else None,
        reason=broken.reason if broken else None,
    )


# ---------------------------------------------------------------- public trace page


async def trace_of(session: SessionDep, code: str) -> TraceRead:
    lot = await service.get_lot_by_trace_code(session, code)
    product = await catalog_service.get_product(session, product_id=lot.product_id)
    category = await session.get(ProductCategory, product.category_code)
    cooperative = await session.get(Organisation, lot.cooperative_id)
    assert cooperative is not None and category is not None
    county = await regions_service.get_region(session, cooperative.region_code)
    share = await service.lot_share(session, lot.id)
    return TraceRead(
        trace_code=lot.trace_code,
        product_name_zh=product.name_zh,
        product_name_en=product.name_en,
        regional_brand=product.regional_brand,
        category_name_zh=category.name_zh,
        cooperative_name_zh=cooperative.name_zh,
        county_code=county.code,
        county_path=await regions_service.path_names(session, county),
        is_poverty_county=county.is_poverty_county,
        harvest_date=lot.harvest_date,
        production_date=lot.production_date,
        grade=lot.grade,
        households=share.households,
        poor_households=share.poor_households,
        poor_share_bp=share.poor_share_bp,
        poor_quantity_share_bp=share.poor_quantity_share_bp,
    )


@router.get(
    "/trace/{code}",
    tags=["public"],
    response_model=TraceRead,
    summary="Public trace page of a lot",
    responses={200: {"content": {"text/html": {}}}},
)
async def trace(code: str, request: Request, session: SessionDep) -> Response:
    """A web page for people (the QR code on the package), JSON for programs
    (`Accept: application/json`). Shares are aggregates; no personal data."""
    if has_control(code):  # no lot has such a code (and PostgreSQL refuses a NUL)
        raise NotFound("No lot has this trace code.")
    data = await trace_of(session, code)
    if "text/html" in request.headers.get("accept", ""):
        html: HTMLResponse = templates.TemplateResponse(request, "trace.html", {"t": data})
        return html
    return JSONResponse(data.model_dump(mode="json"))
